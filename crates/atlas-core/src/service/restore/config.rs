//! Restore of the mailbox configuration (`--kinds config`): master categories, inbox rules
//! and — only when asked for — mailbox settings, from the Graph JSON the backup stored
//! (items `config:masterCategories`, `config:messageRules`, `config:mailboxSettings` of
//! the configuration folder) through the [`ConfigTarget`] port.
//!
//! Configuration lives in the mailbox itself, not in folders, so there is no restore root:
//! what is restored is *added* next to what the target has, and nothing existing is
//! changed or deleted.
//!
//! - A category is added when the target has none with the same name (compared
//!   case-insensitively, as Outlook does); an existing one keeps its colour and is
//!   reported as skipped.
//! - A rule is added when the target has none with the same display name. A rule that
//!   moves or copies mail into a folder gets the target's folder with the same path (the
//!   path the folder had in the snapshot; well-known folders by role); when the target
//!   has no such folder the rule is skipped with the path named, never pointed at
//!   another folder. `isEnabled` is kept as stored, so an enabled rule acts on mail
//!   arriving after the restore.
//! - Settings (automatic replies, working hours, time zone, language, date and time
//!   formats) change what the mailbox does for its owner, so they are left alone unless
//!   the restore was asked to overwrite them (`--overwrite-settings`); then every
//!   writable setting that differs from the stored one is patched.
//!
//! Idempotent by construction: a second run finds everything by name and adds nothing.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{CREATE_ATTEMPTS, PathStep, RestoreError, RestoreSummary, check_sha};
use crate::model::{ContentKind, FolderId, MailboxId, MessageMeta};
use crate::ports::{ConfigTarget, Event, Reporter, TargetError};
use crate::repo::Repository;

/// The settings a restore may write (api/user-update-mailboxsettings.md lists them as
/// the writable ones; `archiveFolder` is not among them and `userPurpose` is read-only).
const WRITABLE_SETTINGS: [&str; 7] = [
    "automaticRepliesSetting",
    "workingHours",
    "timeZone",
    "language",
    "dateFormat",
    "timeFormat",
    "delegateMeetingMessageDeliveryOptions",
];

/// Writable messageRule properties sent when a rule is created
/// (api/mailfolder-post-messagerules.md); `id`, `hasError` and `isReadOnly` are the
/// source's and are left out.
const RULE_PROPERTIES: [&str; 6] = [
    "displayName",
    "sequence",
    "isEnabled",
    "conditions",
    "actions",
    "exceptions",
];

/// Rule actions whose value is a folder id (messageRuleActions).
const FOLDER_ACTIONS: [&str; 2] = ["moveToFolder", "copyToFolder"];

/// The configuration part of a restore plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedConfig {
    /// Whether the stored mailbox settings are written over the target's
    /// (`--overwrite-settings`).
    pub overwrite_settings: bool,
    /// The stored configuration items.
    #[serde(skip)]
    pub items: Vec<MessageMeta>,
    /// The snapshot's mail folders by id: the path a rule's folder had, with well-known
    /// names, so the rule can be pointed at the target's folder of the same path.
    #[serde(skip)]
    pub mail_folders: HashMap<FolderId, Vec<PathStep>>,
}

/// What was restored of one configuration entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigEntry {
    /// A master category.
    Category,
    /// An inbox rule.
    Rule,
    /// One mailbox setting.
    Setting,
}

/// How one configuration entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigOutcome {
    /// Added to the target.
    Created,
    /// A setting written over the target's value.
    Updated,
    /// Left alone (the reason says why).
    Skipped,
    /// Could not be restored.
    Failed,
}

/// The result of one configuration entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigResult {
    /// What it is.
    pub entry: ConfigEntry,
    /// The category's or rule's display name, or the setting's property name.
    pub name: String,
    /// What happened.
    pub outcome: ConfigOutcome,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ConfigResult {
    fn new(entry: ConfigEntry, name: &str, outcome: ConfigOutcome, reason: Option<String>) -> Self {
        Self {
            entry,
            name: name.to_owned(),
            outcome,
            reason,
        }
    }
}

