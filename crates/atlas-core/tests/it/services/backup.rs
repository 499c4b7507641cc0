//! The backup and status services on the memory tenant, into a memory repository. Every
//! check compares the repository with the tenant's own dump (byte-identical MIME).
//!
//! These ran over HTTP against the simulator in the CLI's tests (seconds each); the port
//! conformance suites, which the Graph adapter passes too, are what let them run here in
//! milliseconds. The two that are about the Graph client itself (throttling, upload
//! sessions) live in atlas-graph's tests.

use std::collections::HashMap;
use std::sync::Arc;

use atlas_core::Error;
use atlas_core::model::{ItemId, ItemKind, ItemMeta, MailboxId, SnapshotStatus};
use atlas_core::ports::{
    BlobStore, Clock, FixedClock, FolderOptions, MailSource, MailboxKind, NullReporter,
    SourceMailbox, SystemClock,
};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox, backup_mailboxes};
use atlas_core::service::status::{PendingChanges, mailbox_status};
use atlas_core::testing::{AttachmentSpec, MemoryTenant, MessageSpec};
use atlas_store::MemoryStore;

pub struct Env {
    pub tenant: MemoryTenant,
    pub source: Arc<dyn MailSource>,
    pub repo: Repository,
    pub store: Arc<dyn BlobStore>,
}

pub async fn env(mailboxes: usize, messages: usize) -> Env {
    env_with(MemoryTenant::generate(42, mailboxes, messages)).await
}

