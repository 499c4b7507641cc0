//! Configuration restore on the memory tenant and the in-memory configuration target
//! ([`MemoryConfig`]), without HTTP: categories and rules added by name, a rule's folder
//! pointed at the target's folder of the same path (or the rule skipped, the path named),
//! settings written only with `--overwrite-settings`, a second run adding nothing, and
//! lost answers duplicating nothing.

use std::sync::Arc;

use atlas_core::model::{ContentKind, ItemKind, KindSet, MailboxId};
use atlas_core::ports::{ConfigTarget, MailTarget, NullReporter};
use atlas_core::service::Cancel;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::restore::{
    ConfigEntry, ConfigOutcome, RestoreOptions, RestoreSummary, execute_all, plan,
};
use atlas_core::testing::MemoryConfig;
use serde_json::{Value, json};

use atlas_core::service::backup::backup_mailbox;

use super::backup::{Env, clock, env, opts};

/// A mailbox with two categories, a rule that moves mail to `Inbox/Receipts`, a rule
/// without a folder, and settings; backed up. Returns the env, the source and a target.
async fn configured() -> (Env, String, String) {
    let env = env(2, 3).await;
    let users = env.tenant.addresses();
    let (upn, other) = (users[0].clone(), users[1].clone());
    let receipts = env
        .tenant
        .add_folder(&upn, "Inbox", "Receipts", ItemKind::Mail)
        .unwrap();
    env.tenant
        .add_folder(&upn, "", "Configuration", ItemKind::Config)
        .unwrap();
    let items = [
        (
            "config:masterCategories",
            json!({"value": [{"displayName": "Blue", "color": "preset7"}, {"displayName": "Red", "color": "preset0"}]}),
        ),
        (
            "config:messageRules",
            json!({"value": [
                {"displayName": "To receipts", "sequence": 1, "isEnabled": true,
                 "conditions": {"subjectContains": ["receipt"]},
                 "actions": {"moveToFolder": receipts.as_str(), "stopProcessingRules": true}},
                {"displayName": "Mark read", "sequence": 2, "isEnabled": false,
                 "actions": {"markAsRead": true}},
            ]}),
        ),
        (
            "config:mailboxSettings",
            json!({"timeZone": "W. Europe Standard Time", "dateFormat": "dd.MM.yyyy"}),
        ),
    ];
    for (id, v) in items {
        env.tenant
            .add_item_with_id(
                &upn,
                "Configuration",
                ItemKind::Config,
                id,
                vec![(ContentKind::Json, bytes::Bytes::from(v.to_string()))],
            )
            .unwrap();
    }
    let mut o = opts();
    o.folder_options.kinds = KindSet::ALL;
    let mailbox = env.source.resolve_mailbox(&upn).await.unwrap();
    let summary = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &o,
        clock(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(summary.complete, "{summary:#?}");
    (env, upn, other)
}

/// A target mailbox `other` with an inbox, a `Receipts` folder under it unless
/// `without_receipts`, one category of its own and settings.
fn target_config(other: &str, without_receipts: bool) -> Arc<MemoryConfig> {
    let c = MemoryConfig::new();
    let m = MailboxId::new(other);
    let mut folders = vec![("Inbox", Some("inbox"))];
    if !without_receipts {
        folders.push(("Inbox/Receipts", None));
    }
    c.add_mailbox(&m, &folders);
    Arc::new(c)
}

async fn restore_config(
    env: &Env,
    upn: &str,
    other: &str,
    config: &Arc<MemoryConfig>,
    overwrite: bool,
) -> RestoreSummary {
    let mut opts = RestoreOptions::new(SnapshotSelector::Latest {
        mailbox: MailboxId::new(upn),
        as_of: None,
    });
    opts.target = Some(other.to_owned());
    opts.kinds = KindSet::of([ItemKind::Config]);
    opts.overwrite_settings = overwrite;
    let planned = plan(&env.repo, &opts).await.unwrap();
    let target: Arc<dyn MailTarget> = Arc::new(env.tenant.clone());
    let config: Arc<dyn ConfigTarget> = config.clone();
    execute_all(
        &planned,
        &env.repo,
        target,
        None,
        Some(config),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap()
}

fn names(list: &[Value]) -> Vec<&str> {
    let mut n: Vec<&str> = list
        .iter()
        .filter_map(|v| v["displayName"].as_str())
        .collect();
    n.sort_unstable();
    n
}

fn outcome(s: &RestoreSummary, entry: ConfigEntry, name: &str) -> ConfigOutcome {
    s.config
        .iter()
        .find(|c| c.entry == entry && c.name == name)
        .map_or_else(
            || panic!("no result for {name}: {:?}", s.config),
            |c| c.outcome,
        )
}

#[tokio::test]
async fn categories_and_rules_are_added_by_name_and_settings_only_with_overwrite() {
    let (env, upn, other) = configured().await;
    let config = target_config(&other, false);
    let s = restore_config(&env, &upn, &other, &config, false).await;
    let m = MailboxId::new(&other);
    let d = config.dump(&m);
    assert_eq!(names(&d.categories), ["Blue", "Red"]);
    assert_eq!(names(&d.rules), ["Mark read", "To receipts"]);
    let moved = d
        .rules
        .iter()
        .find(|r| r["displayName"] == "To receipts")
        .unwrap();
    let receipts = config
        .find_mail_folder(&m, None, "", Some("inbox"))
        .await
        .unwrap()
        .unwrap();
    let receipts = config
        .find_mail_folder(&m, Some(&receipts.id), "receipts", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        moved["actions"]["moveToFolder"],
        receipts.id.as_str(),
        "the rule points at the target's folder of the same path"
    );
    assert!(
        d.settings.is_empty(),
        "settings untouched without overwrite"
    );
    assert_eq!(
        outcome(&s, ConfigEntry::Category, "Blue"),
        ConfigOutcome::Created
    );

    // Again: nothing added, each one skipped.
    let writes = config.writes();
    let s = restore_config(&env, &upn, &other, &config, false).await;
    assert_eq!(config.writes(), writes, "a second run writes nothing");
    assert_eq!(
        outcome(&s, ConfigEntry::Rule, "To receipts"),
        ConfigOutcome::Skipped
    );

    // With --overwrite-settings the stored settings are written.
    restore_config(&env, &upn, &other, &config, true).await;
    let d = config.dump(&m);
    assert_eq!(d.settings["dateFormat"], "dd.MM.yyyy");
    assert_eq!(d.settings["timeZone"], "W. Europe Standard Time");
}

#[tokio::test]
async fn a_rule_whose_folder_the_target_lacks_is_skipped_with_its_path_and_lost_answers_duplicate_nothing()
 {
    let (env, upn, other) = configured().await;
    let config = target_config(&other, true);
    config.lose_answers(3);
    let s = restore_config(&env, &upn, &other, &config, false).await;
    let d = config.dump(&MailboxId::new(&other));
    assert_eq!(names(&d.categories), ["Blue", "Red"], "each category once");
    assert_eq!(
        names(&d.rules),
        ["Mark read"],
        "the rule without its folder is not created"
    );
    let skipped = s.config.iter().find(|c| c.name == "To receipts").unwrap();
    assert_ne!(skipped.outcome, ConfigOutcome::Created);
    assert!(
        skipped
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Inbox/Receipts")),
        "{skipped:?}"
    );
}
