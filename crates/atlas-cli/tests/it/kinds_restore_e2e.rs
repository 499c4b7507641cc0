//! Restore of calendars, contacts, tasks and notes (issue 14) through the binary against
//! the simulator: a mailbox of every kind backed up, changed through the admin API, backed
//! up again, verified, and restored into ANOTHER mailbox through import sessions that
//! expire while it runs; every restored item of every kind is compared with the
//! simulator's dump of the source (properties, recurrence and exceptions, attendees,
//! attachments, photos), no meeting mail is sent, and running the restore again adds
//! nothing. A restore killed half-way completes on the next run without duplicates; an app
//! without MailboxItem.ImportExport.All is refused before anything is written.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atlas_sim::{FaultConfig, PimDump, roles};
use serde_json::{Value, json};

use super::graph_e2e::{EVERY_KIND_ROLES, Sim, json_run};
use super::{Sandbox, output_text};

/// Every kind's backup permissions, and the two a restore of every kind writes with.
fn restore_roles() -> Vec<&'static str> {
    let write = [
        roles::MAILBOX_FOLDER_READ_WRITE_ALL,
        roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL,
    ];
    EVERY_KIND_ROLES.into_iter().chain(write).collect()
}

fn sim_with(roles: &[&str], session_lifetime: Duration) -> Sim {
    let mut cfg = Sim::tenant(8, 4, roles);
    cfg.mailbox_api.import_session_lifetime = session_lifetime;
    Sim::start(cfg)
}