/// A memory repository next to `tenant`.
pub async fn env_with(tenant: MemoryTenant) -> Env {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let repo = Repository::init(
        store.clone(),
        "11111111-2222-3333-4444-555555555555",
        &Passphrase::new("correct horse battery staple"),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .unwrap();
    Env {
        source: Arc::new(tenant.clone()),
        tenant,
        repo,
        store,
    }
}

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

pub fn opts() -> BackupOptions {
    BackupOptions {
        page_size: 7,
        lease_owner: "test".into(),
        tool: "atlas-test".into(),
        ..BackupOptions::default()
    }
}

fn first_mailbox_user(env: &Env) -> String {
    env.tenant.addresses().remove(0)
}

pub async fn resolve(env: &Env, address: &str) -> SourceMailbox {
    env.source.resolve_mailbox(address).await.unwrap()
}

/// Every item of the tenant's mailbox is in the latest snapshot, in the right folder,
/// with byte-identical content and the same read state and categories; nothing else is.
pub async fn assert_matches_tenant(env: &Env, address: &str) {
    let dump = env.tenant.dump(address).unwrap();
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(address))
        .await
        .unwrap()
        .expect("a snapshot");
    let mut stored: HashMap<ItemId, (String, ItemMeta)> = HashMap::new();
    for f in &snap.record.folders {
        for m in env.repo.load_folder_items(&f.items).await.unwrap() {
            stored.insert(m.id.clone(), (f.folder.path.join("/"), m));
        }
    }
    assert_eq!(
        stored.len(),
        dump.items.len(),
        "snapshot holds {} items, the tenant {}",
        stored.len(),
        dump.items.len()
    );
    for item in &dump.items {
        let (path, meta) = stored
            .get(&item.id)
            .unwrap_or_else(|| panic!("item {} missing from the snapshot", item.id));
        assert_eq!(path, &item.folder_path, "folder of {}", item.id);
        assert_eq!(meta.kind, item.kind);
        if let Some(mail) = item.mail() {
            assert_eq!(meta.is_read, mail.is_read);
            assert_eq!(meta.categories, mail.categories);
        }
        for (kind, bytes) in &item.contents {
            let content = meta
                .content_of(*kind)
                .unwrap_or_else(|| panic!("{kind:?} of {} not stored", item.id));
            // Format 4 keeps no SHA-256 in records: reading checks the content id.
            assert!(content.sha256.is_empty(), "{kind:?} of {}", item.id);
            let read = env.repo.read_blob(&content.id).await.unwrap();
            assert_eq!(read.len() as u64, content.size);
            assert!(read == *bytes, "{kind:?} of {} differs", item.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_backup_matches_the_tenant() {
    let env = env(2, 40).await;
    let upn = first_mailbox_user(&env);
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
    assert_matches_tenant(&env, &upn).await;

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
    let dump = env.tenant.dump(&upn).unwrap();
    env.tenant
        .add_message(&upn, "inbox", MessageSpec::text("fresh", "new body"))
        .unwrap();
    let a = &dump.items[0];
    env.tenant
        .update_message(&upn, &a.id, |m| {
            m.is_read = !m.is_read;
            m.categories = vec!["Blue category".into()];
        })
        .unwrap();
    let b = dump
        .items
        .iter()
        .find(|m| m.folder_path != "Archive" && m.id != a.id)
        .unwrap();
    env.tenant.move_item(&upn, &b.id, "archive").unwrap();
    let c = dump
        .items
        .iter()
        .find(|m| m.id != a.id && m.id != b.id)
        .unwrap();
    env.tenant.delete_item(&upn, &c.id).unwrap();

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
    // and the move are metadata updates; the delete is a deletion.
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
    assert_matches_tenant(&env, &upn).await;
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
    let env = env(2, 40).await;
    let upn = first_mailbox_user(&env);
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
    env.tenant.expire_delta_links();
    env.tenant
        .add_message(&upn, "inbox", MessageSpec::text("after expiry", "x"))
        .unwrap();
    let s = run().await.unwrap();
    assert!(s.complete, "{s:#?}");
    assert!(s.resynced_folders > 0);
    assert_eq!(s.downloaded, 1, "a resync reuses stored content: {s:#?}");
    assert_matches_tenant(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_recorded_and_retried_next_run() {
    let env = env(2, 40).await;
    let upn = first_mailbox_user(&env);
    let mailbox = resolve(&env, &upn).await;
    let bad = env.tenant.dump(&upn).unwrap().items[3].id.clone();
    env.tenant.set_content_failure(&upn, &bad, true).unwrap();
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
    env.tenant.set_content_failure(&upn, &bad, false).unwrap();
    let s = run().await.unwrap();
    assert!(s.complete, "{s:#?}");
    assert_matches_tenant(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_backup_runs_mailboxes_in_parallel_and_each_matches() {
    let env = env(3, 25).await;
    let all = env.source.list_mailboxes().await.unwrap();
    let mailboxes: Vec<_> = all
        .into_iter()
        .filter(|m| matches!(m.kind, MailboxKind::Licensed | MailboxKind::Shared))
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
    for o in &outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.complete, "{}: {s:#?}", o.mailbox);
    }
    for m in &mailboxes {
        assert_matches_tenant(&env, m.address()).await;
    }
}

/// Issue 13: the mailboxes of one tenant run fill shared packs, and index files are
/// written per group of commits, not per mailbox. Before, every mailbox sealed its own
/// partly filled pack and wrote its own index file: at least one of each per mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_mailboxes_of_one_run_share_packs_and_index_files() {
    let env = env(12, 4).await;
    let mailboxes = env.source.list_mailboxes().await.unwrap();
    let mailboxes: Vec<_> = mailboxes
        .into_iter()
        .filter(|m| matches!(m.kind, MailboxKind::Licensed | MailboxKind::Shared))
        .collect();
    let n = mailboxes.len();
    assert!(n >= 12, "{n} mailboxes");
    let outcomes = backup_mailboxes(
        &env.repo,
        env.source.clone(),
        mailboxes.clone(),
        &opts(),
        4,
        clock(),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await;
    for o in &outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.complete, "{}: {s:#?}", o.mailbox);
        assert!(s.downloaded > 0, "{}", o.mailbox);
    }
    for m in &mailboxes {
        assert_matches_tenant(&env, m.address()).await;
    }
    let packs = env.store.list("packs/").await.unwrap().len();
    let index_files = env.store.list("index/").await.unwrap().len();
    assert!(
        packs * 2 <= n && index_files * 2 <= n,
        "{n} mailboxes wrote {packs} packs and {index_files} index files"
    );
    // Every snapshot verifies on its own although its packs hold other mailboxes' blobs.
    for s in env.repo.list_all_snapshots().await.unwrap() {
        let report = env.repo.verify_snapshot(s.id).await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

/// Issue 13: `delete -m A` (its snapshots, then prune) of a mailbox whose blobs share
/// packs with others keeps every other mailbox whole: prune repacks the shared packs by
/// reference instead of deleting them with A's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_one_mailbox_keeps_the_others_data_in_shared_packs() {
    use atlas_core::repo::PruneOptions;
    use atlas_core::service::retention::{DeleteTarget, execute_delete_and_prune, plan_delete};

    let env = env(4, 6).await;
    let mailboxes: Vec<_> = env
        .source
        .list_mailboxes()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m.kind, MailboxKind::Licensed | MailboxKind::Shared))
        .collect();
    let outcomes = backup_mailboxes(
        &env.repo,
        env.source.clone(),
        mailboxes.clone(),
        &opts(),
        4,
        clock(),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    let packs_before = env.store.list("packs/").await.unwrap().len();
    assert!(
        packs_before < mailboxes.len(),
        "packs are shared: {packs_before}"
    );

    let gone = mailboxes[0].id.clone();
    let plan = plan_delete(&env.repo, &DeleteTarget::Mailbox(gone.clone()))
        .await
        .unwrap();
    let sum = execute_delete_and_prune(
        &env.repo,
        &plan,
        &PruneOptions::default(),
        &atlas_core::ports::SystemClock,
    )
    .await
    .unwrap();
    assert!(sum.is_complete(), "{sum:?}");
    let pruned = sum.prune.expect("prune ran");
    assert!(
        !pruned.packs_repacked.is_empty() || !pruned.packs_deleted.is_empty(),
        "{pruned:?}"
    );
    assert!(!env.repo.list_mailboxes().await.unwrap().contains(&gone));
    for m in &mailboxes[1..] {
        assert_matches_tenant(&env, m.address()).await;
    }
    for s in env.repo.list_all_snapshots().await.unwrap() {
        let report = env.repo.verify_snapshot(s.id).await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

/// Downloads, packs being filled and packs being uploaded all draw from one tenant-wide
/// memory budget. With a budget far below what 4 mailboxes × 4 downloads would take, a
/// parallel backup still completes — downloads wait, packs are sealed early for them
/// instead of every worker waiting for the others — and holds close to the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_backup_holds_to_a_small_memory_budget() {
    let env = env(4, 20).await;
    // Each mailbox gets ~1.3 MB of incompressible MIME: its pack alone would pass the
    // budget, so packs must be sealed early for the downloads waiting.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for upn in env.tenant.addresses() {
        for i in 0..10 {
            let bytes: Vec<u8> = (0..96 << 10)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let mut m = MessageSpec::text(&format!("scan {i}"), "attached");
            m.attachments = vec![AttachmentSpec::file(
                "scan.bin",
                "application/octet-stream",
                bytes,
            )];
            env.tenant.add_message(&upn, "inbox", m).unwrap();
        }
    }
    let limit = 512 << 10;
    env.repo.set_memory_budget(limit);
    let mailboxes: Vec<_> = env
        .source
        .list_mailboxes()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m.kind, MailboxKind::Licensed | MailboxKind::Shared))
        .collect();
    assert!(mailboxes.len() >= 4);
    let opts = opts();
    let run = backup_mailboxes(
        &env.repo,
        env.source.clone(),
        mailboxes.clone(),
        &opts,
        4,
        clock(),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    );
    let outcomes = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the backup waits for memory, it does not deadlock");
    for o in &outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.complete, "{}: {s:#?}", o.mailbox);
    }
    for m in &mailboxes {
        assert_matches_tenant(&env, m.address()).await;
    }
    let budget = env.repo.memory_budget();
    assert_eq!(budget.in_use(), 0, "every grant was given back");
    // Waiting keeps the sum near the limit; what may pass it is bounded by the few
    // messages already admitted whose sealed copies join packs without waiting.
    assert!(
        budget.peak() <= 2 * limit,
        "peak {} for a budget of {limit}",
        budget.peak()
    );
    // 4 × 40 messages would fit in one 16 MiB pack per mailbox; the budget sealed more.
    let packs = env.store.list("packs/").await.unwrap().len();
    assert!(
        packs > mailboxes.len(),
        "{packs} packs, peak {}",
        budget.peak()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_of_the_same_mailbox_is_refused_by_the_lease() {
    let env = env(2, 10).await;
    let upn = first_mailbox_user(&env);
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
    let env = env(2, 40).await;
    let upn = first_mailbox_user(&env);
    let mailbox = resolve(&env, &upn).await;
    // Cancelled before it starts: every folder is "not reached", the snapshot is partial.
    // The two runs take under a millisecond here; a clock a second apart keeps their order
    // (snapshots sort by start time, to the millisecond).
    let now = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| -> Arc<dyn Clock> { Arc::new(FixedClock::new(t)) };
    let cancel = Cancel::new();
    cancel.escalate();
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        at(now),
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
    assert_eq!(snap.record.status, SnapshotStatus::Partial);
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        at(now + chrono::Duration::seconds(1)),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(s.complete, "{s:#?}");
    assert_matches_tenant(&env, &upn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_the_memory_limit_are_streamed_and_stored_exactly() {
    let env = env(3, 12).await;
    let upn = first_mailbox_user(&env);
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
    let mut big = MessageSpec::text("quarterly archive", "see attachment");
    big.attachments = vec![AttachmentSpec::file(
        "archive.bin",
        "application/octet-stream",
        bytes,
    )];
    env.tenant.add_message(&upn, "inbox", big).unwrap();
    let dump = env.tenant.dump(&upn).unwrap();
    assert!(dump.items.iter().any(|m| {
        m.content(atlas_core::model::ContentKind::Mime)
            .is_some_and(|b| b.len() > 8 << 20)
    }));
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
    assert_matches_tenant(&env, &upn).await;
}

/// The pipeline is kind-agnostic: a folder of notes (an export stream and a JSON
/// representation per item) goes through the same backup as mail, every representation
/// stored and checked, edits found by change key — no second pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_another_kind_go_through_the_same_pipeline() {
    use atlas_core::model::ContentKind;
    use bytes::Bytes;

    let env = env(1, 6).await;
    let upn = first_mailbox_user(&env);
    env.tenant
        .add_folder(&upn, "", "Notes", ItemKind::Note)
        .unwrap();
    let note = |n: u8| {
        vec![
            (ContentKind::Export, Bytes::from(vec![n; 3000])),
            (
                ContentKind::Json,
                Bytes::from(format!("{{\"title\":\"note {n}\"}}")),
            ),
        ]
    };
    let first = env
        .tenant
        .add_item(&upn, "Notes", ItemKind::Note, "note 1", note(1))
        .unwrap();
    env.tenant
        .add_item(&upn, "Notes", ItemKind::Note, "note 2", note(2))
        .unwrap();
    let mailbox = resolve(&env, &upn).await;
    // Kinds beyond mail are backed up when asked for (the default is mail only).
    let (mut o, cancel) = (opts(), Cancel::new());
    o.folder_options.kinds = atlas_core::model::KindSet::ALL;
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
    assert!(s.complete, "{s:#?}");
    assert_matches_tenant(&env, &upn).await;
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(&upn))
        .await
        .unwrap()
        .unwrap();
    let notes = snap
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Notes"])
        .unwrap();
    assert_eq!(notes.folder.kind, ItemKind::Note);

    // An edit of a note changes its change key and its content: downloaded again, unlike
    // a sent message whose metadata changes.
    env.tenant.replace_content(&upn, &first, note(9)).unwrap();
    let s = run().await.unwrap();
    assert!(s.complete, "{s:#?}");
    assert_eq!(s.downloaded, 1, "{s:#?}");
    assert_matches_tenant(&env, &upn).await;
}

/// Spans as a subscriber sees them: (name, fields, parent span name).
mod spans {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    pub type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

    pub struct Recorder(pub Seen);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields(String::new());
            attrs.record(&mut fields);
            let parent = ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned());
            self.0
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_owned(), fields.0, parent));
        }
    }
}

