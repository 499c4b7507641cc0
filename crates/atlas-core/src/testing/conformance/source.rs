//! The source port's conformance checks (see the [module docs](super) and the contract in
//! [`crate::ports::mail`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{FixtureMessage, SourceFixture};
use crate::model::{ContentKind, FolderId, ItemId, ItemKind};
use crate::ports::{
    DeltaCursor, DeltaNext, FolderOptions, MailSource, SourceError, SourceFolder, SourceItem,
    SourceMailbox,
};

/// Page size the checks ask for: small, so every round has several pages.
const PAGE: u32 = 3;

/// Run every check, one after the other.
pub async fn run_all(fixture: &dyn SourceFixture) {
    mailboxes_resolve(fixture).await;
    folder_tree(fixture).await;
    full_round(fixture).await;
    content_is_byte_exact(fixture).await;
    unchanged_round_is_empty(fixture).await;
    incremental_round(fixture).await;
    expired_links(fixture).await;
    failing_content_is_an_item_error(fixture).await;
}

/// One delta round: every item (last report wins) and every removed id, plus the link
/// that ends it.
#[derive(Debug, Default)]
struct Round {
    items: BTreeMap<ItemId, SourceItem>,
    removed: BTreeSet<ItemId>,
    done: String,
}

async fn round(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    folder: &FolderId,
    start: DeltaCursor,
) -> Result<Round, SourceError> {
    let mut out = Round::default();
    let mut cursor = start;
    for _ in 0..10_000 {
        let page = source.delta_page(mailbox, folder, &cursor, PAGE).await?;
        assert!(
            page.items.len() + page.removed.len() <= PAGE as usize,
            "a delta page holds at most the page size asked for ({PAGE}), not {} items and {} removals",
            page.items.len(),
            page.removed.len()
        );
        for item in page.items {
            out.removed.remove(&item.id);
            out.items.insert(item.id.clone(), item);
        }
        for id in page.removed {
            out.items.remove(&id);
            out.removed.insert(id);
        }
        match page.next {
            DeltaNext::More(link) => cursor = DeltaCursor::Link(link),
            DeltaNext::Done(link) => {
                out.done = link;
                return Ok(out);
            }
        }
    }
    panic!("a delta round must end with Done within 10,000 pages");
}

async fn resolve(fixture: &dyn SourceFixture) -> (Arc<dyn MailSource>, SourceMailbox) {
    let source = fixture.source();
    let mailbox = source
        .resolve_mailbox(&fixture.mailbox())
        .await
        .expect("the fixture's mailbox resolves");
    (source, mailbox)
}

async fn folders(source: &dyn MailSource, mailbox: &SourceMailbox) -> Vec<SourceFolder> {
    source
        .list_folders(mailbox, FolderOptions::default())
        .await
        .expect("list_folders")
}

fn by_well_known<'a>(folders: &'a [SourceFolder], name: &str) -> &'a SourceFolder {
    folders
        .iter()
        .find(|f| f.well_known.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("the mailbox has a folder with the well-known name {name}"))
}

fn path_of(folder: &SourceFolder) -> String {
    folder.path.join("/")
}

/// Mailboxes resolve by address in any case to the same mailbox id, which names the
/// directory id; the list of mailboxes holds it; an unknown address is
/// `MailboxNotFound`.
pub async fn mailboxes_resolve(fixture: &dyn SourceFixture) {
    let source = fixture.source();
    let address = fixture.mailbox();
    let mailbox = source
        .resolve_mailbox(&address)
        .await
        .expect("the fixture's mailbox resolves");
    assert_eq!(
        mailbox.address(),
        address.to_lowercase(),
        "a mailbox resolves to its own address, lower-cased"
    );
    assert!(
        mailbox.id.graph_user_id().is_some(),
        "a resolved mailbox carries its directory id, so it is built once"
    );
    let upper = source
        .resolve_mailbox(&address.to_uppercase())
        .await
        .expect("addresses are case-insensitive");
    assert_eq!(upper.id, mailbox.id);
    assert_eq!(upper.id.graph_user_id(), mailbox.id.graph_user_id());
    let all = source.list_mailboxes().await.expect("list_mailboxes");
    assert!(
        all.iter().any(|m| m.id == mailbox.id),
        "list_mailboxes holds every mailbox resolve_mailbox finds"
    );
    match source.resolve_mailbox(&fixture.unknown_mailbox()).await {
        Err(SourceError::MailboxNotFound(_)) => {}
        other => panic!("an unknown mailbox is MailboxNotFound, not {other:?}"),
    }
}