fn name_of(v: &Value) -> String {
    v.get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn has_name(list: &[Value], name: &str) -> bool {
    list.iter()
        .any(|v| name_of(v).to_lowercase() == name.to_lowercase())
}

/// The `value` array of a stored list (`{"value": […]}`).
fn stored_list(v: &Value) -> Vec<Value> {
    v.get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Restores the configuration entries; results go into `summary.config` (and its
/// counters). Fails as a whole only on fatal target errors.
pub(super) struct ConfigRun<'a> {
    pub target: &'a dyn ConfigTarget,
    pub repo: &'a Repository,
    pub mailbox: &'a MailboxId,
    pub reporter: &'a dyn Reporter,
    pub label: &'a str,
}

impl ConfigRun<'_> {
    pub(super) async fn run(
        &self,
        planned: &PlannedConfig,
        summary: &mut RestoreSummary,
    ) -> Result<(), RestoreError> {
        let mut results = Vec::new();
        let stored = self.load(planned).await;
        match stored.get("masterCategories") {
            Some(Ok(v)) => self.categories(v, &mut results).await?,
            Some(Err(reason)) => results.push(ConfigResult::new(
                ConfigEntry::Category,
                "masterCategories",
                ConfigOutcome::Failed,
                Some(reason.clone()),
            )),
            None => {}
        }
        match stored.get("messageRules") {
            Some(Ok(v)) => self.rules(v, planned, &mut results).await?,
            Some(Err(reason)) => results.push(ConfigResult::new(
                ConfigEntry::Rule,
                "messageRules",
                ConfigOutcome::Failed,
                Some(reason.clone()),
            )),
            None => {}
        }
        match stored.get("mailboxSettings") {
            Some(Ok(v)) => self.settings(v, planned, &mut results).await?,
            Some(Err(reason)) => results.push(ConfigResult::new(
                ConfigEntry::Setting,
                "mailboxSettings",
                ConfigOutcome::Failed,
                Some(reason.clone()),
            )),
            None => {}
        }
        for r in &results {
            match r.outcome {
                ConfigOutcome::Created | ConfigOutcome::Updated => summary.created += 1,
                ConfigOutcome::Skipped => summary.skipped += 1,
                ConfigOutcome::Failed => {
                    summary.failed += 1;
                    self.reporter.report(Event::ItemFailed {
                        mailbox: self.label.to_owned(),
                        folder: "configuration".into(),
                        item: r.name.clone(),
                        reason: r.reason.clone().unwrap_or_default(),
                    });
                }
            }
        }
        summary.config = results;
        Ok(())
    }

    /// The stored JSON of each configuration item, by name (`messageRules` …).
    async fn load(&self, planned: &PlannedConfig) -> HashMap<String, Result<Value, String>> {
        let mut out = HashMap::new();
        for meta in &planned.items {
            let Some(name) = meta.id.as_str().strip_prefix("config:") else {
                continue;
            };
            let value = match meta.content_of(ContentKind::Json) {
                None => Err("no JSON is stored for this configuration item".to_owned()),
                Some(c) => match self.repo.read_blob(&c.id).await {
                    Err(e) => Err(format!("stored configuration unreadable: {e}")),
                    Ok(raw) if !check_sha(&raw, &c.sha256) => Err(
                        "stored configuration does not match its checksum (run atlas verify --read-data)"
                            .to_owned(),
                    ),
                    Ok(raw) => serde_json::from_slice(&raw)
                        .map_err(|e| format!("stored configuration is not JSON: {e}")),
                },
            };
            out.insert(name.to_owned(), value);
        }
        out
    }

    async fn categories(
        &self,
        stored: &Value,
        results: &mut Vec<ConfigResult>,
    ) -> Result<(), RestoreError> {
        let wanted = stored_list(stored);
        let mut have = match self.target.master_categories(self.mailbox).await {
            Ok(l) => l,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                for c in &wanted {
                    results.push(ConfigResult::new(
                        ConfigEntry::Category,
                        &name_of(c),
                        ConfigOutcome::Failed,
                        Some(format!("the target's categories could not be listed: {e}")),
                    ));
                }
                return Ok(());
            }
        };
        for c in wanted {
            let name = name_of(&c);
            if name.is_empty() {
                continue;
            }
            if has_name(&have, &name) {
                results.push(ConfigResult::new(
                    ConfigEntry::Category,
                    &name,
                    ConfigOutcome::Skipped,
                    Some("already exists".into()),
                ));
                continue;
            }
            let mut body = Map::new();
            body.insert("displayName".into(), Value::String(name.clone()));
            if let Some(color) = c.get("color").filter(|v| v.is_string()) {
                body.insert("color".into(), color.clone());
            }
            let body = Value::Object(body);
            let outcome = self.create(ConfigEntry::Category, &body, &name).await?;
            if outcome.outcome == ConfigOutcome::Created {
                have.push(body);
            }
            results.push(outcome);
        }
        Ok(())
    }

    /// Create one named object; a lost answer is checked by listing before it is sent
    /// again.
    async fn create(
        &self,
        entry: ConfigEntry,
        body: &Value,
        name: &str,
    ) -> Result<ConfigResult, RestoreError> {
        let result = |outcome, reason| ConfigResult::new(entry, name, outcome, reason);
        let mut last = String::new();
        for _ in 0..CREATE_ATTEMPTS {
            let created = match entry {
                ConfigEntry::Category => self.target.create_category(self.mailbox, body).await,
                _ => self.target.create_rule(self.mailbox, body).await,
            };
            match created {
                Ok(()) => return Ok(result(ConfigOutcome::Created, None)),
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(TargetError::OutcomeUnknown(reason)) => {
                    last = reason;
                    let listed = match entry {
                        ConfigEntry::Category => self.target.master_categories(self.mailbox).await,
                        _ => self.target.message_rules(self.mailbox).await,
                    };
                    match listed {
                        Ok(l) if has_name(&l, name) => {
                            return Ok(result(ConfigOutcome::Created, None));
                        }
                        Ok(_) => {}
                        Err(e) if e.is_fatal() => return Err(e.into()),
                        Err(e) => {
                            return Ok(result(
                                ConfigOutcome::Failed,
                                Some(format!(
                                    "create ended without an answer ({last}) and the check \
                                     failed ({e}); the next run checks again"
                                )),
                            ));
                        }
                    }
                }
                Err(e) => return Ok(result(ConfigOutcome::Failed, Some(e.to_string()))),
            }
        }
        Ok(result(
            ConfigOutcome::Failed,
            Some(format!("create kept ending without an answer: {last}")),
        ))
    }

    async fn rules(
        &self,
        stored: &Value,
        planned: &PlannedConfig,
        results: &mut Vec<ConfigResult>,
    ) -> Result<(), RestoreError> {
        let mut wanted = stored_list(stored);
        wanted.sort_by_key(|r| r.get("sequence").and_then(Value::as_i64).unwrap_or(0));
        let mut have = match self.target.message_rules(self.mailbox).await {
            Ok(l) => l,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                for r in &wanted {
                    results.push(ConfigResult::new(
                        ConfigEntry::Rule,
                        &name_of(r),
                        ConfigOutcome::Failed,
                        Some(format!("the target's inbox rules could not be listed: {e}")),
                    ));
                }
                return Ok(());
            }
        };
        let mut folders: HashMap<Vec<String>, Option<FolderId>> = HashMap::new();
        for rule in wanted {
            let name = name_of(&rule);
            if name.is_empty() {
                continue;
            }
            if has_name(&have, &name) {
                results.push(ConfigResult::new(
                    ConfigEntry::Rule,
                    &name,
                    ConfigOutcome::Skipped,
                    Some("already exists".into()),
                ));
                continue;
            }
            let body = match self.rule_body(&rule, planned, &mut folders).await? {
                Ok(body) => body,
                Err(reason) => {
                    self.reporter.report(Event::Warning {
                        mailbox: Some(self.label.to_owned()),
                        message: format!("inbox rule {name:?} not restored: {reason}"),
                    });
                    results.push(ConfigResult::new(
                        ConfigEntry::Rule,
                        &name,
                        ConfigOutcome::Skipped,
                        Some(reason),
                    ));
                    continue;
                }
            };
            let outcome = self.create(ConfigEntry::Rule, &body, &name).await?;
            if outcome.outcome == ConfigOutcome::Created {
                have.push(body);
            }
            results.push(outcome);
        }
        Ok(())
    }

    /// The create body of a stored rule: its writable properties, folder actions pointed
    /// at the target's folders; `Err(reason)` when a folder has no counterpart.
    async fn rule_body(
        &self,
        rule: &Value,
        planned: &PlannedConfig,
        folders: &mut HashMap<Vec<String>, Option<FolderId>>,
    ) -> Result<Result<Value, String>, RestoreError> {
        let mut body = Map::new();
        for key in RULE_PROPERTIES {
            if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                body.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(Value::Object(actions)) = body.get_mut("actions") {
            actions.retain(|_, v| !v.is_null());
            for key in FOLDER_ACTIONS {
                let Some(source) = actions.get(key).and_then(Value::as_str) else {
                    continue;
                };
                let Some(path) = planned.mail_folders.get(&FolderId::new(source)) else {
                    return Ok(Err(format!(
                        "its {key} action points at a folder that is not in the snapshot"
                    )));
                };
                let shown = path
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join("/");
                match self.folder_by_path(path, folders).await? {
                    Some(id) => {
                        actions.insert(key.to_owned(), Value::String(id.as_str().to_owned()));
                    }
                    None => {
                        return Ok(Err(format!(
                            "its {key} action needs the folder {shown}, which the target \
                             mailbox does not have (restore that folder's mail in place, or \
                             create it, and run the restore again)"
                        )));
                    }
                }
            }
        }
        Ok(Ok(Value::Object(body)))
    }

    /// The target's folder with this path (well-known steps by role), found without
    /// creating anything.
    async fn folder_by_path(
        &self,
        path: &[PathStep],
        cache: &mut HashMap<Vec<String>, Option<FolderId>>,
    ) -> Result<Option<FolderId>, RestoreError> {
        let mut parent: Option<FolderId> = None;
        for i in 0..path.len() {
            let key: Vec<String> = path[..=i].iter().map(|s| s.name.to_lowercase()).collect();
            let found = if let Some(hit) = cache.get(&key) {
                hit.clone()
            } else {
                let step = &path[i];
                let hit = match self
                    .target
                    .find_mail_folder(
                        self.mailbox,
                        parent.as_ref(),
                        &step.name,
                        step.well_known.as_deref(),
                    )
                    .await
                {
                    Ok(f) => f.map(|f| f.id),
                    Err(e) if e.is_fatal() => return Err(e.into()),
                    Err(TargetError::NotFound(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                cache.insert(key, hit.clone());
                hit
            };
            match found {
                Some(id) => parent = Some(id),
                None => return Ok(None),
            }
        }
        Ok(parent)
    }

    async fn settings(
        &self,
        stored: &Value,
        planned: &PlannedConfig,
        results: &mut Vec<ConfigResult>,
    ) -> Result<(), RestoreError> {
        let present: Vec<&str> = WRITABLE_SETTINGS
            .into_iter()
            .filter(|k| stored.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        if !planned.overwrite_settings {
            for k in present {
                results.push(ConfigResult::new(
                    ConfigEntry::Setting,
                    k,
                    ConfigOutcome::Skipped,
                    Some("settings are changed only with --overwrite-settings".into()),
                ));
            }
            return Ok(());
        }
        let current = match self.target.mailbox_settings(self.mailbox).await {
            Ok(v) => v,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                for k in present {
                    results.push(ConfigResult::new(
                        ConfigEntry::Setting,
                        k,
                        ConfigOutcome::Failed,
                        Some(format!("the target's settings could not be read: {e}")),
                    ));
                }
                return Ok(());
            }
        };
        let mut patch = Map::new();
        for k in &present {
            if current.get(*k) == stored.get(*k) {
                results.push(ConfigResult::new(
                    ConfigEntry::Setting,
                    k,
                    ConfigOutcome::Skipped,
                    Some("already as stored".into()),
                ));
            } else if let Some(v) = stored.get(*k) {
                patch.insert((*k).to_owned(), v.clone());
            }
        }
        if patch.is_empty() {
            return Ok(());
        }
        let patch = Value::Object(patch);
        // The same PATCH twice sets the same values: a lost answer is simply sent again.
        let mut outcome = self.target.update_settings(self.mailbox, &patch).await;
        if matches!(outcome, Err(TargetError::OutcomeUnknown(_))) {
            outcome = self.target.update_settings(self.mailbox, &patch).await;
        }
        let (status, reason) = match outcome {
            Ok(()) => (ConfigOutcome::Updated, None),
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => (ConfigOutcome::Failed, Some(e.to_string())),
        };
        if let Value::Object(keys) = &patch {
            for k in keys.keys() {
                results.push(ConfigResult::new(
                    ConfigEntry::Setting,
                    k,
                    status,
                    reason.clone(),
                ));
            }
        }
        Ok(())
    }
}
