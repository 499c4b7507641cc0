//! Repositories written by earlier builds keep reading.
//!
//! `fixtures/repo-v2/` is a repository written by the format-2 writer as it was before
//! the single-pass engine (issue 13); `fixtures/repo-v3/` one written by the format-3
//! writer (config `formatVersion` 3, frames and records still carrying SHA-256), the last
//! before blob frames lost their checksum; `fixtures/repo-v4/` one written by the format-4
//! writer as it was before verify's decode check changed (blob frames without SHA-256,
//! records without `mimeSha256`, zstd frames without a content checksum). Each holds two mailboxes, two backups each (a
//! full one, then an incremental after reads, a delete and a new message), small packs,
//! and one message above the chunk threshold so chunk lists are covered.
//! `fixtures/repo-vN.json` lists, for the newest snapshot of each mailbox, every
//! message's id and the SHA-256 of its MIME as the tenant served it, so the checks below
//! do not depend on the test tenant's generator staying the same.
//!
//! The fixtures were written by `write_format_fixture` (ignored; run it only to make a
//! fixture for a new format version, never to refresh an existing one: their point is
//! that the bytes on disk are old).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use atlas_core::model::{ContentKind, ItemKind, KindSet, MailboxId};
use atlas_core::ports::{BlobStore, Clock, FixedClock, MailSource, MailboxKind, NullReporter};
use atlas_core::repo::{KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailboxes};
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{ExportFormat, SaveOptions, write_eml_zip};
use atlas_core::service::restore::{self, RestoreOptions};
use atlas_core::service::verify::{ContentCheck, ReadData, VerifyOptions, VerifyScope, verify};
use atlas_core::testing::{AttachmentSpec, MemoryTenant, MessageSpec};
use atlas_store::LocalStore;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const TENANT: &str = "7c0ffee0-1111-4222-8333-944445555666";
const PASSPHRASE: &str = "fixture passphrase: not a secret";

/// The checked-in fixtures and the config format version each was written with.
const FIXTURES: [(&str, u32); 3] = [("repo-v2", 2), ("repo-v3", 3), ("repo-v4", 4)];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn manifest_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(format!("{name}.json"))
}

/// What the newest snapshot of each mailbox must hold.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Snapshots per mailbox.
    snapshots: usize,
    /// Mailbox address → (item id → hex SHA-256 of its MIME).
    mailboxes: BTreeMap<String, BTreeMap<String, String>>,
    /// Id of the message stored chunked.
    chunked: String,
}

fn hex_sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A writable copy of the fixture (the checked-in bytes are never touched).
async fn open_copy(name: &str) -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(name), &dir.path().join("repo"));
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
    let repo = Repository::open(store, TENANT, &Passphrase::new(PASSPHRASE))
        .await
        .unwrap();
    (dir, repo)
}

fn manifest(name: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(manifest_path(name)).unwrap()).unwrap()
}

#[tokio::test]
async fn format_fixtures_open_list_and_verify() {
    for (name, format) in FIXTURES {
        check_opens_lists_and_verifies(name, format).await;
    }
}

async fn check_opens_lists_and_verifies(name: &str, format: u32) {
    let (_dir, repo) = open_copy(name).await;
    let m = manifest(name);
    assert_eq!(repo.config().unwrap().format_version, format, "{name}");
    let mut listed: Vec<String> = repo
        .list_mailboxes()
        .await
        .unwrap()
        .iter()
        .map(|m| m.address().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, m.mailboxes.keys().cloned().collect::<Vec<_>>());
    for address in m.mailboxes.keys() {
        let snaps = repo.list_snapshots(&MailboxId::new(address)).await.unwrap();
        assert_eq!(snaps.len(), m.snapshots, "{name} {address}");
    }
    let report = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{name}: {:?}", report.damage);
    assert_eq!(report.snapshots, 2 * m.snapshots);
}

#[tokio::test]
async fn format_fixtures_read_every_message_byte_exact() {
    for (name, format) in FIXTURES {
        check_reads_every_message_byte_exact(name, format).await;
    }
}

