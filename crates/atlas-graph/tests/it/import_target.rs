//! `GraphTarget` as the core's `ItemImport` port, against the simulator: restore folders
//! of each kind's class under the target's own folder of that kind (idempotent), an import
//! URL that expired is refused and a new session carries the item, and an app without
//! MailboxItem.ImportExport.All is refused before anything is written.

use std::time::Duration;

use atlas_core::model::ItemKind;
use atlas_core::ports::{ItemImport, TargetError};
use atlas_graph::GraphTarget;
use atlas_sim::{SimConfig, roles};

use crate::{client, mailbox, start};

fn tenant(import: bool, lifetime: Duration) -> SimConfig {
    let mut cfg = SimConfig::with_size(11, 2, 2);
    let mut granted = vec![
        roles::USER_READ_ALL,
        roles::MAIL_READ_WRITE,
        roles::MAILBOX_FOLDER_READ_WRITE_ALL,
        roles::MAILBOX_ITEM_READ_ALL,
        roles::MAILBOX_ITEM_EXPORT_ALL,
    ];
    if import {
        granted.push(roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL);
    }
    cfg.granted_roles = granted.into_iter().map(str::to_owned).collect();
    cfg.mailbox_api.import_session_lifetime = lifetime;
    cfg
}

#[tokio::test]
async fn folders_are_idempotent_and_an_expired_import_url_is_renewed() {
    let sim = start(tenant(true, Duration::from_secs(1))).await;
    let c = client(&sim);
    let users: Vec<_> = sim.users().into_iter().filter(|u| u.has_mailbox).collect();
    let (owner, other) = (mailbox(&users[0]), mailbox(&users[1]));
    let target = GraphTarget::new(c.clone());
    target.check_import_access(&other).await.expect("allowed");

    // A restore root under the target's own calendar, of the calendar's class, found
    // again instead of created twice.
    let home = target
        .kind_home(&other, ItemKind::Calendar)
        .await
        .expect("home")
        .expect("the mailbox has a calendar");
    let root = target
        .ensure_item_folder(&other, Some(&home.id), "Restore-x", ItemKind::Calendar)
        .await
        .expect("root");
    let again = target
        .ensure_item_folder(&other, Some(&home.id), "Restore-x", ItemKind::Calendar)
        .await
        .expect("root again");
    assert_eq!(root.id, again.id);
    let dump = sim.dump_pim(&users[1].upn).expect("dump");
    let folder = dump
        .folders
        .iter()
        .find(|f| f.path.ends_with("/Restore-x"))
        .expect("created");
    assert_eq!(folder.class, "IPF.Appointment");
    assert_eq!(folder.path, "Calendar/Restore-x");

    // Export two events of the owner and import them; the session expires in between.
    let mbx = c.exchange_mailbox_id(&owner).await.expect("id");
    let cal = c
        .mailbox_folder(&owner, &mbx, "calendar")
        .await
        .expect("cal");
    let items = c
        .list_mailbox_items(&owner, &mbx, &cal.id)
        .await
        .expect("items");
    let ids: Vec<_> = items.iter().take(2).map(|i| i.id.clone()).collect();
    assert_eq!(ids.len(), 2);
    let streams = c.export_items(&owner, &mbx, &ids).await.expect("export");
    sim.reset_counters();
    let first = target
        .import_item(&other, &root.id, streams[0].data.as_ref().expect("data"))
        .await
        .expect("import");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = target
        .import_item(&other, &root.id, streams[1].data.as_ref().expect("data"))
        .await
        .expect("import after the URL expired");
    let counters = sim.counters();
    assert_eq!(counters.kind("import_item").errors, 1, "{counters:?}");
    assert_eq!(counters.kind("create_import_session").requests, 1);
    let listed = target
        .list_folder_items(&other, &root.id)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2, "each item exactly once");
    assert!(listed.contains(&first) && listed.contains(&second));
    assert!(sim.invitations().is_empty());
}

#[tokio::test]
async fn without_the_import_permission_the_check_names_it() {
    let sim = start(tenant(false, Duration::from_secs(3600))).await;
    let users: Vec<_> = sim.users().into_iter().filter(|u| u.has_mailbox).collect();
    let target = GraphTarget::new(client(&sim));
    match target.check_import_access(&mailbox(&users[1])).await {
        Err(e @ TargetError::PermissionDenied { .. }) => {
            assert!(e.is_fatal());
            assert!(
                e.to_string().contains("MailboxItem.ImportExport.All"),
                "{e}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
