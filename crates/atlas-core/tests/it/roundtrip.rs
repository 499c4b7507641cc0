//! Every object kind written and read back.

use atlas_core::Error;
use atlas_core::model::{MailboxId, SnapshotStatus};
use atlas_core::repo::{BlobKind, KdfChoice, RepoSettings, Repository};
use bytes::Bytes;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_folder_items_and_blobs_round_trip() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("Lucas.Johnson@Contoso.com").with_graph_user_id("u-1");
    let clock = clock_at(t0());
    let id = backup(&repo, &mb, clock.clone(), SMALL_BACKUP)
        .await
        .unwrap();

    // A fresh handle (new index cache) sees the same thing.
    let repo = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    assert_eq!(
        repo.config().unwrap().format_version,
        atlas_core::repo::FORMAT_VERSION
    );
    let mailboxes = repo.list_mailboxes().await.unwrap();
    assert_eq!(mailboxes, vec![mb.clone()]);
    assert_eq!(mailboxes[0].graph_user_id(), Some("u-1"));
    let snaps = repo.list_snapshots(&mb).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!((snaps[0].id, snaps[0].started), (id, t0()));
    let snap = repo.latest_snapshot(&mb).await.unwrap().unwrap();
    assert_eq!(snap.id, id);
    assert_eq!(snap.record.status, SnapshotStatus::Complete);
    assert_eq!(snap.record.folders.len(), 2);
    let inbox = &snap.record.folders[0];
    let items = repo.load_folder_items(&inbox.items).await.unwrap();
    assert_eq!(items.len(), 3);
    for m in &items {
        let n: usize = m.id.as_str().trim_start_matches("AAMk-").parse().unwrap();
        let expected = SMALL_BACKUP.iter().find(|x| x.1 == n).unwrap();
        assert_eq!(repo.read_blob(&m.mime).await.unwrap(), mime(n, expected.2));
    }
    let report = repo.verify_snapshot(id).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.messages, 5);
    assert!(report.packs_checked >= 1);
    assert!(report.blobs_checked >= 7, "5 messages + 2 folder lists");

    // Key names never contain the address.
    for key in store.list("").await.unwrap() {
        assert!(!key.key.as_str().contains("lucas"), "{}", key.key);
    }
    assert!(
        repo.load_snapshot(atlas_core::model::SnapshotId::random())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_blob_kind_and_chunked_content_round_trip() {
    let repo = new_repo(memory()).await;
    let mb = MailboxId::new("a@example.com");
    let mut s = repo.begin_backup(&mb, "h", clock_at(t0())).await.unwrap();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let cases = vec![
        (BlobKind::Mime, mime(1, 3000)),
        (BlobKind::Attachment, Bytes::from(noise.clone())),
        (BlobKind::Metadata, Bytes::from_static(b"{}")),
        (BlobKind::Mime, Bytes::new()),
        (BlobKind::Mime, mime(2, 150_000)),
    ];
    let mut ids = Vec::new();
    for (k, data) in &cases {
        ids.push(s.put_blob(*k, data.clone()).await.unwrap().id);
    }
    assert!(matches!(
        s.put_blob(BlobKind::Chunk, Bytes::new()).await,
        Err(Error::InvalidInput { .. })
    ));
    // Not readable before flush: not indexed yet.
    assert!(matches!(
        repo.read_blob(&ids[0]).await,
        Err(Error::ContentNotFound { .. })
    ));
    s.flush().await.unwrap();
    for (id, (_, data)) in ids.iter().zip(&cases) {
        assert_eq!(&repo.read_blob(id).await.unwrap(), data);
    }
    let stats = s.stats();
    assert!(stats.bytes_stored < stats.bytes_plain, "{stats:?}");
    s.release().await.unwrap();
    assert!(repo.lease_info(&mb).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_checks_the_record() {
    let repo = new_repo(memory()).await;
    let mb = MailboxId::new("a@example.com");
    let s = repo.begin_backup(&mb, "h", clock_at(t0())).await.unwrap();
    let record = atlas_core::model::SnapshotRecord {
        mailbox: MailboxId::new("b@example.com"),
        started: t0(),
        finished: t0(),
        tool: "t".into(),
        format_version: 2,
        status: SnapshotStatus::Partial,
        folder_bookmark: None,
        folders: vec![],
    };
    assert!(matches!(
        s.commit(record).await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_snapshots_reads_key_names_only() {
    use atlas_core::ports::PutOptions;
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let first = backup(&repo, &mb, clock_at(t0()), SMALL_BACKUP)
        .await
        .unwrap();
    let later = t0() + chrono::Duration::hours(2);
    let second = backup(&repo, &mb, clock_at(later), &SMALL_BACKUP[..2])
        .await
        .unwrap();
    // Make every record unreadable: listing still works, loading names the record.
    for m in store.list("snapshots/").await.unwrap() {
        store
            .put(
                &m.key,
                Bytes::from_static(b"garbage"),
                PutOptions::OVERWRITE,
            )
            .await
            .unwrap();
    }
    let list = repo.list_snapshots(&mb).await.unwrap();
    assert_eq!(
        list.iter().map(|s| (s.id, s.started)).collect::<Vec<_>>(),
        vec![(first, t0()), (second, later)]
    );
    let err = repo.latest_snapshot(&mb).await.unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref key, .. } if key.contains(&second.to_string())),
        "{err:?}"
    );
    assert!(
        repo.list_snapshots(&MailboxId::new("nobody@example.com"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// `init_at_format` (what `atlas-bench formats` compares with) makes a repository of an
/// earlier format that this build still writes: at format 3 every blob's frame keeps its
/// SHA-256 (32 bytes more per blob than format 4, for the same compressed content), and
/// it reads back and verifies like one a format-3 build made. Formats this build does not
/// write are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_created_at_an_earlier_format_writes_that_format() {
    let mut mime_blob_bytes = Vec::new();
    for format in [3, 4] {
        let store = memory();
        let repo = Repository::init_at_format(
            store.clone(),
            TENANT,
            &passphrase(),
            atlas_core::repo::KdfChoice::SCRYPT_MINIMUM,
            small_settings(),
            format,
        )
        .await
        .unwrap();
        let mb = MailboxId::new("a@example.com");
        let id = backup(&repo, &mb, clock_at(t0()), SMALL_BACKUP)
            .await
            .unwrap();
        let repo = Repository::open(store, TENANT, &passphrase())
            .await
            .unwrap();
        assert_eq!(repo.config().unwrap().format_version, format);
        assert!(repo.verify_snapshot(id).await.unwrap().is_ok());
        let snap = repo.load_snapshot(id).await.unwrap();
        let mut read = 0;
        for f in &snap.record.folders {
            for m in repo.load_folder_items(&f.items).await.unwrap() {
                let n: usize = m.id.as_str().trim_start_matches("AAMk-").parse().unwrap();
                let len = SMALL_BACKUP.iter().find(|x| x.1 == n).unwrap().2;
                assert_eq!(repo.read_blob(&m.mime).await.unwrap(), mime(n, len));
                read += 1;
            }
        }
        assert_eq!(read, SMALL_BACKUP.len());
        let (mut bytes, mut blobs) = (0u64, 0u64);
        for pack in repo.list_packs().await.unwrap() {
            for e in repo.pack_table(pack).await.unwrap() {
                if e.kind == BlobKind::Mime {
                    bytes += u64::from(e.length);
                    blobs += 1;
                }
            }
        }
        assert_eq!(blobs, SMALL_BACKUP.len() as u64);
        mime_blob_bytes.push(bytes);
    }
    // Format 3 frames carry the SHA-256 (32 bytes), format 4 frames do not; those of them
    // that are compressed end with zstd's 4-byte content checksum instead (FORMAT.md §4.3).
    let n = SMALL_BACKUP.len() as u64;
    let saved = mime_blob_bytes[0] - mime_blob_bytes[1];
    assert!(
        saved <= 32 * n && saved >= 28 * n && (32 * n - saved) % 4 == 0,
        "format 3 frames carry the SHA-256, format 4 frames do not: {saved} bytes for {n}"
    );
    for format in [1, atlas_core::repo::FORMAT_VERSION + 1] {
        assert!(matches!(
            Repository::init_at_format(
                memory(),
                TENANT,
                &passphrase(),
                atlas_core::repo::KdfChoice::SCRYPT_MINIMUM,
                small_settings(),
                format,
            )
            .await,
            Err(Error::InvalidInput { .. })
        ));
    }
}

/// Mail up to 64 KiB is hashed and sealed on the task that stores it: handing each
/// message to a blocking thread and back cost more CPU in thread wake-ups than the work
/// itself (docs/BENCHMARKS.md). With the only blocking thread held, a small blob is still
/// stored, while a larger one waits for the pool (its compression must not stall the
/// runtime); both read back once the pool is free.
#[test]
fn small_blobs_are_sealed_on_the_storing_task_and_large_ones_on_the_blocking_pool() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = memory();
        let repo = Repository::init_with(
            store,
            TENANT,
            &passphrase(),
            KdfChoice::SCRYPT_MINIMUM,
            RepoSettings::default(),
        )
        .await
        .unwrap();
        let mb = MailboxId::new("a@example.com");
        let mut s = repo.begin_backup(&mb, "h", clock_at(t0())).await.unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::task::spawn_blocking(move || held.recv().ok());

        let small = mime(1, 64 << 10);
        let stored_small = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            s.put_blob(BlobKind::Mime, small.clone()),
        )
        .await
        .expect("a 64 KiB blob waited for the blocking pool")
        .unwrap();
        assert!(stored_small.stored_len > 0);

        let large = mime(2, (64 << 10) + 1);
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            s.put_blob(BlobKind::Mime, large.clone()),
        )
        .await;
        assert!(
            waited.is_err(),
            "a blob above 64 KiB was hashed or sealed on the runtime's task"
        );

        release.send(()).unwrap();
        busy.await.unwrap();
        let stored_large = s.put_blob(BlobKind::Mime, large.clone()).await.unwrap();
        s.release().await.unwrap();
        assert_eq!(repo.read_blob(&stored_small.id).await.unwrap(), small);
        assert_eq!(repo.read_blob(&stored_large.id).await.unwrap(), large);
    });
}
