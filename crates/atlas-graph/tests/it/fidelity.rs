//! Mail in full fidelity through [`atlas_graph::GraphSource`]: a message's immutable id
//! is not a mailboxItem id, so the adapter learns each message's mailboxItem id from the
//! folder's mailboxItem delta and exports exactly the stream `exportItems` gives for it.

use std::collections::HashMap;

use atlas_core::model::{ContentKind, Fidelity, ItemId, KindSet};
use atlas_core::ports::{DeltaCursor, DeltaNext, FolderOptions, MailSource};
use atlas_graph::ews_id;
use atlas_sim::{SimConfig, roles};

use crate::{client, mailbox, mailbox_user, start};

fn mail_export() -> SimConfig {
    let mut cfg = SimConfig::with_size(13, 2, 30);
    cfg.granted_roles = [
        roles::USER_READ_ALL,
        roles::MAIL_READ,
        roles::MAILBOX_FOLDER_READ_ALL,
        roles::MAILBOX_ITEM_READ_ALL,
        roles::MAILBOX_ITEM_EXPORT_ALL,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    cfg
}

#[tokio::test]
async fn a_message_is_exported_under_the_mailbox_item_id_its_folder_delta_reports() {
    let sim = start(mail_export()).await;
    let user = mailbox_user(&sim);
    let c = client(&sim);
    let source = atlas_graph::GraphSource::new(client(&sim));
    let mb = source.resolve_mailbox(&user.upn).await.expect("mailbox");
    let folders = source
        .list_folders(
            &mb,
            FolderOptions {
                kinds: KindSet::MAIL,
                fidelity: Fidelity::Full,
                ..FolderOptions::default()
            },
        )
        .await
        .expect("folders");
    let inbox = folders
        .iter()
        .find(|f| f.well_known.as_deref() == Some("inbox"))
        .expect("inbox");
    let page = source
        .delta_page(&mb, &inbox.id, &DeltaCursor::Initial, 200)
        .await
        .expect("delta");
    assert!(page.items.len() > 3, "{} messages", page.items.len());
    assert!(
        page.items
            .iter()
            .all(|m| m.contents == [ContentKind::Mime, ContentKind::Export])
    );

    // The documented way: exportItems takes mailboxItem ids; a message's immutable id
    // is not one (the simulator refuses it, as the pages give no reason to accept it).
    let owner = mailbox(&user);
    let mbx = c.exchange_mailbox_id(&owner).await.expect("mbx");
    let immutable = c
        .export_items(&owner, &mbx, &[page.items[0].id.clone()])
        .await
        .expect("answer");
    assert_eq!(
        immutable[0].data.as_ref().expect_err("not an item id").code,
        "ErrorItemNotFound"
    );
    let listed = c
        .list_mailbox_items(
            &owner,
            &mbx,
            &atlas_core::model::FolderId::new(ews_id(inbox.id.as_str())),
        )
        .await
        .expect("items");
    let by_change_key: HashMap<String, ItemId> = listed
        .into_iter()
        .filter_map(|i| i.change_key.map(|k| (k, i.id)))
        .collect();

    let streams = source
        .fetch_batch(&mb, &page.items, ContentKind::Export)
        .await
        .expect("streams");
    assert_eq!(streams.len(), page.items.len());
    for (m, stream) in page.items.iter().zip(&streams) {
        let stream = stream.as_ref().expect("exported");
        let item_id = &by_change_key[m.change_key.as_deref().expect("change key")];
        let want = c
            .export_items(&owner, &mbx, std::slice::from_ref(item_id))
            .await
            .expect("export")
            .remove(0)
            .data
            .expect("data");
        assert_eq!(stream, &want, "the stream of {}", m.id);
    }

    // The round's saved link carries the mailboxItem delta link: the next round asks
    // only for what changed.
    let mut cursor = DeltaCursor::Initial;
    let done = loop {
        let p = source
            .delta_page(&mb, &inbox.id, &cursor, 200)
            .await
            .expect("delta");
        match p.next {
            DeltaNext::More(l) => cursor = DeltaCursor::Link(l),
            DeltaNext::Done(l) => break l,
        }
    };
    assert_eq!(done.split(' ').count(), 2, "message link and item link");
    let quiet = source
        .delta_page(&mb, &inbox.id, &DeltaCursor::Link(done), 200)
        .await
        .expect("the saved link is followed");
    assert!(quiet.items.is_empty());
}
