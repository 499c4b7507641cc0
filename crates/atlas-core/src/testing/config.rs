//! [`MemoryConfig`]: the [`ConfigTarget`] port in memory — master categories, inbox rules,
//! mailbox settings and a mail folder tree per mailbox — with a missing permission and
//! lost answers to inject, so configuration restore is tested without HTTP; the
//! conformance suite ([`super::conformance::config`]) holds it and the Graph adapter to the
//! same contract.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::model::{FolderId, MailboxId};
use crate::ports::{ConfigTarget, TargetError, TargetFolder};

/// What one mailbox holds.
#[derive(Debug, Default, Clone)]
pub struct ConfigDump {
    /// Master categories (`displayName`, `color`).
    pub categories: Vec<Value>,
    /// Inbox rules, as created.
    pub rules: Vec<Value>,
    /// Mailbox settings.
    pub settings: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Mailbox {
    config: ConfigDump,
    /// Mail folders: id, parent, display name, well-known name.
    folders: Vec<(FolderId, Option<FolderId>, String, Option<String>)>,
}

#[derive(Debug, Default)]
struct State {
    mailboxes: HashMap<String, Mailbox>,
    denied: bool,
    /// Writes still to answer as lost (after taking effect).
    lose: usize,
    writes: usize,
}

/// Configuration of a tenant's mailboxes in memory, by address (case-insensitive).
#[derive(Debug, Default)]
pub struct MemoryConfig {
    state: Mutex<State>,
}

impl MemoryConfig {
    /// No mailboxes.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Add a mailbox with a mail folder tree of `(path, well-known name)` entries (parents
    /// before children, names joined with `/`).
    pub fn add_mailbox(&self, mailbox: &MailboxId, folders: &[(&str, Option<&str>)]) {
        let mut m = Mailbox::default();
        for (path, well_known) in folders {
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (
                    m.folders
                        .iter()
                        .find(|f| Self::path_of(&m, &f.0) == *p)
                        .map(|f| f.0.clone()),
                    n,
                ),
                None => (None, *path),
            };
            let id = FolderId::new(format!("folder-{}", m.folders.len()));
            m.folders.push((
                id,
                parent,
                (*name).to_owned(),
                well_known.map(str::to_owned),
            ));
        }
        self.lock()
            .mailboxes
            .insert(mailbox.address().to_lowercase(), m);
    }

    fn path_of(m: &Mailbox, id: &FolderId) -> String {
        let mut names = Vec::new();
        let mut at = Some(id);
        while let Some(i) = at {
            let Some(f) = m.folders.iter().find(|f| &f.0 == i) else {
                break;
            };
            names.push(f.2.clone());
            at = f.1.as_ref();
        }
        names.reverse();
        names.join("/")
    }

    /// Take away (or give back) the configuration write permission.
    pub fn set_denied(&self, denied: bool) {
        self.lock().denied = denied;
    }

    /// The next `n` writes take effect and then answer as lost.
    pub fn lose_answers(&self, n: usize) {
        self.lock().lose = n;
    }

    /// Writes made so far (lost ones included).
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// What a mailbox holds.
    pub fn dump(&self, mailbox: &MailboxId) -> ConfigDump {
        self.lock()
            .mailboxes
            .get(&mailbox.address().to_lowercase())
            .map(|m| m.config.clone())
            .unwrap_or_default()
    }

    /// Apply one write to `mailbox`, then answer as it was told to.
    fn write(
        &self,
        mailbox: &MailboxId,
        apply: impl FnOnce(&mut ConfigDump) -> Result<(), TargetError>,
    ) -> Result<(), TargetError> {
        let mut s = self.lock();
        if s.denied {
            return Err(denied());
        }
        let m = s
            .mailboxes
            .get_mut(&mailbox.address().to_lowercase())
            .ok_or_else(|| TargetError::MailboxNotFound(mailbox.address().to_owned()))?;
        apply(&mut m.config)?;
        s.writes += 1;
        if s.lose > 0 {
            s.lose -= 1;
            return Err(TargetError::OutcomeUnknown("the answer was lost".into()));
        }
        Ok(())
    }

    fn read<T>(
        &self,
        mailbox: &MailboxId,
        f: impl FnOnce(&Mailbox) -> T,
    ) -> Result<T, TargetError> {
        self.lock()
            .mailboxes
            .get(&mailbox.address().to_lowercase())
            .map(f)
            .ok_or_else(|| TargetError::MailboxNotFound(mailbox.address().to_owned()))
    }
}

fn denied() -> TargetError {
    TargetError::PermissionDenied {
        permission: "MailboxSettings.ReadWrite".into(),
        request_id: "-".into(),
    }
}

fn name_of(v: &Value) -> String {
    v.get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase()
}

#[async_trait]
impl ConfigTarget for MemoryConfig {
    async fn check_config_access(&self, mailbox: &MailboxId) -> Result<(), TargetError> {
        if self.lock().denied {
            return Err(denied());
        }
        self.read(mailbox, |_| ())
    }

    async fn master_categories(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError> {
        self.read(mailbox, |m| m.config.categories.clone())
    }

    /// A duplicate name is refused, as Graph refuses it.
    async fn create_category(
        &self,
        mailbox: &MailboxId,
        category: &Value,
    ) -> Result<(), TargetError> {
        self.write(mailbox, |c| {
            if c.categories.iter().any(|x| name_of(x) == name_of(category)) {
                return Err(TargetError::Rejected(
                    "a category of that name exists".into(),
                ));
            }
            c.categories.push(category.clone());
            Ok(())
        })
    }

    async fn message_rules(&self, mailbox: &MailboxId) -> Result<Vec<Value>, TargetError> {
        self.read(mailbox, |m| m.config.rules.clone())
    }

    async fn create_rule(&self, mailbox: &MailboxId, rule: &Value) -> Result<(), TargetError> {
        self.write(mailbox, |c| {
            c.rules.push(rule.clone());
            Ok(())
        })
    }

    async fn mailbox_settings(&self, mailbox: &MailboxId) -> Result<Value, TargetError> {
        self.read(mailbox, |m| Value::Object(m.config.settings.clone()))
    }

    async fn update_settings(&self, mailbox: &MailboxId, patch: &Value) -> Result<(), TargetError> {
        self.write(mailbox, |c| {
            if let Some(p) = patch.as_object() {
                for (k, v) in p {
                    c.settings.insert(k.clone(), v.clone());
                }
            }
            Ok(())
        })
    }

    async fn find_mail_folder(
        &self,
        mailbox: &MailboxId,
        parent: Option<&FolderId>,
        name: &str,
        well_known: Option<&str>,
    ) -> Result<Option<TargetFolder>, TargetError> {
        self.read(mailbox, |m| {
            m.folders
                .iter()
                .find(|f| match well_known {
                    Some(w) => f.3.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(w)),
                    None => f.1.as_ref() == parent && f.2.to_lowercase() == name.to_lowercase(),
                })
                .map(|f| TargetFolder {
                    id: f.0.clone(),
                    display_name: f.2.clone(),
                })
        })
    }
}
