//! End to end, library level: the backup service over the real Graph client, over HTTP,
//! against the simulator, into a local-directory repository. Every check compares the
//! repository with the simulator's own dump of the mailbox (byte-identical MIME).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atlas_core::model::MailboxId;
use atlas_core::ports::{
    BlobStore, Clock, FolderOptions, NullReporter, SourceMailbox, SystemClock,
};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox, backup_mailboxes};
use atlas_core::service::status::{PendingChanges, mailbox_status};
use atlas_core::{Error, ports::MailSource};
use atlas_graph::{Credential, GraphClient, GraphConfig, GraphSource, RetryPolicy};
use atlas_sim::{FaultConfig, MessageUpdate, NewMessage, SimConfig, SimHandle, Simulator};
use atlas_store::LocalStore;

struct Env {
    sim: SimHandle,
    source: Arc<GraphSource>,
    repo: Repository,
    _dir: tempfile::TempDir,
}

async fn env(config: SimConfig) -> Env {
    let sim = Simulator::start(config).await.unwrap();
    let mut gc = GraphConfig::new(
        sim.tenant_id(),
        sim.client_id(),
        Credential::Secret(sim.client_secret().into()),
    )
    .with_endpoints(sim.base_url(), sim.base_url());
    gc.retry = RetryPolicy {
        max_attempts: 12,
        max_total: Duration::from_secs(60),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    gc.request_timeout = Duration::from_secs(3);
    let source = Arc::new(GraphSource::new(GraphClient::new(gc).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
    let repo = Repository::init(
        store,
        &sim.tenant_id(),
        &Passphrase::new("correct horse battery staple"),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .unwrap();
    Env {
        sim,
        source,
        repo,
        _dir: dir,
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn opts() -> BackupOptions {
    BackupOptions {
        page_size: 7,
        lease_owner: "test".into(),
        tool: "atlas-test".into(),
        ..BackupOptions::default()
    }
}

fn first_mailbox_user(sim: &SimHandle) -> String {
    sim.users()
        .into_iter()
        .find(|u| u.has_mailbox && u.kind == "user")
        .unwrap()
        .upn
}

async fn resolve(env: &Env, upn: &str) -> SourceMailbox {
    env.source.resolve_mailbox(upn).await.unwrap()
}

/// Every message of the simulator's mailbox is in the latest snapshot, in the right folder,
/// with byte-identical MIME and the same read state/flag/categories; nothing else is.
async fn assert_matches_simulator(env: &Env, upn: &str) {
    let dump = env.sim.dump_mailbox(upn).unwrap();
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(upn))
        .await
        .unwrap()
        .expect("a snapshot");
    let mut stored = HashMap::new();
    for f in &snap.record.folders {
        for m in env.repo.load_folder_items(&f.items).await.unwrap() {
            stored.insert(m.id.as_str().to_owned(), (f.folder.path.join("/"), m));
        }
    }
    assert_eq!(
        stored.len(),
        dump.messages.len(),
        "snapshot holds {} messages, simulator {}",
        stored.len(),
        dump.messages.len()
    );
    for m in &dump.messages {
        let (path, meta) = stored
            .get(&m.immutable_id)
            .unwrap_or_else(|| panic!("message {} missing from the snapshot", m.immutable_id));
        assert_eq!(path, &m.folder_path, "folder of {}", m.immutable_id);
        assert_eq!(meta.is_read, m.is_read);
        assert_eq!(meta.categories, m.categories);
        assert_eq!(meta.mime_sha256, m.mime_sha256);
        let mime = env.repo.read_blob(&meta.mime).await.unwrap();
        assert_eq!(mime.len(), m.mime_size);
        assert_eq!(
            Some(mime.as_ref()),
            m.mime.as_deref(),
            "MIME of {} differs",
            m.immutable_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_backup_matches_the_simulator() {
    let env = env(SimConfig::default()).await;
    let upn = first_mailbox_user(&env.sim);
    let mailbox = resolve(&env, &upn).await;
    let cancel = Cancel::new();
    let first = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &cancel,
    )
    .await
    .unwrap();
    assert!(first.complete, "{first:#?}");
    assert!(first.downloaded > 0);
    assert_matches_simulator(&env, &upn).await;

    // Unchanged: status says up to date, an incremental downloads nothing.
    let status = mailbox_status(
        &env.repo,
        env.source.as_ref(),
        &mailbox,
        FolderOptions::default(),
        50,
    )
    .await
    .unwrap();
    assert!(status.is_up_to_date(), "{status:#?}");

    // Mutate: a new message, a read flip + category, a move, a delete.
    let dump = env.sim.dump_mailbox(&upn).unwrap();
    env.sim
        .add_message(&upn, "inbox", NewMessage::text("fresh", "new body"))
        .unwrap();
    let a = &dump.messages[0];
    env.sim
        .update_message(
            &upn,
            &a.id,
            &MessageUpdate {
                is_read: Some(!a.is_read),
                categories: Some(vec!["Blue category".into()]),
                ..MessageUpdate::default()
            },
        )
        .unwrap();
    let b = dump
        .messages
        .iter()
        .find(|m| m.folder_path != "Archive" && m.id != a.id)
        .unwrap();
    env.sim.move_message(&upn, &b.id, "archive").unwrap();
    let c = dump
        .messages
        .iter()
        .find(|m| m.id != a.id && m.id != b.id)
        .unwrap();
    env.sim.delete_message(&upn, &c.id).unwrap();

    let status = mailbox_status(
        &env.repo,
        env.source.as_ref(),
        &mailbox,
        FolderOptions::default(),
        50,
    )
    .await
    .unwrap();
    let pending = status.pending.new + status.pending.changed + status.pending.deleted;
    assert!(pending >= 4, "{status:#?}");
    // Split as the backup will treat them: the new message is downloaded; the flag change
    // and the move are metadata updates; the delete is a deletion (issue 11: status told
    // only a count of changes).
    assert_eq!(
        status.pending,
        PendingChanges {
            new: 1,
            changed: 2,
            deleted: 1
        },
        "{status:#?}"
    );

    let second = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &cancel,
    )
    .await
    .unwrap();
    assert!(second.complete, "{second:#?}");
    // Only the new message is downloaded: the flag change and the move reuse content.
    assert_eq!(second.downloaded, 1, "{second:#?}");
    assert!(second.removed >= 1);
    assert_matches_simulator(&env, &upn).await;
    assert_eq!(
        env.repo
            .list_snapshots(&MailboxId::new(&upn))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_delta_tokens_fall_back_to_full_enumeration() {
    let env = env(SimConfig::default()).await;
    let upn = first_mailbox_user(&env.sim);
    let mailbox = resolve(&env, &upn).await;
    let cancel = Cancel::new();
    let o = opts();
    let run = || {
        backup_mailbox(
            &env.repo,
            env.source.clone(),
            &mailbox,
            &o,
            clock(),
            &NullReporter,
            &cancel,
        )
    };
    run().await.unwrap();
    env.sim.expire_delta_tokens();
    env.sim
        .add_message(&upn, "inbox", NewMessage::text("after expiry", "x"))
        .unwrap();
    let s = run().await.unwrap();
    assert!(s.complete, "{s:#?}");
    assert!(s.resynced_folders > 0);
    assert_eq!(s.downloaded, 1, "a resync reuses stored content: {s:#?}");
    assert_matches_simulator(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_recorded_and_retried_next_run() {
    let env = env(SimConfig::default()).await;
    let upn = first_mailbox_user(&env.sim);
    let mailbox = resolve(&env, &upn).await;
    let bad = env.sim.dump_mailbox(&upn).unwrap().messages[3].id.clone();
    env.sim.set_mime_failure(&upn, &bad, true).unwrap();
    let cancel = Cancel::new();
    let o = opts();
    let run = || {
        backup_mailbox(
            &env.repo,
            env.source.clone(),
            &mailbox,
            &o,
            clock(),
            &NullReporter,
            &cancel,
        )
    };
    let s = run().await.unwrap();
    assert!(!s.complete, "a failed item makes the run partial");
    let errors: Vec<_> = s.folders.iter().flat_map(|f| f.errors.iter()).collect();
    assert_eq!(errors.len(), 1, "{s:#?}");
    env.sim.set_mime_failure(&upn, &bad, false).unwrap();
    let s = run().await.unwrap();
    assert!(s.complete, "{s:#?}");
    assert_matches_simulator(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_backup_survives_throttling_and_server_errors() {
    let env = env(SimConfig {
        users: 3,
        messages_per_user: 25,
        ..SimConfig::default()
    })
    .await;
    env.sim.set_faults(FaultConfig {
        error_rate: 0.15,
        retry_after_secs: 0,
        ..FaultConfig::default()
    });
    let all = env.source.list_mailboxes().await.unwrap();
    let mailboxes: Vec<_> = all
        .into_iter()
        .filter(|m| {
            matches!(
                m.kind,
                atlas_core::ports::MailboxKind::Licensed | atlas_core::ports::MailboxKind::Shared
            )
        })
        .collect();
    assert!(mailboxes.len() >= 3);
    let outcomes = backup_mailboxes(
        &env.repo,
        env.source.clone(),
        mailboxes.clone(),
        &opts(),
        2,
        clock(),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await;
    env.sim.set_faults(FaultConfig::default());
    for o in &outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.complete, "{}: {s:#?}", o.mailbox);
    }
    for m in &mailboxes {
        assert_matches_simulator(&env, m.address()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_of_the_same_mailbox_is_refused_by_the_lease() {
    let env = env(SimConfig::default()).await;
    let upn = first_mailbox_user(&env.sim);
    let mailbox_id = MailboxId::new(&upn);
    let held = env
        .repo
        .begin_backup(&mailbox_id, "other-host/123", clock())
        .await
        .unwrap();
    let mailbox = resolve(&env, &upn).await;
    let err = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err}");
    assert!(err.to_string().contains("other-host/123"));
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_commits_a_partial_snapshot_and_the_next_run_completes() {
    let env = env(SimConfig::default()).await;
    let upn = first_mailbox_user(&env.sim);
    let mailbox = resolve(&env, &upn).await;
    // Cancelled before it starts: every folder is "not reached", the snapshot is partial.
    let cancel = Cancel::new();
    cancel.escalate();
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &cancel,
    )
    .await
    .unwrap();
    assert!(!s.complete && s.cancelled);
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(&upn))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        snap.record.status,
        atlas_core::model::SnapshotStatus::Partial
    );
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(s.complete, "{s:#?}");
    assert_matches_simulator(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_the_memory_limit_are_streamed_and_stored_exactly() {
    let env = env(SimConfig {
        users: 3,
        messages_per_user: 12,
        ..SimConfig::default()
    })
    .await;
    let upn = first_mailbox_user(&env.sim);
    // A 20 MB incompressible attachment: the MIME (base64) is ~27 MB, far above the
    // 8 MiB in-memory limit, so it goes through the streaming path.
    let mut bytes = vec![0u8; 20 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    let mut big = NewMessage::text("quarterly archive", "see attachment");
    big.attachments = vec![atlas_sim::NewAttachment {
        name: "archive.bin".into(),
        content_type: "application/octet-stream".into(),
        bytes,
        is_inline: false,
        content_id: None,
    }];
    env.sim.add_message(&upn, "inbox", big).unwrap();
    let dump = env.sim.dump_mailbox(&upn).unwrap();
    assert!(dump.messages.iter().any(|m| m.mime_size > 8 << 20));
    let mailbox = resolve(&env, &upn).await;
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        clock(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(s.complete, "{s:#?}");
    assert_matches_simulator(&env, &upn).await;
}
