//! The [`ConfigTarget`] contract (`ports::config`) as checks: reads change nothing, each
//! create adds exactly one object, settings patches change only what they name, and
//! [`ConfigTarget::find_mail_folder`] finds (case-insensitively, or by well-known name)
//! and never creates.

use serde_json::json;

use crate::model::MailboxId;
use crate::ports::ConfigTarget;

/// What the suite needs besides the port.
pub trait ConfigFixture: Send + Sync {
    /// The target under test.
    fn target(&self) -> &dyn ConfigTarget;
    /// A mailbox the suite may add categories and rules to and change settings of; it has
    /// an inbox (well-known name `inbox`) and no category or rule named `Atlas conformance`.
    fn mailbox(&self) -> MailboxId;
    /// The display names of the mailbox's master categories, as the tenant holds them.
    fn category_names(&self) -> Vec<String>;
    /// The display names of the mailbox's inbox rules, as the tenant holds them.
    fn rule_names(&self) -> Vec<String>;
}

/// Run every check.
pub async fn run_all(f: &dyn ConfigFixture) {
    let t = f.target();
    let m = f.mailbox();
    t.check_config_access(&m)
        .await
        .expect("check_config_access with the permission");

    let categories = f.category_names();
    let listed = t.master_categories(&m).await.expect("categories");
    assert_eq!(
        listed.len(),
        categories.len(),
        "master_categories lists them all"
    );
    t.create_category(
        &m,
        &json!({"displayName": "Atlas conformance", "color": "preset3"}),
    )
    .await
    .expect("create_category");
    let after = f.category_names();
    assert_eq!(
        after.len(),
        categories.len() + 1,
        "create_category adds exactly one"
    );
    assert!(after.iter().any(|n| n == "Atlas conformance"));

    let rules = f.rule_names();
    assert_eq!(
        t.message_rules(&m).await.expect("rules").len(),
        rules.len(),
        "message_rules lists them all"
    );
    let rule = json!({
        "displayName": "Atlas conformance", "sequence": 99, "isEnabled": false,
        "conditions": {"subjectContains": ["atlas"]}, "actions": {"markAsRead": true},
    });
    t.create_rule(&m, &rule).await.expect("create_rule");
    assert_eq!(
        f.rule_names().len(),
        rules.len() + 1,
        "create_rule adds exactly one"
    );

    let before = t.mailbox_settings(&m).await.expect("settings");
    t.update_settings(&m, &json!({"dateFormat": "yyyy-MM-dd"}))
        .await
        .expect("update_settings");
    let changed = t.mailbox_settings(&m).await.expect("settings");
    assert_eq!(changed["dateFormat"], "yyyy-MM-dd");
    for (k, v) in before.as_object().into_iter().flatten() {
        if k != "dateFormat" {
            assert_eq!(&changed[k], v, "update_settings left {k} alone");
        }
    }

    let inbox = t
        .find_mail_folder(&m, None, "Inbox", Some("inbox"))
        .await
        .expect("find")
        .expect("the inbox by its well-known name");
    let by_name = t
        .find_mail_folder(&m, None, "INBOX", None)
        .await
        .expect("find")
        .expect("the inbox by name, case-insensitively");
    assert_eq!(by_name.id, inbox.id);
    assert!(
        t.find_mail_folder(&m, None, "No such folder (Atlas conformance)", None)
            .await
            .expect("find")
            .is_none(),
        "find_mail_folder creates nothing"
    );
    assert!(
        t.find_mail_folder(&m, None, "No such folder (Atlas conformance)", None)
            .await
            .expect("find")
            .is_none()
    );
}
