//! Restore of the mailbox configuration (`--kinds config`, issue 14) through the binary
//! against the simulator: master categories and inbox rules the target lacks are added
//! (rules that move mail pointed at the target's folder of the same path, or skipped with
//! that path named when it has none), existing ones are left alone, settings change only
//! with `--overwrite-settings`, a second run adds nothing, and an app without
//! MailboxSettings.ReadWrite is refused before anything is written.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;

use atlas_sim::{PimDump, roles};
use serde_json::{Value, json};

use super::graph_e2e::{EVERY_KIND_ROLES, Sim, json_run};
use super::{Sandbox, output_text};

/// Every kind's backup permissions, with the settings writable
/// (`MailboxSettings.ReadWrite` in place of `MailboxSettings.Read`).
fn settings_writer() -> Vec<&'static str> {
    EVERY_KIND_ROLES
        .iter()
        .map(|r| {
            if *r == roles::MAILBOX_SETTINGS_READ {
                roles::MAILBOX_SETTINGS_READ_WRITE
            } else {
                r
            }
        })
        .collect()
}

/// The settings a restore may write (api/user-update-mailboxsettings.md).
const WRITABLE: [&str; 7] = [
    "automaticRepliesSetting",
    "workingHours",
    "timeZone",
    "language",
    "dateFormat",
    "timeFormat",
    "delegateMeetingMessageDeliveryOptions",
];

/// A 6-user tenant whose app holds `roles`, an initialized repository and a backup of
/// the first user (`kinds`: its `--kinds`, or every kind). Returns the simulator, the
/// sandbox, that user and a second one (the restore target).
fn backed_up(roles: &[&str], kinds: Option<&str>) -> (Sim, Sandbox, String, String) {
    let sim = Sim::start(Sim::tenant(6, 3, roles));
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    let (code, _, text) = json_run(&sandbox, &sim, &["init"]);
    assert_eq!(code, Some(0), "{text}");
    let mut backup = vec!["backup", "-m", upn.as_str()];
    backup.extend(kinds.iter().flat_map(|k| ["--kinds", k]));
    let (code, _, text) = json_run(&sandbox, &sim, &backup);
    assert_eq!(code, Some(0), "{text}");
    (sim, sandbox, upn, other)
}

/// Mail folder paths by id.
fn folder_paths(sim: &Sim, user: &str) -> BTreeMap<String, String> {
    sim.handle
        .dump_mailbox(user)
        .expect("dump")
        .folders
        .into_iter()
        .map(|f| (f.id, f.path))
        .collect()
}

/// A mailbox's rules by name, each with its folder actions as paths (ids differ between
/// mailboxes) and without its sequence (Exchange places an added rule).
fn rules(sim: &Sim, user: &str) -> BTreeMap<String, Value> {
    let paths = folder_paths(sim, user);
    sim.handle
        .dump_pim(user)
        .expect("dump")
        .rules
        .into_iter()
        .map(|mut r| {
            if let Some(actions) = r.get_mut("actions").and_then(Value::as_object_mut) {
                for key in ["moveToFolder", "copyToFolder"] {
                    if let Some(id) = actions.get(key).and_then(Value::as_str) {
                        let path = paths.get(id).cloned().unwrap_or_else(|| format!("?{id}"));
                        actions.insert(key.into(), json!(path));
                    }
                }
            }
            if let Some(o) = r.as_object_mut() {
                o.remove("sequence");
            }
            (r["displayName"].as_str().unwrap_or_default().to_owned(), r)
        })
        .collect()
}

fn categories(dump: &PimDump) -> BTreeMap<String, String> {
    dump.categories
        .iter()
        .map(|c| (c.display_name.clone(), c.color.clone()))
        .collect()
}

fn writable(settings: &Value) -> Value {
    json!(
        WRITABLE
            .iter()
            .map(|k| (k.to_string(), settings[*k].clone()))
            .collect::<BTreeMap<_, _>>()
    )
}

