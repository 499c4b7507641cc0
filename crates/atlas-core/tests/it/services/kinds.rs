//! Backup of every kind of mailbox item on the memory tenant: calendars, contacts, tasks,
//! notes and configuration next to mail, in one snapshot, through the same pipeline.

use bytes::Bytes;

use atlas_core::model::{ContentKind, ItemKind, KindSet, MailboxId};
use atlas_core::ports::{FolderOptions, NullReporter};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox};
use atlas_core::testing::{MemoryTenant, Op};

use super::backup::{Env, assert_matches_tenant, clock, env, opts, resolve};

fn all_kinds() -> BackupOptions {
    let mut o = opts();
    o.folder_options.kinds = KindSet::ALL;
    o
}

fn export(n: usize, version: u32) -> Bytes {
    Bytes::from(format!(
        "EXPORT-STREAM item {n} v{version} \0\x01\x02 opaque"
    ))
}

fn json(title: &str, version: u32) -> Bytes {
    Bytes::from(format!(r#"{{"subject":"{title}","version":{version}}}"#))
}

/// Calendars (two), contacts, tasks, notes and a configuration folder beside the mail.
fn add_every_kind(tenant: &MemoryTenant, address: &str, events: usize) {
    let t = tenant;
    t.add_folder(address, "", "Calendar", ItemKind::Calendar)
        .unwrap();
    t.add_folder(address, "Calendar", "Team Events", ItemKind::Calendar)
        .unwrap();
    t.add_folder(address, "", "Contacts", ItemKind::Contact)
        .unwrap();
    t.add_folder(address, "", "Tasks", ItemKind::Task).unwrap();
    t.add_folder(address, "", "Notes", ItemKind::Note).unwrap();
    t.add_folder(address, "", "Configuration", ItemKind::Config)
        .unwrap();
    for n in 0..events {
        let folder = if n % 3 == 0 {
            "Calendar/Team Events"
        } else {
            "Calendar"
        };
        let title = format!("Meeting {n}");
        t.add_item(
            address,
            folder,
            ItemKind::Calendar,
            &title,
            vec![
                (ContentKind::Export, export(n, 1)),
                (ContentKind::Json, json(&title, 1)),
            ],
        )
        .unwrap();
    }
    for (folder, kind, n) in [
        ("Contacts", ItemKind::Contact, 1000),
        ("Contacts", ItemKind::Contact, 1001),
        ("Tasks", ItemKind::Task, 2000),
    ] {
        t.add_item(
            address,
            folder,
            kind,
            "x",
            vec![
                (ContentKind::Export, export(n, 1)),
                (ContentKind::Json, json("x", 1)),
            ],
        )
        .unwrap();
    }
    t.add_item(
        address,
        "Notes",
        ItemKind::Note,
        "note",
        vec![(ContentKind::Export, export(3000, 1))],
    )
    .unwrap();
    t.add_item(
        address,
        "Configuration",
        ItemKind::Config,
        "mailboxSettings",
        vec![(ContentKind::Json, json("settings", 1))],
    )
    .unwrap();
}

async fn run(
    env: &Env,
    address: &str,
    o: &BackupOptions,
) -> atlas_core::service::backup::BackupSummary {
    let mailbox = resolve(env, address).await;
    backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        o,
        clock(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_backed_up_exported_in_batches_and_kept_incrementally() {
    let env = env(1, 12).await;
    let address = env.tenant.addresses().remove(0);
    add_every_kind(&env.tenant, &address, 45);

    let first = run(&env, &address, &all_kinds()).await;
    assert!(first.complete, "{first:#?}");
    assert_matches_tenant(&env, &address).await;
    // 45 events in two calendars (30 + 15), 2 contacts, 1 task, 1 note: export streams
    // come 20 at a time per folder and delta page (page size 7 here), never one by one.
    let batches = env.tenant.calls(Op::FetchBatch);
    assert!(batches <= 14, "{batches} batch calls");
    let kinds: Vec<ItemKind> = first.folders.iter().map(|f| f.kind).collect();
    for k in ItemKind::ALL {
        assert!(kinds.contains(&k), "no folder of kind {k} in the report");
    }
    // Configuration has no export stream: its JSON is the primary content.
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(&address))
        .await
        .unwrap()
        .unwrap();
    // A format-4 repository's snapshots all say 4 (3 for other kinds and 2 for mail only
    // are what repositories before format 4 get: format_fixture covers them).
    assert_eq!(
        snap.record.format_version,
        atlas_core::repo::FORMAT_VERSION,
        "a snapshot holding other kinds says so"
    );
    let config = snap
        .record
        .folders
        .iter()
        .find(|f| f.folder.kind == ItemKind::Config)
        .unwrap();
    let items = env.repo.load_folder_items(&config.items).await.unwrap();
    assert_eq!(items[0].primary().kind, ContentKind::Json);

    // Change an event (new change key), delete a contact, add a task: the incremental
    // downloads exactly the changed and the new item and records the deletion.
    let dump = env.tenant.dump(&address).unwrap();
    let event = dump
        .items
        .iter()
        .find(|i| i.kind == ItemKind::Calendar)
        .unwrap();
    env.tenant
        .replace_content(
            &address,
            &event.id,
            vec![
                (ContentKind::Export, export(7, 2)),
                (ContentKind::Json, json("moved", 2)),
            ],
        )
        .unwrap();
    let contact = dump
        .items
        .iter()
        .find(|i| i.kind == ItemKind::Contact)
        .unwrap();
    env.tenant.delete_item(&address, &contact.id).unwrap();
    env.tenant
        .add_item(
            &address,
            "Tasks",
            ItemKind::Task,
            "new",
            vec![
                (ContentKind::Export, export(2001, 1)),
                (ContentKind::Json, json("new", 1)),
            ],
        )
        .unwrap();
    let second = run(&env, &address, &all_kinds()).await;
    assert!(second.complete, "{second:#?}");
    assert_eq!(second.downloaded, 2, "{second:#?}");
    assert_eq!(second.removed, 1);
    assert_matches_tenant(&env, &address).await;
}

/// Regression: after a backup of every kind, `status` (which lists mail folders) reported
/// every calendar, contact, task, note and configuration folder of the snapshot as gone,
/// so a mailbox with nothing pending was never up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_mail_does_not_call_folders_of_other_kinds_gone() {
    let env = env(1, 6).await;
    let address = env.tenant.addresses().remove(0);
    add_every_kind(&env.tenant, &address, 4);
    let first = run(&env, &address, &all_kinds()).await;
    assert!(first.complete, "{first:#?}");
    let mailbox = resolve(&env, &address).await;
    let status = atlas_core::service::status::mailbox_status(
        &env.repo,
        env.source.as_ref(),
        &mailbox,
        FolderOptions::default(),
        50,
    )
    .await
    .unwrap();
    assert!(status.is_up_to_date(), "{status:#?}");
    assert!(!status.folders.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_not_selected_are_neither_listed_nor_read() {
    let env = env(2, 5).await;
    let address = env.tenant.addresses().remove(0);
    add_every_kind(&env.tenant, &address, 3);
    let mut o = opts();
    o.folder_options.kinds = KindSet::of([ItemKind::Mail, ItemKind::Contact]);
    let summary = run(&env, &address, &o).await;
    assert!(summary.complete);
    assert!(
        summary
            .folders
            .iter()
            .all(|f| matches!(f.kind, ItemKind::Mail | ItemKind::Contact)),
        "{:?}",
        summary.folders
    );
    assert_eq!(
        summary
            .folders
            .iter()
            .filter(|f| f.kind == ItemKind::Contact)
            .count(),
        1
    );
    // Mail only (the default) never touches the other kinds: the contacts stored before
    // are carried over unvisited, so the snapshot is still the whole mailbox.
    let before = env.tenant.calls(Op::FetchBatch);
    let mail = run(&env, &address, &opts()).await;
    assert!(
        mail.folders
            .iter()
            .filter(|f| f.visited)
            .all(|f| f.kind == ItemKind::Mail)
    );
    let carried: Vec<_> = mail.folders.iter().filter(|f| !f.visited).collect();
    assert_eq!(carried.len(), 1, "{:?}", mail.folders);
    assert_eq!((carried[0].kind, carried[0].stored), (ItemKind::Contact, 2));
    assert_eq!(env.tenant.calls(Op::FetchBatch), before);
    // A mailbox that never had other kinds backed up gets a format-2 snapshot.
    let other = env.tenant.addresses().remove(1);
    run(&env, &other, &opts()).await;
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(&other))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        snap.record.format_version,
        atlas_core::repo::FORMAT_VERSION,
        "a mail-only snapshot of a format-4 repository has no mimeSha256: format 2 readers must refuse it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_whose_export_fails_is_an_item_error_and_the_batch_goes_on() {
    let env = env(1, 2).await;
    let address = env.tenant.addresses().remove(0);
    add_every_kind(&env.tenant, &address, 5);
    let dump = env.tenant.dump(&address).unwrap();
    let bad = dump
        .items
        .iter()
        .find(|i| i.kind == ItemKind::Calendar)
        .unwrap();
    env.tenant
        .set_content_failure(&address, &bad.id, true)
        .unwrap();
    let summary = run(&env, &address, &all_kinds()).await;
    assert!(!summary.complete);
    let errors: Vec<_> = summary
        .folders
        .iter()
        .flat_map(|f| f.errors.iter())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].message_id.as_ref(), Some(&bad.id));
    // Every other event of the batch is stored.
    let calendar_stored: u64 = summary
        .folders
        .iter()
        .filter(|f| f.kind == ItemKind::Calendar)
        .map(|f| f.stored)
        .sum();
    assert_eq!(calendar_stored, 4);
    env.tenant
        .set_content_failure(&address, &bad.id, false)
        .unwrap();
    let again = run(&env, &address, &all_kinds()).await;
    assert!(again.complete, "{again:#?}");
    assert_matches_tenant(&env, &address).await;
}

#[tokio::test]
async fn kinds_the_app_may_not_read_are_named_with_their_permission() {
    use atlas_core::service::backup::{kinds_skipped_warning, resolve_kinds};
    let env = env(1, 2).await;
    let address = env.tenant.addresses().remove(0);
    let mailbox = resolve(&env, &address).await;
    env.tenant.deny_kind(ItemKind::Calendar, "Calendars.Read");
    env.tenant
        .deny_kind(ItemKind::Note, "MailboxItem.Export.All");

    let (kinds, skipped) = resolve_kinds(env.source.as_ref(), &mailbox, KindSet::ALL)
        .await
        .unwrap();
    assert_eq!(
        kinds,
        KindSet::ALL
            .without(ItemKind::Calendar)
            .without(ItemKind::Note)
    );
    let warning = kinds_skipped_warning(&skipped).expect("one warning for the run");
    assert!(
        warning.contains("calendar (needs Calendars.Read)"),
        "{warning}"
    );
    assert!(warning.contains("MailboxItem.Export.All"), "{warning}");
    assert_eq!(kinds_skipped_warning(&[]), None);
    // Mail only never asks.
    let (mail, none) = resolve_kinds(env.source.as_ref(), &mailbox, KindSet::MAIL)
        .await
        .unwrap();
    assert_eq!((mail, none.len()), (KindSet::MAIL, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_backup_takes_every_kind_it_may_read_and_warns_once() {
    use atlas_core::service::backup::{BackupRequest, MailboxSelection, execute, plan};
    let env = env(2, 3).await;
    for address in env.tenant.addresses() {
        add_every_kind(&env.tenant, &address, 2);
    }
    env.tenant.deny_kind(ItemKind::Task, "Tasks.Read.All");
    let mut request = BackupRequest::new(MailboxSelection::tenant());
    request.options = opts();
    let planned = plan(env.source.as_ref(), &request).await.unwrap();
    assert_eq!(planned.kinds_skipped.len(), 1);
    assert!(
        !planned
            .options
            .folder_options
            .kinds
            .contains(ItemKind::Task)
    );
    let warnings = std::sync::Arc::new(Warnings::default());
    let report = execute(
        &planned,
        &env.repo,
        env.source.clone(),
        clock(),
        warnings.clone(),
        std::sync::Arc::new(Cancel::new()),
    )
    .await
    .unwrap();
    assert_eq!(report.outcomes.len(), 2);
    for o in &report.outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.complete, "{s:#?}");
        assert!(s.folders.iter().any(|f| f.kind == ItemKind::Calendar));
        assert!(s.folders.iter().all(|f| f.kind != ItemKind::Task));
    }
    let said = warnings.0.lock().unwrap().clone();
    assert_eq!(
        said.len(),
        1,
        "one warning per run, not per mailbox: {said:?}"
    );
    assert!(
        said[0].contains("tasks (needs Tasks.Read.All)"),
        "{}",
        said[0]
    );

    // Asked for by name, the same kind makes the run partial, naming the permission;
    // the calendars backed up before stay in the new snapshots.
    request.item_kinds = KindSet::of([ItemKind::Mail, ItemKind::Task]);
    request.item_kinds_explicit = true;
    let planned = plan(env.source.as_ref(), &request).await.unwrap();
    let report = execute(
        &planned,
        &env.repo,
        env.source.clone(),
        clock(),
        warnings.clone(),
        std::sync::Arc::new(Cancel::new()),
    )
    .await
    .unwrap();
    assert_eq!(
        report.verdict(),
        atlas_core::service::backup::Verdict::Partial
    );
    assert!(warnings.0.lock().unwrap()[1].contains("Tasks.Read.All"));
    for o in &report.outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.folders.iter().all(|f| f.kind != ItemKind::Task));
        let calendars: Vec<_> = s
            .folders
            .iter()
            .filter(|f| f.kind == ItemKind::Calendar)
            .collect();
        assert_eq!(calendars.len(), 2, "{:?}", s.folders);
        assert!(calendars.iter().all(|f| !f.visited && f.stored > 0));
        assert_matches_tenant_but(&env, &o.mailbox, ItemKind::Task).await;
    }
}