/// The folder tree comes parents first, each folder with its whole path, unique ids,
/// and the kind of item it holds; the inbox is a mail folder at `Inbox`.
pub async fn folder_tree(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let tree = folders(source.as_ref(), &mailbox).await;
    let mut seen: HashMap<&FolderId, &SourceFolder> = HashMap::new();
    for f in &tree {
        assert!(
            !seen.contains_key(&f.id),
            "folder ids are unique ({} twice)",
            f.id
        );
        match &f.parent_id {
            Some(p) if seen.contains_key(p) => {
                let parent = seen[p];
                let mut expected = parent.path.clone();
                expected.push(f.display_name.clone());
                assert_eq!(
                    f.path, expected,
                    "a folder's path is its parent's path plus its name"
                );
            }
            Some(_) | None => assert_eq!(
                f.path,
                std::slice::from_ref(&f.display_name),
                "a folder whose parent is not listed is at the top: its path is its name"
            ),
        }
        seen.insert(&f.id, f);
    }
    let inbox = by_well_known(&tree, "inbox");
    assert_eq!(inbox.path, ["Inbox"], "the inbox is at the top");
    assert_eq!(inbox.kind, ItemKind::Mail, "the inbox holds mail");
}

/// A round from the start reports every item of the folder once, as the tenant holds
/// it, page by page, and ends with a link: mail items with their folder, change key and
/// MIME as their primary content.
pub async fn full_round(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let tree = folders(source.as_ref(), &mailbox).await;
    let held = fixture.messages(&fixture.mailbox());
    for folder in &tree {
        let r = round(source.as_ref(), &mailbox, &folder.id, DeltaCursor::Initial)
            .await
            .expect("a full round");
        let expected: BTreeSet<&ItemId> = held
            .iter()
            .filter(|m| m.folder_path == path_of(folder))
            .map(|m| &m.id)
            .collect();
        let got: BTreeSet<&ItemId> = r.items.keys().collect();
        assert_eq!(
            got,
            expected,
            "a full round of {} reports exactly the folder's items",
            path_of(folder)
        );
        assert!(!r.done.is_empty(), "a round ends with a link");
        for item in r.items.values() {
            assert_eq!(item.kind, ItemKind::Mail, "messages are mail items");
            assert_eq!(
                item.contents.first(),
                Some(&ContentKind::Mime),
                "a message's primary content is its MIME"
            );
            assert!(item.change_key.is_some(), "items carry a change key");
            if let Some(f) = &item.folder {
                assert_eq!(f, &folder.id, "an item names the folder it is in");
            }
            let read = item.mail_metadata().map(|m| m.is_read);
            let want = held.iter().find(|m| m.id == item.id).map(|m| m.is_read);
            assert_eq!(read, want, "delta reports the read state the tenant holds");
        }
    }
}

/// Every message's MIME streams byte for byte as the tenant holds it.
pub async fn content_is_byte_exact(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let tree = folders(source.as_ref(), &mailbox).await;
    let held: HashMap<ItemId, FixtureMessage> = fixture
        .messages(&fixture.mailbox())
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let inbox = by_well_known(&tree, "inbox");
    let r = round(source.as_ref(), &mailbox, &inbox.id, DeltaCursor::Initial)
        .await
        .expect("a full round");
    assert!(!r.items.is_empty(), "the fixture's inbox holds messages");
    for item in r.items.values() {
        let mut stream = source
            .open_content(&mailbox, item, ContentKind::Mime)
            .await
            .expect("open_content");
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next_chunk().await.expect("next_chunk") {
            bytes.extend_from_slice(&chunk);
        }
        assert!(
            bytes == held[&item.id].mime,
            "the MIME of {} streams byte for byte ({} bytes, the tenant holds {})",
            item.id,
            bytes.len(),
            held[&item.id].mime.len()
        );
    }
}

/// A link given back at once reports nothing.
pub async fn unchanged_round_is_empty(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let tree = folders(source.as_ref(), &mailbox).await;
    let inbox = by_well_known(&tree, "inbox");
    let first = round(source.as_ref(), &mailbox, &inbox.id, DeltaCursor::Initial)
        .await
        .expect("a full round");
    let again = round(
        source.as_ref(),
        &mailbox,
        &inbox.id,
        DeltaCursor::Link(first.done),
    )
    .await
    .expect("a round from a fresh link");
    assert!(
        again.items.is_empty() && again.removed.is_empty(),
        "nothing changed, so the round from the link reports nothing ({} items, {} removed)",
        again.items.len(),
        again.removed.len()
    );
}

