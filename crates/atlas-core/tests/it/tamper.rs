//! Damage of every kind gives a specific error naming the object: flipped bytes,
//! truncation, swapped objects, missing objects. Never a panic, never garbage.

use std::sync::Arc;

use atlas_core::Error;
use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, PutOptions, StoreKey};
use bytes::Bytes;

use crate::common::*;

/// Two mailboxes, three snapshots, packs, index files, a chunked item, in a repository of
/// `format` (mailbox records up to format 4).
async fn sample_at(format: u32) -> Arc<dyn BlobStore> {
    let store = memory();
    let repo = new_repo_at_format(store.clone(), format).await;
    let a = MailboxId::new("a@example.com");
    let b = MailboxId::new("b@example.com");
    backup(&repo, &a, clock_at(t0()), SMALL_BACKUP)
        .await
        .unwrap();
    backup(
        &repo,
        &b,
        clock_at(t0()),
        &[("Inbox", 1, 1500), ("Inbox", 9, 70_000)],
    )
    .await
    .unwrap();
    let later = clock_at(t0() + chrono::Duration::hours(1));
    backup(&repo, &a, later, &[("Inbox", 1, 1500), ("Inbox", 10, 2222)])
        .await
        .unwrap();
    store
}

/// [`sample_at`] the last format with mailbox records, so that every kind of object is
/// there to damage (format 5 writes the same objects but those).
async fn sample() -> Arc<dyn BlobStore> {
    sample_at(MAILBOX_RECORDS_FORMAT).await
}

async fn copy(src: &Arc<dyn BlobStore>) -> Arc<dyn BlobStore> {
    let dst = memory();
    for m in src.list("").await.unwrap() {
        dst.put(&m.key, src.get(&m.key).await.unwrap(), PutOptions::CREATE)
            .await
            .unwrap();
    }
    dst
}

fn error_key(e: &Error) -> Option<&str> {
    match e {
        Error::Corrupt { key, .. }
        | Error::AuthenticationFailed { key }
        | Error::Truncated { key, .. }
        | Error::Missing { key }
        | Error::ChecksumMismatch { key, .. } => Some(key),
        _ => None,
    }
}

/// Object keys worth damaging: everything except the wrapped key (covered in `keys` and
/// `v1_vectors`) and the spare copies of the root objects (covered in `keys`).
async fn damageable(store: &Arc<dyn BlobStore>) -> Vec<(StoreKey, Bytes)> {
    let mut out = Vec::new();
    for m in store.list("").await.unwrap() {
        if !m.key.as_str().starts_with("_meta/") {
            out.push((m.key.clone(), store.get(&m.key).await.unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_is_detected_and_names_the_object() {
    every_flipped_byte_is_detected_at(
        MAILBOX_RECORDS_FORMAT,
        &["config", "index", "mailboxes", "packs", "snapshots"],
    )
    .await;
}

/// Format 5 lists mailboxes from their snapshot records: a damaged record is still found
/// and named, whether it is a mailbox's newest or its only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_is_detected_and_names_the_object_without_mailbox_records() {
    every_flipped_byte_is_detected_at(
        atlas_core::repo::FORMAT_VERSION,
        &["config", "index", "packs", "snapshots"],
    )
    .await;
}

async fn every_flipped_byte_is_detected_at(format: u32, kinds_expected: &[&str]) {
    let template = sample_at(format).await;
    assert_eq!(check_everything(template.clone()).await.unwrap(), 3);
    let objects = damageable(&template).await;
    let kinds: std::collections::BTreeSet<&str> = objects
        .iter()
        .map(|(k, _)| k.as_str().split('/').next().unwrap())
        .collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), kinds_expected);
    for (key, bytes) in &objects {
        let len = bytes.len();
        let stride = (len / 97).max(1);
        let positions: std::collections::BTreeSet<usize> = (0..len.min(48))
            .chain(len.saturating_sub(48)..len)
            .chain((0..len).step_by(stride))
            .collect();
        for i in positions {
            let store = copy(&template).await;
            let mut bad = bytes.to_vec();
            bad[i] ^= 0x10;
            store
                .put(key, Bytes::from(bad), PutOptions::OVERWRITE)
                .await
                .unwrap();
            let err = check_everything(store)
                .await
                .expect_err(&format!("flip at {key}[{i}] went unnoticed"));
            assert!(
                err.is_integrity_failure() || matches!(err, Error::UnsupportedVersion { .. }),
                "flip at {key}[{i}]: {err:?}"
            );
            if let Some(k) = error_key(&err) {
                assert_eq!(k, key.as_str(), "flip at {key}[{i}] blamed another object");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_objects_are_reported_as_truncated() {
    let template = sample().await;
    for (key, bytes) in damageable(&template).await {
        for cut in [1, bytes.len() / 2] {
            let store = copy(&template).await;
            store
                .put(
                    &key,
                    bytes.slice(..bytes.len() - cut),
                    PutOptions::OVERWRITE,
                )
                .await
                .unwrap();
            let err = check_everything(store)
                .await
                .expect_err(&format!("{key} cut by {cut} went unnoticed"));
            match &err {
                Error::Truncated { key: k, .. } => assert_eq!(k, key.as_str()),
                // A cut that removes a blob's range is reported by the range read, also
                // as truncation; a half pack may lose its trailer before its header is
                // checked by the whole-pack read.
                other => panic!("{key} cut by {cut}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_objects_fail_authentication() {
    let template = sample().await;
    for prefix in ["snapshots/", "packs/", "index/", "mailboxes/"] {
        let keys: Vec<StoreKey> = template
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert!(keys.len() >= 2, "{prefix}");
        let (x, y) = (&keys[0], &keys[1]);
        let store = copy(&template).await;
        let (bx, by) = (store.get(x).await.unwrap(), store.get(y).await.unwrap());
        store.put(x, by, PutOptions::OVERWRITE).await.unwrap();
        store.put(y, bx, PutOptions::OVERWRITE).await.unwrap();
        let err = check_everything(store)
            .await
            .expect_err(&format!("swap in {prefix} went unnoticed"));
        // Packs of different sizes may show as a bad length before the tag is checked.
        assert!(
            matches!(
                err,
                Error::AuthenticationFailed { .. }
                    | Error::Truncated { .. }
                    | Error::Corrupt { .. }
            ),
            "{prefix}: {err:?}"
        );
        let k = error_key(&err).unwrap();
        assert!(k == x.as_str() || k == y.as_str(), "{prefix}: blamed {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_are_reported() {
    let template = sample().await;
    for (key, _) in damageable(&template).await {
        if key.as_str() == "config" {
            continue; // a missing config means "not an Atlas 2 repository yet" (keys.rs)
        }
        let store = copy(&template).await;
        store.delete(&key).await.unwrap();
        let result = check_everything(store).await;
        if key.as_str().starts_with("snapshots/") {
            // Deleting a record is what `forget` does: the rest stays consistent.
            assert_eq!(result.unwrap(), 2);
            continue;
        }
        let err = result.expect_err(&format!("deleting {key} went unnoticed"));
        match &err {
            Error::Missing { key: k } => assert_eq!(k, key.as_str()),
            Error::ContentNotFound { .. } => {
                assert!(key.as_str().starts_with("index/"), "{key}: {err:?}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}
