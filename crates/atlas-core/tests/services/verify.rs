//! `verify`: intact repositories pass; each kind of damage is named precisely.

use std::sync::Arc;

use atlas_core::model::SnapshotId;
use atlas_core::ports::{BlobStore, PutOptions, StoreKey};
use atlas_core::repo::Repository;
use atlas_core::service::verify::{DamageKind, ReadData, VerifyOptions, VerifyScope, verify};
use bytes::Bytes;

use crate::common::{TENANT, backup_folders, mailbox, new_repo, passphrase, sample_folders, t0};

async fn reopen(store: &Arc<dyn BlobStore>) -> Repository {
    Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap()
}

fn all() -> VerifyOptions {
    VerifyOptions {
        scope: VerifyScope::All,
        read_data: ReadData::ALL,
    }
}

async fn setup(separate_lists: bool) -> (Arc<dyn BlobStore>, Repository, SnapshotId) {
    let (store, repo) = new_repo().await;
    let id = backup_folders(&repo, &mailbox(), t0(), &sample_folders(), separate_lists).await;
    (store, repo, id)
}

/// The pack holding a given message (found through verify's own naming of a flipped pack
/// would be circular, so look at pack tables).
async fn pack_of_message(
    repo: &Repository,
    store: &Arc<dyn BlobStore>,
    snap: SnapshotId,
    msg: &str,
) -> StoreKey {
    let record = repo.load_snapshot(snap).await.unwrap().record;
    for f in &record.folders {
        for m in repo.load_folder_items(&f.items).await.unwrap() {
            if m.id.as_str() == msg {
                let loc = repo.locate(&m.mime).await.unwrap();
                let _ = store;
                return StoreKey::new(loc.pack.store_key()).unwrap();
            }
        }
    }
    panic!("message {msg} not found");
}

#[tokio::test]
async fn intact_repository_verifies_in_every_scope() {
    let (_store, repo, id) = setup(false).await;
    for scope in [
        VerifyScope::All,
        VerifyScope::Snapshot(id),
        VerifyScope::Mailbox(mailbox()),
    ] {
        let s = verify(
            &repo,
            &VerifyOptions {
                scope,
                read_data: ReadData::ALL,
            },
        )
        .await
        .unwrap();
        assert!(s.is_ok(), "{:?}", s.damage);
        assert_eq!((s.snapshots, s.messages), (1, 6));
        assert_eq!(s.packs_read, s.packs);
        assert!(s.blobs_checked >= 9);
    }
    let none = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            read_data: ReadData {
                percent: 1,
                slot: 0,
            },
        },
    )
    .await
    .unwrap();
    assert!(none.packs_read < none.packs || none.packs == 1);
    assert!(matches!(
        verify(
            &repo,
            &VerifyOptions {
                scope: VerifyScope::Snapshot(SnapshotId::random()),
                read_data: ReadData::ALL
            }
        )
        .await,
        Err(atlas_core::Error::SnapshotNotFound { .. })
    ));
}

#[tokio::test]
async fn deleted_pack_names_every_message_in_it() {
    let (store, repo, id) = setup(false).await;
    let key = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-1").await;
    store.delete(&key).await.unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    assert!(!s.is_ok());
    let d = s
        .damage
        .iter()
        .find(|d| {
            d.message_id
                .as_ref()
                .is_some_and(|m| m.as_str() == "AAMkAGI2-inbox-1")
        })
        .expect("damaged message named");
    assert_eq!(d.kind, DamageKind::Message);
    assert_eq!(d.mailbox.as_deref(), Some("bob@contoso.com"));
    assert_eq!(d.folder.as_deref(), Some("Inbox"));
    assert_eq!(d.object.as_deref(), Some(key.as_str()));
    assert_eq!(d.snapshot, Some(id));
    // Never the subject.
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("Quarterly"), "{json}");
}

#[tokio::test]
async fn flipped_byte_in_a_pack_is_found_even_with_a_partial_read_slice() {
    let (store, repo, id) = setup(false).await;
    let key = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-2").await;
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    let mid = 13 + 40; // inside the first blob after the pack header
    bytes[mid] ^= 0x01;
    store
        .put(&key, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let repo = reopen(&store).await;
    let s = verify(&repo, &all()).await.unwrap();
    assert!(!s.is_ok());
    assert!(
        s.damage
            .iter()
            .all(|d| d.object.as_deref() == Some(key.as_str())),
        "{:?}",
        s.damage
    );
    assert!(
        s.damage
            .iter()
            .any(|d| d.kind == DamageKind::Message && d.message_id.is_some())
    );
    // Over a full rotation of 25% slices the damage is found in exactly the slots that
    // read that pack, and at least one does.
    let mut found = 0;
    for slot in 0..4 {
        let s = verify(
            &repo,
            &VerifyOptions {
                scope: VerifyScope::All,
                read_data: ReadData { percent: 25, slot },
            },
        )
        .await
        .unwrap();
        if !s.is_ok() {
            found += 1;
        }
    }
    assert!(found >= 1);
}

#[tokio::test]
async fn truncated_index_is_named() {
    let (store, _repo, _id) = setup(false).await;
    let index = store.list("index/").await.unwrap();
    let key = index[0].key.clone();
    let bytes = store.get(&key).await.unwrap();
    store
        .put(&key, bytes.slice(..bytes.len() / 2), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    assert!(!s.is_ok());
    assert!(
        s.damage
            .iter()
            .any(|d| d.kind == DamageKind::Index && d.object.as_deref() == Some(key.as_str())),
        "{:?}",
        s.damage
    );
}

#[tokio::test]
async fn missing_folder_list_names_the_folder() {
    let (store, repo, id) = setup(true).await;
    // With separate lists the folder lists sit in packs of their own (written after the
    // first flush): delete the pack holding the Sent Items list.
    let record = repo.load_snapshot(id).await.unwrap().record;
    let sent = record
        .folders
        .iter()
        .find(|f| f.folder.display_name == "Sent Items")
        .unwrap();
    let loc = repo.locate(&sent.items).await.unwrap();
    let msgs_pack = pack_of_message(&repo, &store, id, "AAMkAGI2-inbox-1").await;
    assert_ne!(
        loc.pack.store_key(),
        msgs_pack.as_str(),
        "lists share a pack with messages"
    );
    store
        .delete(&StoreKey::new(loc.pack.store_key()).unwrap())
        .await
        .unwrap();
    let s = verify(&reopen(&store).await, &all()).await.unwrap();
    let d = s
        .damage
        .iter()
        .find(|d| d.kind == DamageKind::FolderList && d.folder.as_deref() == Some("Sent Items"))
        .unwrap_or_else(|| panic!("{:?}", s.damage));
    assert_eq!(d.object.as_deref(), Some(loc.pack.store_key().as_str()));
    assert_eq!(d.mailbox.as_deref(), Some("bob@contoso.com"));
}
