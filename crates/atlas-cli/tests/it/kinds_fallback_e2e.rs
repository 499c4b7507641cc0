//! Restore of contacts and tasks without `MailboxItem.ImportExport.All` (issue 14): through
//! the binary against the simulator, with an app that may write contacts and To Do tasks
//! through the classic endpoints but not import. Contacts (with photos) and tasks are
//! restored into another mailbox and compared with the source in the simulator's dump on
//! the fields a classic create carries; a second run adds nothing; lost answers duplicate
//! nothing; calendars still refuse, and so does a restore whose classic permission is
//! missing too.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;

use atlas_sim::{FaultConfig, PimDump, roles};
use serde_json::{Value, json};

use super::Sandbox;
use super::graph_e2e::{EVERY_KIND_ROLES, Sim, json_run};

/// What a classic create carries of an item: its class, categories, photo and
/// properties, less what the server sets itself (a task's body modification time).
fn carried(item: &atlas_sim::ItemDump) -> String {
    let mut props = item.props.clone();
    if let Some(o) = props.as_object_mut() {
        o.remove("bodyLastModifiedDateTime");
    }
    json!({
        "class": item.class,
        "categories": item.categories,
        "props": props,
        "photo": item.photo_sha256,
    })
    .to_string()
}

/// Contacts and tasks by source folder path (sorted), `map` turning a dump path into a
/// source path (or `None` to leave the item out).
fn by_folder(
    dump: &PimDump,
    map: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in dump
        .items
        .iter()
        .filter(|i| i.class == "IPM.Contact" || i.class == "IPM.Task")
    {
        if let Some(path) = map(&i.folder_path) {
            out.entry(path).or_default().push(carried(i));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// The restored contacts and tasks of `target`, by the source path they came from:
/// contact folders nest under `Contacts/<root>/`, To Do lists cannot nest and are named
/// `<root> > <path, steps joined by " > ">` beside the default list.
fn restored(target: &PimDump, root: &str) -> BTreeMap<String, Vec<String>> {
    let contacts = format!("Contacts/{root}/");
    let tasks = format!("Tasks/{root} > ");
    by_folder(target, |p| {
        p.strip_prefix(contacts.as_str())
            .map(str::to_owned)
            .or_else(|| {
                p.strip_prefix(tasks.as_str())
                    .map(|t| t.replace(" > ", "/"))
            })
    })
}

fn sim_with(roles: &[&str]) -> Sim {
    Sim::start(Sim::tenant(8, 4, roles))
}

/// The backup permissions of every kind plus the classic write permissions, without the
/// import permission.
fn classic_roles() -> Vec<&'static str> {
    EVERY_KIND_ROLES
        .into_iter()
        .chain([roles::CONTACTS_READ_WRITE, roles::TASKS_READ_WRITE_ALL])
        .collect()
}

fn backed_up(sim: &Sim) -> (Sandbox, String, String) {
    let sandbox = Sandbox::new();
    let users = sim.licensed_users();
    let (upn, other) = (users[0].clone(), users[1].clone());
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let (code, _, text) = json_run(&sandbox, sim, &args);
        assert_eq!(code, Some(0), "{text}");
    }
    (sandbox, upn, other)
}

/// `restore -m upn -T other --kinds kinds --json`: exit code, summary, output.
fn restore_kinds(
    sandbox: &Sandbox,
    sim: &Sim,
    (upn, other): (&str, &str),
    kinds: &str,
) -> (Option<i32>, Value, String) {
    json_run(
        sandbox,
        sim,
        &["restore", "-m", upn, "-T", other, "--kinds", kinds],
    )
}

#[test]
fn without_the_import_permission_contacts_and_tasks_are_created_through_the_classic_endpoints() {
    let sim = sim_with(&classic_roles());
    let (sandbox, upn, other) = backed_up(&sim);
    let source = sim.handle.dump_pim(&upn).expect("dump");
    let want = by_folder(&source, |p| Some(p.to_owned()));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        [
            "Contacts",
            "Contacts/Suppliers",
            "Tasks",
            "Tasks/Project Launch"
        ]
    );
    let total: usize = want.values().map(Vec::len).sum();
    assert!(
        source
            .items
            .iter()
            .any(|i| i.class == "IPM.Contact" && i.photo_sha256.is_some()),
        "the source has contacts with photos"
    );

    let restore = &[
        "restore",
        "-m",
        &upn,
        "-T",
        &other,
        "--kinds",
        "contacts,tasks",
    ];
    let (code, doc, text) = json_run(&sandbox, &sim, restore);
    assert_eq!(code, Some(0), "{text}");
    super::json_schemas::validate("restore", &doc).expect("documented summary");
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["created"].as_u64(), Some(total as u64), "{doc}");
    let root = doc["root"].as_str().expect("root").to_owned();
    let got = restored(&sim.handle.dump_pim(&other).expect("dump"), &root);
    assert_eq!(
        got, want,
        "restored contacts and tasks differ from the source"
    );
    assert_eq!(sim.handle.counters().kind("import_item").requests, 0);

    // Again: nothing is created twice. The warning names the classic path and the
    // permission that restores exact copies.
    let out = sandbox.against(&sim).args(restore).output().expect("runs");
    let text = super::output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("classic endpoints") && text.contains("MailboxItem.ImportExport.All"),
        "{text}"
    );
    let (code, doc, text) = json_run(&sandbox, &sim, restore);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["created"], 0, "{doc}");
    assert_eq!(doc["skipped"].as_u64(), Some(total as u64), "{doc}");
    assert_eq!(
        restored(&sim.handle.dump_pim(&other).expect("dump"), &root),
        want
    );

    // Lost answers (the create happened, its answer never came) duplicate nothing: each is
    // checked by listing the folder; what a run could not settle, the next run does.
    sim.handle.set_faults(FaultConfig {
        lost_answer_rate: 0.3,
        hang_delay: Some(std::time::Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    let lossy = [
        "restore",
        "-m",
        &upn,
        "-T",
        &other,
        "--kinds",
        "contacts,tasks",
        "--root",
        "Lossy",
    ];
    let mut runs = 0;
    loop {
        runs += 1;
        let out = sandbox
            .against(&sim)
            .env("ATLAS_GRAPH_TIMEOUT", "1")
            .arg("--json")
            .args(lossy)
            .output()
            .expect("runs");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.code() == Some(0) && doc["complete"] == true {
            break;
        }
        assert!(
            runs < 6,
            "still incomplete after {runs} runs: {}",
            super::output_text(&out)
        );
    }
    sim.handle.set_faults(FaultConfig::default());
    assert_eq!(
        restored(&sim.handle.dump_pim(&other).expect("dump"), "Lossy"),
        want,
        "lost answers made duplicates or lost items"
    );
}

#[test]
fn calendars_and_a_missing_classic_permission_still_refuse_up_front() {
    // Contacts may fall back, but not without Contacts.ReadWrite: both permissions named.
    let roles: Vec<&str> = EVERY_KIND_ROLES
        .into_iter()
        .chain([roles::TASKS_READ_WRITE_ALL])
        .collect();
    let sim = sim_with(&roles);
    let (sandbox, upn, other) = backed_up(&sim);
    let before = sim.handle.dump_pim(&other).expect("dump");
    let (code, _, text) = restore_kinds(&sandbox, &sim, (&upn, &other), "contacts,tasks");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("MailboxItem.ImportExport.All") && text.contains("Contacts.ReadWrite"),
        "{text}"
    );
    assert_eq!(
        sim.handle.dump_pim(&other).expect("dump"),
        before,
        "nothing written"
    );
    // Tasks alone have what they need.
    let (code, doc, text) = restore_kinds(&sandbox, &sim, (&upn, &other), "tasks");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["complete"], true, "{doc}");
    // Calendars never go through a classic create (it would send meeting mail).
    let all = classic_roles()
        .into_iter()
        .chain([roles::CALENDARS_READ_WRITE])
        .collect::<Vec<_>>();
    let sim = sim_with(&all);
    let (sandbox, upn, other) = backed_up(&sim);
    let before_calendar = sim.handle.dump_pim(&other).expect("dump");
    let (code, _, text) = restore_kinds(&sandbox, &sim, (&upn, &other), "calendar,contacts");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("MailboxItem.ImportExport.All"), "{text}");
    assert_eq!(sim.handle.dump_pim(&other).expect("dump"), before_calendar);
    assert!(sim.handle.invitations().is_empty());
}