/// A link reports what changed since it was handed out: a new message and a changed one
/// as items, a deleted one and one moved out as removed; the folder it moved to reports
/// it as an item, under the same id. A link can be followed more than once.
pub async fn incremental_round(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let address = fixture.mailbox();
    let tree = folders(source.as_ref(), &mailbox).await;
    let (inbox, archive) = (
        by_well_known(&tree, "inbox"),
        by_well_known(&tree, "archive"),
    );
    let before = round(source.as_ref(), &mailbox, &inbox.id, DeltaCursor::Initial)
        .await
        .expect("a full round of the inbox");
    let archive_before = round(source.as_ref(), &mailbox, &archive.id, DeltaCursor::Initial)
        .await
        .expect("a full round of the archive");
    let ids: Vec<ItemId> = before.items.keys().cloned().collect();
    assert!(
        ids.len() >= 3,
        "the fixture's inbox holds at least three messages"
    );
    let (changed, moved, deleted) = (&ids[0], &ids[1], &ids[2]);
    let was_read = before.items[changed]
        .mail_metadata()
        .is_some_and(|m| m.is_read);
    fixture.set_read(&address, changed, !was_read);
    fixture.move_message(&address, moved, "archive");
    fixture.delete_message(&address, deleted);
    fixture.add_message(&address, "inbox", "conformance: new message");

    let after = round(
        source.as_ref(),
        &mailbox,
        &inbox.id,
        DeltaCursor::Link(before.done.clone()),
    )
    .await
    .expect("a round from the inbox link");
    // Status follows a saved link and throws the new one away; the next backup starts
    // from the same link, which must report the same changes again.
    let replay = round(
        source.as_ref(),
        &mailbox,
        &inbox.id,
        DeltaCursor::Link(before.done),
    )
    .await
    .expect("a link stays usable after it was followed once");
    assert_eq!(
        (replay.items.keys().collect::<Vec<_>>(), &replay.removed),
        (after.items.keys().collect::<Vec<_>>(), &after.removed),
        "a link followed twice reports the same changes"
    );
    let now: BTreeSet<ItemId> = fixture
        .messages(&address)
        .into_iter()
        .filter(|m| m.folder_path == path_of(inbox))
        .map(|m| m.id)
        .collect();
    let new: Vec<&ItemId> = now
        .iter()
        .filter(|id| !before.items.contains_key(*id))
        .collect();
    assert_eq!(new.len(), 1, "the fixture added one message to the inbox");
    assert!(
        after.items.contains_key(new[0]),
        "a new message is reported"
    );
    let reported = after
        .items
        .get(changed)
        .expect("a message whose read state changed is reported");
    assert_eq!(
        reported.mail_metadata().map(|m| m.is_read),
        Some(!was_read),
        "with its new read state"
    );
    assert!(
        after.removed.contains(deleted),
        "a deleted message is reported as removed"
    );
    assert!(
        after.removed.contains(moved),
        "a message moved out is reported as removed from its old folder"
    );
    assert!(
        !after.items.contains_key(moved) && !after.items.contains_key(deleted),
        "removed messages are not reported as items"
    );
    let archive_after = round(
        source.as_ref(),
        &mailbox,
        &archive.id,
        DeltaCursor::Link(archive_before.done),
    )
    .await
    .expect("a round from the archive link");
    assert!(
        archive_after.items.contains_key(moved),
        "a moved message is reported in its new folder under the same (immutable) id"
    );
}

/// A link the source no longer honours is `DeltaExpired`, so the service enumerates the
/// folder again.
pub async fn expired_links(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let tree = folders(source.as_ref(), &mailbox).await;
    let inbox = by_well_known(&tree, "inbox");
    let r = round(source.as_ref(), &mailbox, &inbox.id, DeltaCursor::Initial)
        .await
        .expect("a full round");
    fixture.expire_delta_links();
    match source
        .delta_page(&mailbox, &inbox.id, &DeltaCursor::Link(r.done), PAGE)
        .await
    {
        Err(SourceError::DeltaExpired) => {}
        other => panic!("an expired link is DeltaExpired, not {other:?}"),
    }
}