/// What an item is, without where it is: class, categories, properties, attachments,
/// photo, occurrences.
fn identity(item: &atlas_sim::ItemDump) -> String {
    json!({
        "class": item.class,
        "categories": item.categories,
        "props": item.props,
        "attachments": item.attachments.iter().map(|a| json!([a.name, a.content_type, a.size, a.sha256])).collect::<Vec<_>>(),
        "photo": item.photo_sha256,
        "exceptions": item.exceptions.iter().map(|e| json!([e.original_start, e.cancelled, e.props])).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Items by folder path (sorted identities), optionally only below `prefix` (stripped).
fn by_folder(
    dump: &PimDump,
    map: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in &dump.items {
        if let Some(path) = map(&i.folder_path) {
            out.entry(path).or_default().push(identity(i));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// The restored items of `target` mapped back to source folder paths: an item in
/// `<home>/<root>/<source path>` (home = the target's own calendar, contacts … folder).
fn restored(target: &PimDump, root: &str) -> BTreeMap<String, Vec<String>> {
    let homes: Vec<String> = target
        .folders
        .iter()
        .filter(|f| {
            f.well_known_name
                .as_deref()
                .is_some_and(|w| ["calendar", "contacts", "tasks", "notes"].contains(&w))
        })
        .map(|f| format!("{}/{root}/", f.path))
        .collect();
    by_folder(target, |p| {
        homes
            .iter()
            .find_map(|h| p.strip_prefix(h.as_str()).map(str::to_owned))
    })
}

fn assert_restored_like_source(sim: &Sim, source: &str, target: &str, root: &str) {
    let want = by_folder(&sim.handle.dump_pim(source).expect("dump"), |p| {
        Some(p.to_owned())
    });
    let got = restored(&sim.handle.dump_pim(target).expect("dump"), root);
    let kinds: std::collections::BTreeSet<&str> = want
        .values()
        .flatten()
        .filter_map(|i| serde_json::from_str::<Value>(i).ok())
        .filter_map(|v| v["class"].as_str().map(str::to_owned))
        .map(|c| match c.as_str() {
            "IPM.Appointment" => "calendar",
            "IPM.Contact" => "contacts",
            "IPM.Task" => "tasks",
            "IPM.StickyNote" => "notes",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["calendar", "contacts", "notes", "tasks"]
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "restored folders"
    );
    for (folder, items) in &want {
        assert_eq!(
            got[folder].len(),
            items.len(),
            "number of items restored in {folder}"
        );
        assert!(got[folder] == *items, "items restored in {folder} differ");
    }
}

#[test]
fn every_kind_is_restored_into_another_mailbox_exactly_once_and_sends_nothing() {
    // Sessions live one second: the restore outlives several and renews them.
    let sim = sim_with(&restore_roles(), Duration::from_secs(1));
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    let (code, _, text) = json_run(&sandbox, &sim, &["init"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, _, text) = json_run(&sandbox, &sim, &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");

    // Add, change and delete events, contacts and tasks; change one occurrence.
    let dump = sim.handle.dump_pim(&upn).expect("dump");
    let (_, deleted) = super::kinds_e2e::change_events_contacts_and_tasks(&sim, &upn, &dump);
    let contact = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Contact" && i.id != deleted)
        .expect("a second contact");
    sim.handle
        .update_item(&upn, &contact.id, json!({"jobTitle": "Head of Restores"}))
        .expect("change contact");
    let task = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Task")
        .expect("a task");
    sim.handle.delete_item(&upn, &task.id).expect("delete task");
    sim.handle
        .add_item(
            &upn,
            "calendar",
            "IPM.Appointment",
            json!({"subject": "Added between backups", "attendees": [
                {"emailAddress": {"address": "adele@contoso.com", "name": "Adele"}, "type": "required"}
            ]}),
        )
        .expect("add event");

    let (code, _, text) = json_run(&sandbox, &sim, &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let (code, _, text) = json_run(&sandbox, &sim, &["verify", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");

    // A dry run names each folder's kind and writes nothing.
    let before = sim.handle.dump_pim(&other).expect("dump");
    let out = sandbox
        .against(&sim)
        .args(["restore", "-m", &upn, "-T", &other, "--dry-run"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("(calendar)") && text.contains("(notes)"),
        "{text}"
    );
    let (code, plan, text) = json_run(
        &sandbox,
        &sim,
        &["restore", "-m", &upn, "-T", &other, "--dry-run"],
    );
    assert_eq!(code, Some(0), "{text}");
    super::json_schemas::validate("restorePlan", &plan).expect("documented plan");
    let planned = plan["folders"].as_array().cloned().unwrap_or_default();
    for kind in ["mail", "calendar", "contacts", "tasks", "notes"] {
        assert!(
            planned.iter().any(|f| f["kind"] == kind),
            "no {kind} folder in {plan}"
        );
    }
    // Mail backed up without its streams is created from MIME; every other kind imported.
    for f in &planned {
        let method = if f["kind"] == "mail" {
            "mime"
        } else {
            "import"
        };
        assert_eq!(f["method"], method, "{f}");
    }
    assert_eq!(sim.handle.dump_pim(&other).expect("dump"), before);

    sim.handle.reset_invitations();
    sim.handle.reset_counters();
    // Slow enough that import sessions of one second expire while it runs.
    sim.handle.set_faults(FaultConfig {
        latency: Duration::from_millis(60),
        ..FaultConfig::default()
    });
    let (code, doc, text) = json_run(&sandbox, &sim, &["restore", "-m", &upn, "-T", &other]);
    sim.handle.set_faults(FaultConfig::default());
    assert_eq!(code, Some(0), "{text}");
    super::json_schemas::validate("restore", &doc).expect("documented summary");
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["failed"], 0, "{doc}");
    let root = doc["root"].as_str().expect("root").to_owned();
    assert!(root.starts_with("Restore-"), "{root}");
    let folders = doc["folders"].as_array().cloned().unwrap_or_default();
    for kind in ["mail", "calendar", "contacts", "tasks", "notes"] {
        assert!(
            folders
                .iter()
                .any(|f| f["kind"] == kind && f["verified"] == true),
            "no verified {kind} folder in {doc}"
        );
    }
    assert!(
        folders
            .iter()
            .all(|f| f["present"] == f["expected"] && f["verified"] == true),
        "{doc}"
    );
    assert_restored_like_source(&sim, &upn, &other, &root);
    assert!(
        sim.handle.invitations().is_empty(),
        "meeting mail was sent: {:?}",
        sim.handle.invitations()
    );
    let counters = sim.handle.counters();
    assert!(
        counters.kind("create_import_session").requests >= 2
            && counters.kind("import_item").errors >= 1,
        "expired import URLs were never refused and renewed: {counters:?}"
    );
    let created = doc["created"].as_u64().expect("created");

    // The same command again: everything is there, nothing is added.
    let before = sim.handle.dump_pim(&other).expect("dump").items.len();
    let (code, doc, text) = json_run(&sandbox, &sim, &["restore", "-m", &upn, "-T", &other]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["created"], 0, "{doc}");
    assert_eq!(doc["skipped"].as_u64(), Some(created), "{doc}");
    assert_eq!(
        sim.handle.dump_pim(&other).expect("dump").items.len(),
        before
    );
    assert_restored_like_source(&sim, &upn, &other, &root);
    assert!(sim.handle.invitations().is_empty());

    // One folder of one kind, and the kinds filter.
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
            "contacts",
            "--root",
            "Contacts only",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    let folders = doc["folders"].as_array().cloned().unwrap_or_default();
    assert!(!folders.is_empty());
    assert!(folders.iter().all(|f| f["kind"] == "contacts"), "{doc}");

    // Configuration needs MailboxSettings.ReadWrite, which this app lacks (it reads the
    // settings only): asking for it is refused up front, naming the permission
    // (config_restore_e2e restores it).
    let (code, _, text) = json_run(
        &sandbox,
        &sim,
        &["restore", "-m", &upn, "-T", &other, "--kinds", "config"],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("MailboxSettings.ReadWrite"), "{text}");
}

#[test]
fn a_restore_killed_half_way_completes_on_the_next_run_without_duplicates() {
    let sim = sim_with(&restore_roles(), Duration::from_secs(3600));
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let (code, _, text) = json_run(&sandbox, &sim, &args);
        assert_eq!(code, Some(0), "{text}");
    }
    let restore = [
        "restore",
        "-m",
        upn.as_str(),
        "-T",
        other.as_str(),
        "--kinds",
        "calendar,contacts,tasks,notes",
        "--root",
        "Killed and resumed",
    ];
    sim.handle.set_faults(FaultConfig {
        latency: Duration::from_millis(40),
        ..FaultConfig::default()
    });
    sim.handle.reset_counters();
    let mut child = sandbox
        .spawnable(&sim)
        .args(restore)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.handle.counters().kind("import_item").requests < 8 {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "restore ended too soon"
        );
        assert!(Instant::now() < deadline, "restore never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    sim.handle.set_faults(FaultConfig::default());
    let total = sim.handle.dump_pim(&upn).expect("dump").items.len() as u64;
    let half = restored(
        &sim.handle.dump_pim(&other).expect("dump"),
        "Killed and resumed",
    )
    .values()
    .map(Vec::len)
    .sum::<usize>() as u64;
    assert!(half > 0 && half < total, "killed at {half} of {total}");

    let (code, doc, text) = json_run(&sandbox, &sim, &restore);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(
        doc["created"].as_u64().unwrap_or(0) + doc["skipped"].as_u64().unwrap_or(0),
        total,
        "{doc}"
    );
    assert!(doc["skipped"].as_u64().unwrap_or(0) >= half - 1, "{doc}");
    assert_restored_like_source(&sim, &upn, &other, "Killed and resumed");
    assert!(sim.handle.invitations().is_empty());
}

#[test]
fn without_the_import_permission_restore_of_other_kinds_is_refused_up_front() {
    let roles: Vec<&str> = restore_roles()
        .into_iter()
        .filter(|r| *r != roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL)
        .collect();
    let sim = sim_with(&roles, Duration::from_secs(3600));
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let (code, _, text) = json_run(&sandbox, &sim, &args);
        assert_eq!(code, Some(0), "{text}");
    }
    let before = sim.handle.dump_pim(&other).expect("dump");
    let mail_before = sim.handle.dump_mailbox(&other).expect("dump");
    let (code, _, text) = json_run(&sandbox, &sim, &["restore", "-m", &upn, "-T", &other]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("MailboxItem.ImportExport.All"), "{text}");
    assert_eq!(sim.handle.dump_pim(&other).expect("dump"), before);
    assert_eq!(
        sim.handle.dump_mailbox(&other).expect("dump").folders.len(),
        mail_before.folders.len(),
        "nothing is written, not even the mail root"
    );
    // Mail alone needs no import permission.
    let (code, _, text) = json_run(
        &sandbox,
        &sim,
        &["restore", "-m", &upn, "-T", &other, "--kinds", "mail"],
    );
    assert_eq!(code, Some(0), "{text}");
}