async fn check_reads_every_message_byte_exact(name: &str, format: u32) {
    let (_dir, repo) = open_copy(name).await;
    let m = manifest(name);
    let mut saw_chunked = false;
    for (address, items) in &m.mailboxes {
        let snap = repo
            .latest_snapshot(&MailboxId::new(address))
            .await
            .unwrap()
            .unwrap();
        let mut found = BTreeMap::new();
        for f in &snap.record.folders {
            for meta in repo.load_folder_items(&f.items).await.unwrap() {
                let whole = repo.read_blob(&meta.mime).await.unwrap();
                if format < 4 {
                    assert_eq!(hex_sha(&whole), meta.mime_sha256);
                } else {
                    assert!(meta.mime_sha256.is_empty(), "format 4 records no SHA-256");
                }
                // The streaming reader gives the same bytes (chunk by chunk when chunked).
                let mut reader = repo.read_blob_stream(&meta.mime).await.unwrap();
                let mut streamed = Vec::new();
                let mut pieces = 0;
                while let Some(c) = reader.next_chunk().await.unwrap() {
                    streamed.extend_from_slice(&c);
                    pieces += 1;
                }
                assert_eq!(streamed, whole);
                if meta.id.as_str() == m.chunked {
                    assert!(pieces > 1, "the large message is stored chunked");
                    saw_chunked = true;
                }
                found.insert(meta.id.as_str().to_owned(), hex_sha(&whole));
            }
        }
        assert_eq!(&found, items, "{name} {address}");
    }
    assert!(saw_chunked, "{name}");
}

#[tokio::test]
async fn format_fixtures_export_byte_exact() {
    for (name, _) in FIXTURES {
        check_exports_byte_exact(name).await;
    }
}

async fn check_exports_byte_exact(name: &str) {
    let (_dir, repo) = open_copy(name).await;
    let m = manifest(name);
    for (address, items) in &m.mailboxes {
        let opts = SaveOptions {
            snapshot: SnapshotSelector::Latest {
                mailbox: MailboxId::new(address),
                as_of: None,
            },
            folder: None,
            message: None,
            kind: None,
            format: ExportFormat::EmlZip,
            skip_verify: false,
            reporter: Arc::new(NullReporter),
        };
        let (summary, cursor) = write_eml_zip(
            &repo,
            &opts,
            std::io::Cursor::new(Vec::new()),
            "fixture.zip",
        )
        .await
        .unwrap();
        assert!(summary.is_complete());
        assert_eq!(summary.messages, items.len());
        // Read back with the zip crate's reader: every entry is one stored MIME, whole.
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(cursor.into_inner())).unwrap();
        let mut got = BTreeSet::new();
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).unwrap();
            if entry.is_dir() {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            got.insert(hex_sha(&bytes));
        }
        let want: BTreeSet<String> = items.values().cloned().collect();
        assert_eq!(got, want, "{name} {address}");
    }
}

#[tokio::test]
async fn format_fixtures_restore_and_take_new_backups() {
    for (name, format) in FIXTURES {
        check_restores_and_takes_new_backups(name, format).await;
    }
}

async fn check_restores_and_takes_new_backups(name: &str, format: u32) {
    let (_dir, repo) = open_copy(name).await;
    let m = manifest(name);
    let address = m.mailboxes.keys().next().unwrap().clone();
    let target = MemoryTenant::new();
    target.add_mailbox(&address, MailboxKind::Licensed);
    let plan = restore::plan(
        &repo,
        &RestoreOptions::new(SnapshotSelector::Latest {
            mailbox: MailboxId::new(&address),
            as_of: None,
        }),
    )
    .await
    .unwrap();
    let summary = restore::execute(
        &plan,
        &repo,
        Arc::new(target.clone()),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.created as usize, m.mailboxes[&address].len());

    // Today's writer adds to the old repository; old and new data verify together.
    let tenant = MemoryTenant::new();
    tenant.add_mailbox(&address, MailboxKind::Licensed);
    tenant
        .add_message(
            &address,
            "inbox",
            MessageSpec::text("after the upgrade", "written by a newer build"),
        )
        .unwrap();
    back_up(&repo, tenant, &address, 1, &opts()).await;
    let report = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{name}: {:?}", report.damage);
    assert_eq!(report.snapshots, 2 * m.snapshots + 1);
    if format >= 4 {
        return;
    }
    assert_keeps_its_format(&repo, &address, 2).await;

    // Items of other kinds make a snapshot of version 3 there, as before format 4.
    let tenant = MemoryTenant::new();
    tenant.add_mailbox(&address, MailboxKind::Licensed);
    tenant
        .add_folder(&address, "", "Calendar", ItemKind::Calendar)
        .unwrap();
    tenant
        .add_item(
            &address,
            "Calendar",
            ItemKind::Calendar,
            "planning",
            vec![
                (ContentKind::Export, Bytes::from_static(b"EXPORT \0 opaque")),
                (
                    ContentKind::Json,
                    Bytes::from_static(br#"{"subject":"planning"}"#),
                ),
            ],
        )
        .unwrap();
    let mut o = opts();
    o.folder_options.kinds = KindSet::ALL;
    back_up(&repo, tenant, &address, 2, &o).await;
    assert_keeps_its_format(&repo, &address, 3).await;
}

/// One complete backup of `address` from `tenant` with today's writer, on 2027-01-`day`.
async fn back_up(
    repo: &Repository,
    tenant: MemoryTenant,
    address: &str,
    day: u32,
    o: &BackupOptions,
) {
    let source: Arc<dyn MailSource> = Arc::new(tenant);
    let mailbox = source.resolve_mailbox(address).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2027, 1, day, 0, 0, 0).unwrap(),
    ));
    let out = backup_mailboxes(
        repo,
        source,
        vec![mailbox],
        o,
        1,
        clock,
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await;
    assert!(out[0].result.as_ref().unwrap().complete);
}