/// A message whose content cannot be read fails as that item (`SourceError::Item`), not
/// the run.
pub async fn failing_content_is_an_item_error(fixture: &dyn SourceFixture) {
    let (source, mailbox) = resolve(fixture).await;
    let address = fixture.mailbox();
    let tree = folders(source.as_ref(), &mailbox).await;
    let inbox = by_well_known(&tree, "inbox");
    let r = round(source.as_ref(), &mailbox, &inbox.id, DeltaCursor::Initial)
        .await
        .expect("a full round");
    let item = r.items.values().next().expect("the inbox holds a message");
    fixture.fail_content(&address, &item.id, true);
    let result = async {
        let mut stream = source
            .open_content(&mailbox, item, ContentKind::Mime)
            .await?;
        while stream.next_chunk().await?.is_some() {}
        Ok::<(), SourceError>(())
    }
    .await;
    fixture.fail_content(&address, &item.id, false);
    match result {
        Err(SourceError::Item(_)) => {}
        other => panic!("unreadable content is SourceError::Item, not {other:?}"),
    }
}

async fn read_all(
    source: &dyn MailSource,
    mailbox: &SourceMailbox,
    item: &SourceItem,
    kind: ContentKind,
) -> Vec<u8> {
    let mut stream = source
        .open_content(mailbox, item, kind)
        .await
        .expect("open_content");
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.expect("next_chunk") {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// Items of every kind: folders are listed only for the kinds asked for (mail only by
/// default); each non-mail item has its folder's kind, a change key and the kind's primary
/// representation first; a batch read gives the bytes `open_content` gives, one answer per
/// item, in order. Not part of [`run_all`]: it needs a mailbox holding calendars and
/// contacts (`address`), and a source allowed to read them.
pub async fn every_kind(source: &dyn MailSource, address: &str) {
    let mailbox = source
        .resolve_mailbox(address)
        .await
        .expect("the mailbox resolves");
    let mail_only = folders(source, &mailbox).await;
    assert!(
        mail_only.iter().all(|f| f.kind == ItemKind::Mail),
        "by default only mail folders are listed"
    );
    let all = source
        .list_folders(
            &mailbox,
            FolderOptions {
                kinds: crate::model::KindSet::ALL,
                ..FolderOptions::default()
            },
        )
        .await
        .expect("list_folders of every kind");
    for kind in [ItemKind::Mail, ItemKind::Calendar, ItemKind::Contact] {
        assert!(
            all.iter().any(|f| f.kind == kind),
            "the mailbox lists a folder of kind {kind}"
        );
    }
    let contacts_only = source
        .list_folders(
            &mailbox,
            FolderOptions {
                kinds: crate::model::KindSet::of([ItemKind::Contact]),
                ..FolderOptions::default()
            },
        )
        .await
        .expect("list_folders of contacts");
    assert!(
        !contacts_only.is_empty() && contacts_only.iter().all(|f| f.kind == ItemKind::Contact),
        "asking for contacts lists contact folders only"
    );
    let mut batched = false;
    for folder in all.iter().filter(|f| f.kind != ItemKind::Mail) {
        let r = round(source, &mailbox, &folder.id, DeltaCursor::Initial)
            .await
            .expect("a full round of a non-mail folder");
        assert!(!r.done.is_empty(), "a round ends with a link");
        let items: Vec<SourceItem> = r.items.into_values().collect();
        for item in &items {
            assert_eq!(item.kind, folder.kind, "an item has its folder's kind");
            assert_eq!(
                item.contents.first(),
                Some(&folder.kind.primary_content()),
                "an item of kind {} has its primary representation first",
                folder.kind
            );
            assert!(item.change_key.is_some(), "items carry a change key");
        }
        let Some(primary) = items.first().and_then(|i| i.contents.first().copied()) else {
            continue;
        };
        let limit = source.batch_limit(primary);
        if limit < 2 || items.len() < 2 {
            continue;
        }
        let batch = &items[..items.len().min(limit)];
        let answers = source
            .fetch_batch(&mailbox, batch, primary)
            .await
            .expect("fetch_batch");
        assert_eq!(answers.len(), batch.len(), "one answer per item");
        for (item, answer) in batch.iter().zip(answers) {
            let got = answer.expect("a readable item's batch answer");
            let one = read_all(source, &mailbox, item, primary).await;
            assert!(
                got == one,
                "the batch gives {} the bytes open_content gives",
                item.id
            );
        }
        batched = true;
    }
    assert!(batched, "some non-mail folder holds two items or more");
}