/// ARCHITECTURE rule 13: a backup and a restore log inside one span per mailbox and one
/// per folder, so `-vv` output of a tenant run can be followed.
#[tokio::test]
async fn backup_and_restore_run_in_a_span_per_mailbox_and_per_folder() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let seen = spans::Seen::default();
    // tracing-core decides a callsite's interest with the *calling thread's* default
    // subscriber while at most one dispatcher is registered (`has_just_one`): another test
    // thread hitting the backup's span callsites first, with no subscriber, then caches
    // them as "never" for every thread, and this test records nothing (it failed whenever
    // it ran alongside the other backup tests). With a second dispatcher alive, interest
    // is computed over every registered dispatcher, this test's recorder included.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    let subscriber = tracing_subscriber::registry().with(spans::Recorder(seen.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let env = env(1, 8).await;
    let upn = first_mailbox_user(&env);
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
    assert!(s.complete);
    let backup: Vec<_> = seen.lock().unwrap().drain(..).collect();
    assert!(
        backup
            .iter()
            .any(|(name, fields, _)| name == "mailbox" && fields.contains(&upn)),
        "{backup:?}"
    );
    let folders: Vec<&String> = backup
        .iter()
        .filter(|(name, _, parent)| name == "folder" && parent.as_deref() == Some("mailbox"))
        .map(|(_, fields, _)| fields)
        .collect();
    assert_eq!(folders.len(), s.folders.len(), "{backup:?}");
    assert!(
        folders.iter().any(|f| f.contains("Inbox/Projects")),
        "{folders:?}"
    );

    let plan = atlas_core::service::restore::plan(
        &env.repo,
        &atlas_core::service::restore::RestoreOptions::new(
            atlas_core::service::catalog::SnapshotSelector::Latest {
                mailbox: mailbox.id.clone(),
                as_of: None,
            },
        ),
    )
    .await
    .unwrap();
    let target: Arc<dyn atlas_core::ports::MailTarget> = Arc::new(env.tenant.clone());
    atlas_core::service::restore::execute(&plan, &env.repo, target, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    let restore: Vec<_> = seen.lock().unwrap().drain(..).collect();
    assert!(
        restore
            .iter()
            .any(|(name, fields, _)| name == "mailbox" && fields.contains(&upn)),
        "{restore:?}"
    );
    assert_eq!(
        restore
            .iter()
            .filter(|(name, _, parent)| name == "folder" && parent.as_deref() == Some("mailbox"))
            .count(),
        plan.folders.len(),
        "{restore:?}"
    );
}

