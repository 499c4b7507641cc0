//! The import/export API and the classic calendar, contact, To Do and configuration
//! endpoints through the client, against the simulator.

use atlas_core::model::ItemId;
use atlas_graph::{DeltaNext, DeltaStart, GraphError, MAX_EXPORT_ITEMS, ews_id, rest_id};
use atlas_sim::{SimConfig, roles};
use chrono::{Duration, Utc};

use crate::{client, mailbox, mailbox_user, start};

/// Every permission the whole-mailbox backup and restore use.
fn all_kinds() -> SimConfig {
    let mut cfg = SimConfig::with_size(11, 4, 6);
    cfg.granted_roles = [
        roles::USER_READ_ALL,
        roles::MAIL_READ_WRITE,
        roles::MAILBOX_FOLDER_READ_WRITE_ALL,
        roles::MAILBOX_ITEM_READ_ALL,
        roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL,
        roles::CALENDARS_READ,
        roles::CONTACTS_READ_WRITE,
        roles::TASKS_READ_WRITE_ALL,
        roles::MAILBOX_SETTINGS_READ,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    cfg
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // One item's whole journey: listed, changed, exported, imported.
async fn folder_tree_item_delta_export_and_import_round_trip() {
    let sim = start(all_kinds()).await;
    let c = client(&sim);
    let users: Vec<_> = sim.users().into_iter().filter(|u| u.has_mailbox).collect();
    let (owner, other) = (mailbox(&users[0]), mailbox(&users[1]));
    let mbx = c.exchange_mailbox_id(&owner).await.expect("mailbox id");
    assert_eq!(mbx.as_str(), sim.mailbox_id(&users[0].upn).expect("admin"));

    let tree = c.mailbox_folder_tree(&owner, &mbx).await.expect("tree");
    let find = |path: &str| {
        tree.iter()
            .find(|f| f.path.join("/") == path)
            .unwrap_or_else(|| panic!("no folder {path}"))
    };
    assert_eq!(
        find("Calendar").folder.class.as_deref(),
        Some("IPF.Appointment")
    );
    assert_eq!(
        find("Calendar/Team Events").parent_id.as_ref(),
        Some(&find("Calendar").folder.id)
    );
    assert_eq!(
        find("Contacts/Suppliers").folder.class.as_deref(),
        Some("IPF.Contact")
    );
    assert_eq!(
        find("Tasks/Project Launch").folder.class.as_deref(),
        Some("IPF.Task")
    );
    assert_eq!(
        find("Notes").folder.class.as_deref(),
        Some("IPF.StickyNote")
    );
    assert_eq!(find("Inbox").folder.class.as_deref(), Some("IPF.Note"));

    // A whole round of the calendar, then nothing until something changes.
    let calendar = find("Calendar").folder.id.clone();
    let mut items = Vec::new();
    let mut page = c
        .mailbox_item_delta_page(&owner, &mbx, DeltaStart::Initial(&calendar), 3)
        .await
        .expect("delta");
    let link = loop {
        items.append(&mut page.items);
        match page.next {
            DeltaNext::More(l) => {
                page = c
                    .mailbox_item_delta_page(&owner, &mbx, DeltaStart::Link(&l), 3)
                    .await
                    .expect("page");
            }
            DeltaNext::Done(l) => break l,
        }
    };
    assert!(items.len() >= 8, "{} calendar items", items.len());
    assert!(
        items
            .iter()
            .all(|i| i.class.as_deref() == Some("IPM.Appointment"))
    );
    let quiet = c
        .mailbox_item_delta_page(&owner, &mbx, DeltaStart::Link(&link), 50)
        .await
        .expect("quiet round");
    assert!(quiet.items.is_empty() && quiet.removed.is_empty());

    // Classic reads with the REST form of the same id.
    let first = &items[0];
    let event = c
        .get_event(&owner, &rest_id(first.id.as_str()))
        .await
        .expect("event by REST id");
    assert_eq!(
        event["id"].as_str(),
        Some(rest_id(first.id.as_str()).as_str())
    );
    assert_eq!(ews_id(&rest_id(first.id.as_str())), first.id.as_str());

    // A change shows up with a new change key; a deletion as removed.
    sim.update_item(
        &users[0].upn,
        &rest_id(first.id.as_str()),
        serde_json::json!({"subject": "Changed"}),
    )
    .expect("admin change");
    sim.delete_item(&users[0].upn, &rest_id(items[1].id.as_str()))
        .expect("admin delete");
    let changed = c
        .mailbox_item_delta_page(&owner, &mbx, DeltaStart::Link(&link), 50)
        .await
        .expect("changes");
    assert_eq!(changed.items.len(), 1);
    assert_eq!(changed.items[0].id, first.id);
    assert_ne!(changed.items[0].change_key, first.change_key);
    assert_eq!(changed.removed, vec![items[1].id.clone()]);

    // Export: at most 20 per request, one answer per id in order, per-item errors.
    let ids: Vec<ItemId> = vec![
        first.id.clone(),
        ItemId::new("AAMkAGI2bm9zdWNoaXRlbQ=="),
        items[2].id.clone(),
    ];
    let exported = c.export_items(&owner, &mbx, &ids).await.expect("export");
    assert_eq!(exported.len(), 3);
    assert!(exported[0].data.is_ok() && exported[2].data.is_ok());
    assert_eq!(
        exported[1].data.as_ref().expect_err("unknown id").code,
        "ErrorItemNotFound"
    );
    let too_many = vec![first.id.clone(); MAX_EXPORT_ITEMS + 1];
    assert!(matches!(
        c.export_items(&owner, &mbx, &too_many).await,
        Err(GraphError::TooLarge { .. })
    ));

    // Import into another mailbox's new calendar: the same item, no invitation.
    let target_mbx = c.exchange_mailbox_id(&other).await.expect("target id");
    let parent = c
        .mailbox_folder(&other, &target_mbx, "calendar")
        .await
        .expect("target calendar");
    let root = c
        .create_mailbox_folder(
            &other,
            &target_mbx,
            Some(&parent.id),
            "Restore-test",
            "IPF.Appointment",
        )
        .await
        .expect("create folder");
    assert!(matches!(
        c.create_mailbox_folder(
            &other,
            &target_mbx,
            Some(&parent.id),
            "Restore-test",
            "IPF.Appointment"
        )
        .await,
        Err(GraphError::AlreadyExists { .. })
    ));
    let session = c
        .create_import_session(&other, &target_mbx)
        .await
        .expect("session");
    assert!(!format!("{session:?}").contains("authtoken"));
    sim.reset_invitations();
    let data = exported[0].data.as_ref().expect("data");
    let imported = c
        .import_item(&other, &session, &root.id, data)
        .await
        .expect("import");
    assert!(sim.invitations().is_empty(), "{:?}", sim.invitations());
    let listed = c
        .list_mailbox_items(&other, &target_mbx, &root.id)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, imported.item_id);
    let source = sim.dump_pim(&users[0].upn).expect("dump");
    let target = sim.dump_pim(&users[1].upn).expect("dump");
    let before = source
        .items
        .iter()
        .find(|i| i.id == rest_id(first.id.as_str()))
        .expect("source item");
    let after = target
        .items
        .iter()
        .find(|i| i.folder_path == "Calendar/Restore-test")
        .expect("imported item");
    assert_eq!(after.props, before.props);
    assert_eq!(after.attachments, before.attachments);
    assert_eq!(after.exceptions, before.exceptions);
}

#[tokio::test]
async fn classic_reads_of_every_kind() {
    let sim = start(all_kinds()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let owner = mailbox(&user);
    let dump = sim.dump_pim(&user.upn).expect("dump");

    let calendars = c.list_calendars(&owner).await.expect("calendars");
    assert_eq!(calendars.len(), 2);
    let team = calendars
        .iter()
        .find(|c| c["name"] == "Team Events")
        .expect("team calendar");
    let events = c
        .list_calendar_events(&owner, team["id"].as_str().expect("id"))
        .await
        .expect("events");
    assert_eq!(
        events.len(),
        dump.items
            .iter()
            .filter(|i| i.folder_path == "Calendar/Team Events")
            .count()
    );
    // The weekly series has a moved occurrence (an exception) and a cancelled one.
    let series = dump
        .items
        .iter()
        .find(|i| i.exceptions.iter().any(|e| e.cancelled))
        .expect("a series with a cancelled occurrence");
    let start = Utc::now() - Duration::days(3650);
    let instances = c
        .event_instances(&owner, &series.id, start, Utc::now() + Duration::days(3650))
        .await
        .expect("instances");
    assert!(instances.iter().any(|i| i["type"] == "exception"));
    assert!(
        instances
            .iter()
            .all(|i| i["seriesMasterId"] == series.id.as_str())
    );
    let with_files = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Appointment" && !i.attachments.is_empty())
        .expect("event with attachments");
    let files = c
        .event_attachments(&owner, &with_files.id)
        .await
        .expect("attachments");
    assert_eq!(files.len(), with_files.attachments.len());
    assert!(files.iter().all(|f| f["contentBytes"].is_string()));

    let contact = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Contact" && i.photo_sha256.is_some())
        .expect("contact with photo");
    let json = c.get_contact(&owner, &contact.id).await.expect("contact");
    assert_eq!(json["displayName"], contact.props["displayName"]);
    let (media, bytes) = c
        .contact_photo(&owner, &contact.id)
        .await
        .expect("photo")
        .expect("has a photo");
    assert_eq!(media, "image/png");
    assert_eq!(
        Some(bytes.to_vec()),
        sim.contact_photo(&user.upn, &contact.id).expect("admin")
    );
    let no_photo = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Contact" && i.photo_sha256.is_none())
        .expect("contact without photo");
    assert!(
        c.contact_photo(&owner, &no_photo.id)
            .await
            .expect("ok")
            .is_none()
    );

    let lists = c.list_todo_lists(&owner).await.expect("lists");
    let launch = lists
        .iter()
        .find(|l| l["displayName"] == "Project Launch")
        .expect("list");
    let tasks = c
        .list_todo_tasks(&owner, launch["id"].as_str().expect("id"))
        .await
        .expect("tasks");
    assert!(!tasks.is_empty());
    let task_id = tasks[0]["id"].as_str().expect("id");
    let one = c
        .get_todo_task(&owner, launch["id"].as_str().expect("id"), task_id)
        .await
        .expect("task");
    assert_eq!(one["title"], tasks[0]["title"]);

    let settings = c.mailbox_settings_json(&owner).await.expect("settings");
    assert_eq!(settings["timeZone"], dump.settings["timeZone"]);
    assert_eq!(c.message_rules(&owner).await.expect("rules").len(), 3);
    assert_eq!(
        c.master_categories(&owner).await.expect("categories").len(),
        dump.categories.len()
    );
}

#[tokio::test]
async fn a_mail_only_app_is_refused_naming_the_permission() {
    let sim = start(SimConfig::with_size(11, 2, 3)).await;
    let c = client(&sim);
    let owner = mailbox(&mailbox_user(&sim));
    let mbx = c
        .exchange_mailbox_id(&owner)
        .await
        .expect("User.Read.All is enough");
    for (err, perm) in [
        (
            c.mailbox_folder_tree(&owner, &mbx).await.map(|_| ()),
            "MailboxFolder.Read.All",
        ),
        (
            c.export_items(&owner, &mbx, &[ItemId::new("AAMk")])
                .await
                .map(|_| ()),
            "MailboxItem.Export.All",
        ),
        (c.list_calendars(&owner).await.map(|_| ()), "Calendars.Read"),
        (
            c.list_todo_lists(&owner).await.map(|_| ()),
            "Tasks.Read.All",
        ),
        (
            c.mailbox_settings_json(&owner).await.map(|_| ()),
            "MailboxSettings.Read",
        ),
    ] {
        match err {
            Err(GraphError::PermissionDenied { permission, .. }) => assert_eq!(permission, perm),
            other => panic!("expected a 403 naming {perm}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_graph_source_passes_the_every_kind_check() {
    let sim = start(all_kinds()).await;
    let source = atlas_graph::GraphSource::new(client(&sim));
    atlas_core::testing::conformance::source::every_kind(&source, &mailbox_user(&sim).upn).await;
}

/// The stored readable JSON of every item in the latest snapshot, by REST id.
async fn stored_json(
    repo: &atlas_core::repo::Repository,
    upn: &str,
) -> std::collections::HashMap<String, (atlas_core::model::ItemMeta, serde_json::Value)> {
    use atlas_core::model::{ContentKind, MailboxId};
    let snap = repo
        .latest_snapshot(&MailboxId::new(upn))
        .await
        .expect("read")
        .expect("a snapshot");
    let mut out = std::collections::HashMap::new();
    for f in &snap.record.folders {
        for m in repo.load_folder_items(&f.items).await.expect("items") {
            if let Some(c) = m.content_of(ContentKind::Json) {
                let bytes = repo.read_blob(&c.id).await.expect("blob");
                let json = serde_json::from_slice(&bytes).expect("stored JSON parses");
                out.insert(rest_id(m.id.as_str()), (m, json));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // One mailbox's journey: full, mutated, incremental.
async fn a_whole_mailbox_backup_keeps_every_kind_and_follows_its_changes() {
    use atlas_core::model::{ContentKind, ItemKind, KindSet};
    use atlas_core::ports::{MailSource, NullReporter, SystemClock};
    use atlas_core::repo::{KdfChoice, Passphrase, Repository};
    use atlas_core::service::Cancel;
    use atlas_core::service::backup::{BackupOptions, backup_mailbox};
    use std::sync::Arc;

    let sim = start(all_kinds()).await;
    let upn = mailbox_user(&sim).upn;
    let source = Arc::new(atlas_graph::GraphSource::new(client(&sim)));
    let repo = Repository::init(
        Arc::new(atlas_store::MemoryStore::new()),
        "11111111-2222-3333-4444-555555555555",
        &Passphrase::new("correct horse battery staple"),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .expect("init");
    let mailbox = source.resolve_mailbox(&upn).await.expect("resolve");
    let mut opts = BackupOptions {
        lease_owner: "test".into(),
        ..BackupOptions::default()
    };
    opts.folder_options.kinds = KindSet::ALL;
    let run = |opts: BackupOptions| {
        let (repo, source, mailbox) = (repo.clone(), source.clone(), mailbox.clone());
        async move {
            backup_mailbox(
                &repo,
                source,
                &mailbox,
                &opts,
                Arc::new(SystemClock),
                &NullReporter,
                &Cancel::new(),
            )
            .await
            .expect("backup")
        }
    };
    sim.reset_counters();
    let first = run(opts.clone()).await;
    assert!(first.complete, "{first:#?}");
    let dump = sim.dump_pim(&upn).expect("dump");
    let stored = stored_json(&repo, &upn).await;
    let mut exported = 0u64;
    for item in &dump.items {
        if item.class == "IPM.StickyNote" {
            continue;
        }
        let (meta, json) = stored
            .get(&item.id)
            .unwrap_or_else(|| panic!("{} {} not stored", item.class, item.id));
        assert_eq!(meta.primary().kind, ContentKind::Export);
        exported += 1;
        for key in ["subject", "displayName", "title", "recurrence", "attendees"] {
            if let Some(v) = item.props.get(key) {
                assert_eq!(&json[key], v, "{key} of {}", item.id);
            }
        }
        let files = json["attachments"].as_array().map_or(0, Vec::len);
        assert_eq!(files, item.attachments.len(), "attachments of {}", item.id);
        let changed = item.exceptions.iter().filter(|e| !e.cancelled).count();
        if changed > 0 {
            let kept = json["exceptionOccurrences"].as_array().map_or(0, Vec::len);
            assert_eq!(kept, changed, "exceptions of {}", item.id);
        }
        if item.photo_sha256.is_some() {
            assert!(
                json["photo"]["contentBytes"].is_string(),
                "photo of {}",
                item.id
            );
        }
        if item.class == "IPM.Appointment" {
            assert_eq!(
                meta.subject.as_ref(),
                item.props["subject"].as_str().map(str::to_owned).as_ref(),
                "the title list shows"
            );
        }
    }
    // Configuration: settings, rules and categories as Graph returns them.
    let settings = stored
        .get("config:mailboxSettings")
        .expect("settings stored");
    assert_eq!(settings.0.kind, ItemKind::Config);
    assert_eq!(settings.1["timeZone"], dump.settings["timeZone"]);
    let rules = &stored.get("config:messageRules").expect("rules").1;
    assert_eq!(
        rules["value"].as_array().map(Vec::len),
        Some(dump.rules.len())
    );
    // Export streams come 20 items a request, never one by one.
    let counters = sim.counters();
    let exports = counters
        .by_kind
        .iter()
        .filter(|(k, _)| k.contains("export"))
        .map(|(_, c)| c.requests)
        .sum::<u64>();
    let notes = dump
        .items
        .iter()
        .filter(|i| i.class == "IPM.StickyNote")
        .count() as u64;
    assert!(exports > 0, "{counters:?}");
    assert!(
        exports * 2 <= exported + notes,
        "{exports} exportItems requests for {} items",
        exported + notes
    );

    // Change an event, cancel an occurrence of a series, delete a contact.
    let event = dump
        .items
        .iter()
        .find(|i| {
            i.class == "IPM.Appointment"
                && i.exceptions.is_empty()
                && i.props
                    .get("recurrence")
                    .is_none_or(serde_json::Value::is_null)
        })
        .expect("a single event");
    sim.update_item(
        &upn,
        &event.id,
        serde_json::json!({"subject": "Moved to Friday"}),
    )
    .expect("change");
    let series = dump
        .items
        .iter()
        .find(|i| i.exceptions.iter().any(|e| !e.cancelled))
        .expect("a series with an exception");
    let exception = series
        .exceptions
        .iter()
        .find(|e| !e.cancelled)
        .expect("exception");
    let original: chrono::DateTime<chrono::Utc> =
        exception.original_start.parse().expect("original start");
    sim.set_occurrence(
        &upn,
        &series.id,
        original,
        Some(serde_json::json!({"subject": "Exception changed again"})),
    )
    .expect("exception");
    let contact = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Contact")
        .expect("a contact");
    sim.delete_item(&upn, &contact.id).expect("delete");

    let second = run(opts.clone()).await;
    assert!(second.complete, "{second:#?}");
    assert_eq!(second.downloaded, 2, "{second:#?}");
    assert_eq!(second.removed, 1);
    let stored = stored_json(&repo, &upn).await;
    assert_eq!(stored[&event.id].1["subject"], "Moved to Friday");
    assert_eq!(
        stored[&event.id].0.subject.as_deref(),
        Some("Moved to Friday")
    );
    assert!(
        !stored.contains_key(&contact.id),
        "the deleted contact is gone"
    );
    let exceptions = stored[&series.id].1["exceptionOccurrences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        exceptions
            .iter()
            .any(|e| e["subject"] == "Exception changed again"),
        "{exceptions:?}"
    );
}

#[tokio::test]
async fn a_mail_only_app_is_told_what_each_kind_needs() {
    use atlas_core::model::{ItemKind, KindSet};
    use atlas_core::ports::MailSource;
    use atlas_core::service::backup::resolve_kinds;
    let sim = start(SimConfig::with_size(11, 2, 3)).await;
    let source = atlas_graph::GraphSource::new(client(&sim));
    let mailbox = source
        .resolve_mailbox(&mailbox_user(&sim).upn)
        .await
        .expect("resolve");
    for kind in [
        ItemKind::Calendar,
        ItemKind::Contact,
        ItemKind::Task,
        ItemKind::Note,
    ] {
        assert_eq!(
            source
                .kind_access(&mailbox, kind)
                .await
                .expect("probe")
                .as_deref(),
            Some("MailboxFolder.Read.All"),
            "{kind}"
        );
    }
    assert_eq!(
        source
            .kind_access(&mailbox, ItemKind::Config)
            .await
            .expect("probe")
            .as_deref(),
        Some("MailboxSettings.Read")
    );
    let (kinds, skipped) = resolve_kinds(&source, &mailbox, KindSet::ALL)
        .await
        .expect("what is not granted is named");
    assert_eq!(kinds, KindSet::MAIL);
    assert_eq!(skipped.len(), 5);

    // With the folder and item permissions but no export: that is what is named.
    let mut cfg = all_kinds();
    cfg.granted_roles
        .remove(roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL);
    let sim = start(cfg).await;
    let source = atlas_graph::GraphSource::new(client(&sim));
    let mailbox = source
        .resolve_mailbox(&mailbox_user(&sim).upn)
        .await
        .expect("resolve");
    assert_eq!(
        source
            .kind_access(&mailbox, ItemKind::Calendar)
            .await
            .expect("probe")
            .as_deref(),
        Some("MailboxItem.Export.All")
    );
}