fn entries(doc: &Value, outcome: &str) -> Vec<String> {
    let mut v: Vec<String> = doc["config"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["outcome"] == outcome)
        .map(|e| {
            format!(
                "{}:{}",
                e["entry"].as_str().unwrap_or(""),
                e["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn configuration_is_added_where_missing_and_settings_change_only_when_asked() {
    let (sim, sandbox, upn, other) = backed_up(&settings_writer(), None);
    let backed_up = sim.handle.dump_pim(&upn).expect("dump");
    let backed_up_rules = rules(&sim, &upn);
    assert_eq!(backed_up_rules.len(), 3);
    assert!(
        backed_up_rules["Receipts to their folder"]["actions"]["moveToFolder"]
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("Inbox/Receipts")),
        "{backed_up_rules:?}"
    );

    // After the backup, the source loses a rule and a category and changes others.
    sim.handle
        .set_rule(&upn, "Newsletters", None)
        .expect("delete rule");
    sim.handle
        .set_rule(
            &upn,
            "From my manager",
            Some(json!({"isEnabled": false, "conditions": {"subjectContains": ["changed"]}})),
        )
        .expect("change rule");
    sim.handle
        .set_category(&upn, "Red category", None)
        .expect("delete category");
    sim.handle
        .set_category(&upn, "Blue category", Some("preset20"))
        .expect("change category");
    sim.handle
        .set_settings(
            &upn,
            json!({"timeZone": "Tokyo Standard Time", "dateFormat": "yyyy-MM-dd"}),
        )
        .expect("change settings");

    // The other mailbox lacks two rules, a category, and the folder one rule needs.
    sim.handle
        .set_rule(&other, "Receipts to their folder", None)
        .expect("delete rule");
    sim.handle
        .set_rule(&other, "Newsletters", None)
        .expect("delete rule");
    sim.handle
        .set_category(&other, "Purple category", None)
        .expect("delete category");
    sim.handle
        .delete_folder(&other, "Newsletters")
        .expect("delete folder");
    let other_before = sim.handle.dump_pim(&other).expect("dump");
    let other_rules_before = rules(&sim, &other);

    // The default restore leaves configuration out; a dry run of it writes nothing.
    let (code, doc, text) = json_run(
        &sandbox,
        &sim,
        &[
            "restore",
            "-m",
            &upn,
            "-T",
            &other,
            "--kinds",
            "config",
            "--dry-run",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["config"]["overwriteSettings"], false, "{doc}");
    super::json_schemas::validate("restorePlan", &doc).expect("documented plan");
    assert_eq!(sim.handle.dump_pim(&other).expect("dump"), other_before);

    // Into another mailbox, settings untouched.
    let (code, doc, text) = json_run(
        &sandbox,
        &sim,
        &["restore", "-m", &upn, "-T", &other, "--kinds", "config"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["failed"], 0, "{doc}");
    super::json_schemas::validate("restore", &doc).expect("documented summary");
    assert_eq!(
        entries(&doc, "created"),
        ["category:Purple category", "rule:Receipts to their folder"],
        "{doc}"
    );
    let skipped = doc["config"]
        .as_array()
        .expect("config")
        .iter()
        .find(|e| e["name"] == "Newsletters")
        .expect("Newsletters reported")
        .clone();
    assert_eq!(skipped["outcome"], "skipped", "{doc}");
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Newsletters") && r.contains("does not have")),
        "{skipped}"
    );
    assert!(entries(&doc, "skipped").contains(&"category:Red category".to_owned()));
    assert!(entries(&doc, "skipped").contains(&"setting:timeZone".to_owned()));
    let after = sim.handle.dump_pim(&other).expect("dump");
    assert_eq!(
        after.settings, other_before.settings,
        "settings changed without the flag"
    );
    assert_eq!(after.items, other_before.items, "items touched");
    let mut want_cats = categories(&other_before);
    want_cats.insert(
        "Purple category".into(),
        categories(&backed_up)["Purple category"].clone(),
    );
    assert_eq!(categories(&after), want_cats);
    let got_rules = rules(&sim, &other);
    let mut want_rules = other_rules_before.clone();
    want_rules.insert(
        "Receipts to their folder".into(),
        backed_up_rules["Receipts to their folder"].clone(),
    );
    assert_eq!(got_rules, want_rules, "rules of the other mailbox");

    // Again: nothing is added.
    let (code, doc, text) = json_run(
        &sandbox,
        &sim,
        &["restore", "-m", &upn, "-T", &other, "--kinds", "config"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(entries(&doc, "created"), Vec::<String>::new(), "{doc}");
    assert_eq!(rules(&sim, &other), got_rules);
    assert_eq!(
        categories(&sim.handle.dump_pim(&other).expect("dump")),
        want_cats
    );

    // With --overwrite-settings the stored settings replace the other mailbox's.
    let (code, doc, text) = json_run(
        &sandbox,
        &sim,
        &[
            "restore",
            "-m",
            &upn,
            "-T",
            &other,
            "--kinds",
            "config",
            "--overwrite-settings",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(entries(&doc, "created"), Vec::<String>::new(), "{doc}");
    let after = sim.handle.dump_pim(&other).expect("dump");
    assert_eq!(writable(&after.settings), writable(&backed_up.settings));
    assert_eq!(
        after.settings["archiveFolder"], other_before.settings["archiveFolder"],
        "archiveFolder is not writable and not restored"
    );

    // Into the same mailbox (`--kinds all` includes configuration): the deleted rule and
    // category come back, the changed ones stay as they are now.
    let changed_rule = rules(&sim, &upn)["From my manager"].clone();
    let (code, doc, text) = json_run(
        &sandbox,
        &sim,
        &[
            "restore",
            "-m",
            &upn,
            "--kinds",
            "config",
            "--overwrite-settings",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        entries(&doc, "created"),
        ["category:Red category", "rule:Newsletters"],
        "{doc}"
    );
    assert_eq!(
        entries(&doc, "updated"),
        ["setting:dateFormat", "setting:timeZone"],
        "{doc}"
    );
    let now = rules(&sim, &upn);
    assert_eq!(now["Newsletters"], backed_up_rules["Newsletters"]);
    assert_eq!(
        now["From my manager"], changed_rule,
        "an existing rule was changed"
    );
    let cats = categories(&sim.handle.dump_pim(&upn).expect("dump"));
    assert_eq!(
        cats["Blue category"], "preset20",
        "an existing category was changed"
    );
    assert_eq!(cats, {
        let mut c = categories(&backed_up);
        c.insert("Blue category".into(), "preset20".into());
        c
    });
    assert_eq!(
        writable(&sim.handle.dump_pim(&upn).expect("dump").settings),
        writable(&backed_up.settings)
    );
}

#[test]
fn kinds_all_restores_configuration_and_without_the_write_permission_it_is_refused_up_front() {
    // The settings are readable only.
    let (sim, sandbox, upn, other) = backed_up(&EVERY_KIND_ROLES, Some("mail,config"));
    sim.handle
        .set_category(&other, "Purple category", None)
        .expect("delete category");
    let before = sim.handle.dump_pim(&other).expect("dump");
    let mail_before = sim
        .handle
        .dump_mailbox(&other)
        .expect("dump")
        .messages
        .len();
    for kinds in ["config", "all"] {
        let (code, _, text) = json_run(
            &sandbox,
            &sim,
            &["restore", "-m", &upn, "-T", &other, "--kinds", kinds],
        );
        assert_eq!(code, Some(1), "{kinds}: {text}");
        assert!(
            text.contains("MailboxSettings.ReadWrite"),
            "{kinds}: {text}"
        );
        assert_eq!(
            sim.handle.dump_pim(&other).expect("dump"),
            before,
            "{kinds}"
        );
        assert_eq!(
            sim.handle
                .dump_mailbox(&other)
                .expect("dump")
                .messages
                .len(),
            mail_before,
            "{kinds}: mail written before the refusal"
        );
    }
    // Without --kinds, configuration is left out and mail restores.
    let (code, doc, text) = json_run(&sandbox, &sim, &["restore", "-m", &upn, "-T", &other]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["config"], json!([]), "{doc}");
    assert!(doc["created"].as_u64().is_some_and(|n| n > 0), "{doc}");
}

#[test]
fn configuration_writes_whose_answer_was_lost_are_checked_and_nothing_is_added_twice() {
    let (sim, sandbox, upn, other) = backed_up(&settings_writer(), Some("mail,config"));
    let backed_up = sim.handle.dump_pim(&upn).expect("dump");
    let want_rules = rules(&sim, &upn);
    // The other mailbox has no category and no rule: everything is created.
    for c in categories(&sim.handle.dump_pim(&other).expect("dump")).keys() {
        sim.handle
            .set_category(&other, c, None)
            .expect("delete category");
    }
    for r in rules(&sim, &other).keys() {
        sim.handle.set_rule(&other, r, None).expect("delete rule");
    }
    sim.handle.reset_counters();
    sim.handle.set_faults(atlas_sim::FaultConfig {
        lost_answer_rate: 0.3,
        hang_delay: Some(std::time::Duration::from_secs(60)),
        ..atlas_sim::FaultConfig::default()
    });
    let out = sandbox
        .against(&sim)
        .env("ATLAS_GRAPH_TIMEOUT", "1")
        .args([
            "--json", "restore", "-m", &upn, "-T", &other, "--kinds", "config",
        ])
        .output()
        .expect("runs");
    sim.handle.set_faults(atlas_sim::FaultConfig::default());
    // Each lost create answer made the restore list again before going on: more than
    // the two first listings (categories, rules); the probe, settings not asked for.
    let lists = sim.handle.counters().kind("mailbox_settings").requests;
    let text = output_text(&out);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(doc["failed"], 0, "{doc}");
    let after = sim.handle.dump_pim(&other).expect("dump");
    assert_eq!(
        after.categories.len(),
        backed_up.categories.len(),
        "duplicates: {:?}",
        after.categories
    );
    assert_eq!(categories(&after), categories(&backed_up));
    assert_eq!(
        after.rules.len(),
        want_rules.len(),
        "duplicates: {:?}",
        after.rules
    );
    assert_eq!(rules(&sim, &other), want_rules);
    assert!(
        lists > 2,
        "no create answer was lost ({lists} listings): the check went untested"
    );
}