/// A tenant whose mailbox `hold` stops at its first delta page until `until` has started
/// (its folders were listed): a slow mailbox that only moves on once a third one runs.
#[derive(Debug)]
struct Gated {
    inner: MemoryTenant,
    hold: String,
    until: String,
    started: tokio::sync::watch::Sender<bool>,
}

#[async_trait::async_trait]
impl atlas_core::ports::MailSource for Gated {
    async fn list_mailboxes(
        &self,
    ) -> Result<Vec<atlas_core::ports::SourceMailbox>, atlas_core::ports::SourceError> {
        self.inner.list_mailboxes().await
    }
    async fn resolve_mailbox(
        &self,
        a: &str,
    ) -> Result<atlas_core::ports::SourceMailbox, atlas_core::ports::SourceError> {
        self.inner.resolve_mailbox(a).await
    }
    async fn list_folders(
        &self,
        mailbox: &atlas_core::ports::SourceMailbox,
        opts: atlas_core::ports::FolderOptions,
    ) -> Result<Vec<atlas_core::ports::SourceFolder>, atlas_core::ports::SourceError> {
        if mailbox.address() == self.until {
            self.started.send_replace(true);
        }
        self.inner.list_folders(mailbox, opts).await
    }
    async fn delta_page(
        &self,
        mailbox: &atlas_core::ports::SourceMailbox,
        folder: &atlas_core::model::FolderId,
        cursor: &atlas_core::ports::DeltaCursor,
        page_size: u32,
    ) -> Result<atlas_core::ports::DeltaPage, atlas_core::ports::SourceError> {
        if mailbox.address() == self.hold {
            let mut rx = self.started.subscribe();
            let _ = rx.wait_for(|s| *s).await;
        }
        self.inner
            .delta_page(mailbox, folder, cursor, page_size)
            .await
    }
    async fn open_content(
        &self,
        mailbox: &atlas_core::ports::SourceMailbox,
        item: &atlas_core::ports::SourceItem,
        content: atlas_core::model::ContentKind,
    ) -> Result<Box<dyn atlas_core::ports::ContentStream>, atlas_core::ports::SourceError> {
        self.inner.open_content(mailbox, item, content).await
    }
}