/// The latest snapshot holds every item of the tenant's mailbox but those of `kind`.
async fn assert_matches_tenant_but(env: &Env, address: &str, kind: ItemKind) {
    let dump = env.tenant.dump(address).unwrap();
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(address))
        .await
        .unwrap()
        .unwrap();
    let mut stored = std::collections::HashSet::new();
    for f in &snap.record.folders {
        for m in env.repo.load_folder_items(&f.items).await.unwrap() {
            stored.insert(m.id);
        }
    }
    let expected: std::collections::HashSet<_> = dump
        .items
        .iter()
        .filter(|i| i.kind != kind)
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(stored, expected);
}

/// Collects warnings.
#[derive(Debug, Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl atlas_core::ports::Reporter for Warnings {
    fn report(&self, event: atlas_core::ports::Event) {
        if let atlas_core::ports::Event::Warning { message, .. } = event {
            self.0.lock().unwrap().push(message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_every_kind_are_listed_by_kind_and_read_as_their_json() {
    use atlas_core::service::catalog::{ItemListOptions, SnapshotSelector, list_items};
    use atlas_core::service::read::{ReadOptions, read_message};
    let env = env(1, 3).await;
    let address = env.tenant.addresses().remove(0);
    add_every_kind(&env.tenant, &address, 4);
    let summary = run(&env, &address, &all_kinds()).await;
    let snapshot = summary.snapshot.unwrap();
    let listed = list_items(
        &env.repo,
        snapshot,
        &ItemListOptions {
            kind: Some(ItemKind::Calendar),
            show_subjects: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.total, 4);
    assert!(listed.items.iter().all(|i| i.kind == ItemKind::Calendar));
    // The title comes from the readable JSON.
    assert!(
        listed
            .items
            .iter()
            .any(|i| i.subject.as_deref() == Some("Meeting 1"))
    );
    let event = listed.items[0].message_id.to_string();
    let read = read_message(
        &env.repo,
        &ReadOptions {
            snapshot: SnapshotSelector::Id(snapshot),
            message: event,
            include_raw: true,
        },
    )
    .await
    .unwrap();
    assert!(
        read.body.contains("\"subject\": \"Meeting"),
        "{}",
        read.body
    );
    assert!(read.headers.is_empty());
    let all = list_items(&env.repo, snapshot, &ItemListOptions::default())
        .await
        .unwrap();
    assert!(all.items.iter().any(|i| i.kind == ItemKind::Mail));
    assert!(all.items.iter().any(|i| i.kind == ItemKind::Note));
}