/// What a newer build adds to a repository created before format 4 is what that format's
/// readers read: the snapshot's version is 2 (mail only) or 3, and every record keeps the
/// SHA-256 of its content, which matches.
async fn assert_keeps_its_format(repo: &Repository, address: &str, snapshot_version: u32) {
    assert!(repo.config().unwrap().format_version < 4);
    let snap = repo
        .latest_snapshot(&MailboxId::new(address))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.record.format_version, snapshot_version);
    let mut checked = 0;
    for f in &snap.record.folders {
        for meta in repo.load_folder_items(&f.items).await.unwrap() {
            for c in meta.contents() {
                let bytes = repo.read_blob(&c.id).await.unwrap();
                assert_eq!(c.sha256, hex_sha(&bytes), "{}", meta.id);
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

fn opts() -> BackupOptions {
    BackupOptions {
        page_size: 5,
        lease_owner: "fixture".into(),
        tool: "atlas-fixture".into(),
        ..BackupOptions::default()
    }
}

/// Deterministic incompressible bytes (so the large message really is stored large).
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// Writes `fixtures/$ATLAS_FIXTURE` (e.g. `repo-v3`) and its manifest with the build it
/// runs in. Ignored: the checked-in fixtures must stay what the old writers wrote.
#[tokio::test]
#[ignore = "writes a checked-in fixture; run only to create a fixture for a new format"]
async fn write_format_fixture() {
    let name = std::env::var("ATLAS_FIXTURE").expect("ATLAS_FIXTURE names the fixture to write");
    let dir = fixture_dir(&name);
    assert!(
        !dir.exists(),
        "{name} exists already: never rewrite a checked-in fixture"
    );
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&dir));
    let repo = Repository::init_with(
        store,
        TENANT,
        &Passphrase::new(PASSPHRASE),
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            pack_target_size: 16 << 10,
            chunk_threshold: 16 << 10,
            chunk_size: 8 << 10,
            lease_seconds: 600,
        },
    )
    .await
    .unwrap();
    let tenant = MemoryTenant::generate(5, 2, 8);
    let addresses = tenant.addresses();
    let mut big = MessageSpec::text("quarterly archive", "the archive is attached");
    big.internet_message_id = "large-1@fixture.contoso.com".into();
    big.attachments.push(AttachmentSpec::file(
        "archive.bin",
        "application/octet-stream",
        noise(30_000, 7),
    ));
    let chunked = tenant.add_message(&addresses[0], "inbox", big).unwrap();
    let source: Arc<dyn MailSource> = Arc::new(tenant.clone());
    let mut mailboxes = Vec::new();
    for a in &addresses {
        mailboxes.push(source.resolve_mailbox(a).await.unwrap());
    }
    for (run, day) in [(0, 1), (1, 2)] {
        if run == 1 {
            let first = tenant.dump(&addresses[0]).unwrap();
            let ids: Vec<_> = first.items.iter().map(|i| i.id.clone()).collect();
            tenant
                .update_message(&addresses[0], &ids[0], |m| m.is_read = !m.is_read)
                .unwrap();
            tenant.delete_item(&addresses[0], &ids[1]).unwrap();
            tenant
                .add_message(
                    &addresses[1],
                    "inbox",
                    MessageSpec::text("second run", "a message the incremental adds"),
                )
                .unwrap();
        }
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(
            Utc.with_ymd_and_hms(2026, 6, day, 12, 0, 0).unwrap(),
        ));
        let out = backup_mailboxes(
            &repo,
            source.clone(),
            mailboxes.clone(),
            &opts(),
            2,
            clock,
            Arc::new(NullReporter),
            Arc::new(Cancel::new()),
        )
        .await;
        for o in out {
            assert!(o.result.unwrap().complete);
        }
    }
    let mut manifest = Manifest {
        snapshots: 2,
        mailboxes: BTreeMap::new(),
        chunked: chunked.as_str().to_owned(),
    };
    for a in &addresses {
        let dump = tenant.dump(a).unwrap();
        let items = dump
            .items
            .iter()
            .map(|i| {
                let mime = i
                    .content(atlas_core::model::ContentKind::Mime)
                    .expect("mail has MIME");
                (i.id.as_str().to_owned(), hex_sha(mime))
            })
            .collect();
        manifest.mailboxes.insert(a.clone(), items);
    }
    std::fs::write(
        manifest_path(&name),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}