/// Issue 13: a mailbox that had finished kept its place among the `parallel` while its
/// commit waited for the shared pack to fill, so the next mailbox could not start. Here
/// 3 mailboxes run 2 at a time; the second moves on only once the third has started, so
/// the third must start while the first one's commit waits (before: the run never ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_mailbox_waiting_for_the_shared_pack_lets_the_next_one_start() {
    use atlas_core::ports::MailSource as _;
    let tenant = MemoryTenant::generate(21, 3, 4);
    let addresses = tenant.addresses();
    let (started, _) = tokio::sync::watch::channel(false);
    let mut mailboxes = Vec::new();
    for a in &addresses {
        mailboxes.push(tenant.resolve_mailbox(a).await.unwrap());
    }
    let source = Gated {
        inner: tenant,
        hold: mailboxes[1].address().to_owned(),
        until: mailboxes[2].address().to_owned(),
        started,
    };
    let repo = Repository::init_with(
        Arc::new(MemoryStore::new()),
        "t",
        &Passphrase::new("pw"),
        KdfChoice::SCRYPT_MINIMUM,
        atlas_core::repo::RepoSettings::default(),
    )
    .await
    .unwrap();
    let opts = BackupOptions::default();
    let run = backup_mailboxes(
        &repo,
        Arc::new(source),
        mailboxes,
        &opts,
        2,
        Arc::new(atlas_core::ports::SystemClock),
        Arc::new(atlas_core::ports::NullReporter),
        Arc::new(Cancel::new()),
    );
    let outcomes = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the third mailbox started while the first one's commit waited");
    for o in outcomes {
        assert!(o.result.unwrap().complete, "{}", o.mailbox);
    }
}
