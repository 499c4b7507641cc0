//! The core's backup and restore services over this adapter, under HTTP faults the
//! adapter must absorb: throttling and server errors across a tenant backup, and large
//! attachments through upload sessions that break off half-way. Everything else the
//! services do is tested on the memory tenant in atlas-core (the port conformance suites
//! tie the two together).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atlas_core::model::MailboxId;
use atlas_core::ports::{BlobStore, MailSource, MailboxKind, NullReporter, SystemClock};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox, backup_mailboxes};
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::restore::{RestoreOptions, execute, plan};
use atlas_graph::{Credential, GraphClient, GraphConfig, GraphSource, GraphTarget, RetryPolicy};
use atlas_sim::{
    FaultConfig, MailboxDump, MessageDump, NewAttachment, NewMessage, SimConfig, SimHandle,
    Simulator,
};
use atlas_store::MemoryStore;

struct Env {
    sim: SimHandle,
    source: Arc<GraphSource>,
    target: Arc<GraphTarget>,
    repo: Repository,
}

fn client(sim: &SimHandle, attempts: u32) -> GraphClient {
    let mut gc = GraphConfig::new(
        sim.tenant_id(),
        sim.client_id(),
        Credential::Secret(sim.client_secret().into()),
    )
    .with_endpoints(sim.base_url(), sim.base_url());
    gc.retry = RetryPolicy {
        max_attempts: attempts,
        max_total: Duration::from_secs(60),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    };
    gc.request_timeout = Duration::from_secs(5);
    GraphClient::new(gc).expect("client")
}

async fn env(config: SimConfig) -> Env {
    let sim = Simulator::start(config).await.expect("simulator");
    let c = client(&sim, 12);
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let repo = Repository::init(
        store,
        &sim.tenant_id(),
        &Passphrase::new("correct horse battery staple"),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .expect("repository");
    Env {
        source: Arc::new(GraphSource::new(c.clone())),
        target: Arc::new(GraphTarget::new(c)),
        sim,
        repo,
    }
}

fn opts() -> BackupOptions {
    BackupOptions {
        page_size: 7,
        lease_owner: "test".into(),
        tool: "atlas-test".into(),
        ..BackupOptions::default()
    }
}

fn faults(rate: f64) -> FaultConfig {
    FaultConfig {
        error_rate: rate,
        retry_after_secs: 0,
        ..FaultConfig::default()
    }
}

/// Every message of the simulator's mailbox is in the latest snapshot with byte-identical
/// MIME; nothing else is.
async fn assert_matches_simulator(env: &Env, upn: &str) {
    let dump = env.sim.dump_mailbox(upn).expect("dump");
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(upn))
        .await
        .expect("snapshots")
        .expect("a snapshot");
    let mut stored = BTreeMap::new();
    for f in &snap.record.folders {
        for m in env.repo.load_folder_items(&f.items).await.expect("items") {
            stored.insert(m.id.as_str().to_owned(), (f.folder.path.join("/"), m));
        }
    }
    assert_eq!(stored.len(), dump.messages.len());
    for m in &dump.messages {
        let (path, meta) = &stored[&m.immutable_id];
        assert_eq!(path, &m.folder_path, "folder of {}", m.immutable_id);
        assert_eq!(meta.is_read, m.is_read);
        // Format 4 keeps no SHA-256 in records (the content id checks what is read);
        // the bytes are compared whole below.
        assert!(meta.mime_sha256.is_empty());
        let mime = env.repo.read_blob(&meta.mime).await.expect("read");
        assert_eq!(Some(mime.as_ref()), m.mime.as_deref(), "MIME of {}", m.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_backup_survives_throttling_and_server_errors() {
    let env = env(SimConfig {
        users: 3,
        messages_per_user: 25,
        ..SimConfig::default()
    })
    .await;
    env.sim.set_faults(faults(0.15));
    let all = env.source.list_mailboxes().await.expect("mailboxes");
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
        Arc::new(SystemClock),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await;
    env.sim.set_faults(FaultConfig::default());
    for o in &outcomes {
        let s = o.result.as_ref().expect("backup");
        assert!(s.complete, "{}: {s:#?}", o.mailbox);
    }
    for m in &mailboxes {
        assert_matches_simulator(&env, m.address()).await;
    }
}

/// Content IDs of the inline parts of a rendered MIME.
fn content_ids(m: &MessageDump) -> Vec<String> {
    let text = String::from_utf8_lossy(m.mime.as_deref().unwrap_or_default()).into_owned();
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Content-ID:"))
        .map(|v| v.trim().to_owned())
        .collect();
    ids.sort();
    ids
}

/// What must survive a restore, per message. Reference attachments are links that are
/// not part of the MIME, so backups hold no content for them and they are left out.
fn fingerprint(m: &MessageDump) -> String {
    let mut atts: Vec<String> = m
        .attachments
        .iter()
        .filter(|a| a.kind != "reference")
        .map(|a| format!("{}|{}|{}|{}", a.name, a.kind, a.is_inline, a.sha256))
        .collect();
    atts.sort();
    format!(
        "subject={:?} read={} draft={} flag={} cats={:?} received={} sent={} atts={atts:?} cids={:?}",
        m.subject,
        m.is_read,
        m.is_draft,
        m.flag_status,
        m.categories,
        // Graph reports times to the second; that is what a backup can keep.
        m.received.timestamp(),
        m.sent.timestamp(),
        content_ids(m)
    )
}

/// Every source message appears exactly once under `root + folder path`, identical in
/// everything that counts; nothing else is under the root; nothing restored is a draft.
fn assert_restored(source: &MailboxDump, target: &MailboxDump, root: &str) {
    let key = |path: &str, m: &MessageDump| format!("{path}\u{0}{}", m.internet_message_id);
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &source.messages {
        let path = format!("{root}/{}", m.folder_path);
        want.entry(key(&path, m)).or_default().push(fingerprint(m));
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &target.messages {
        if m.folder_path.starts_with(&format!("{root}/")) {
            got.entry(key(&m.folder_path, m))
                .or_default()
                .push(fingerprint(m));
        }
    }
    for v in want.values_mut().chain(got.values_mut()) {
        v.sort();
    }
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "missing in target: {missing:#?}");
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "message {k} differs or is duplicated");
    }
    assert_eq!(
        got.values().map(Vec::len).sum::<usize>(),
        want.values().map(Vec::len).sum::<usize>(),
        "extra messages under {root}"
    );
    for m in &target.messages {
        if m.folder_path.starts_with(root) && !m.folder_path.contains("Drafts") {
            assert!(!m.is_draft, "restored message {} is a draft", m.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_attachments_go_through_upload_sessions_and_survive_faults_mid_upload() {
    let mut config = SimConfig::with_size(3, 4, 20);
    config.large_attachments = true;
    config.max_attachment_bytes = 5 * 1024 * 1024;
    let env = env(config).await;
    let us: Vec<String> = env
        .sim
        .users()
        .into_iter()
        .filter(|u| u.has_mailbox && u.kind != "shared")
        .map(|u| u.upn)
        .collect();
    let (a, b) = (&us[0], &us[1]);
    // Deterministic large parts: a 5 MB file and a 3.5 MB inline image (both need upload
    // sessions; the image must stay inline with its content id).
    let big = |n: usize, seed: u8| (0..n).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>();
    let mut msg = NewMessage::text("large parts", "see attached");
    msg.html = true;
    msg.body = "<p>logo <img src=\"cid:big@x\"></p>".into();
    msg.attachments = vec![
        NewAttachment {
            name: "big.bin".into(),
            content_type: "application/octet-stream".into(),
            bytes: big(5 * 1024 * 1024, 7),
            is_inline: false,
            content_id: None,
        },
        NewAttachment {
            name: "big.png".into(),
            content_type: "image/png".into(),
            bytes: big(3_500_000, 3),
            is_inline: true,
            content_id: Some("big@x".into()),
        },
    ];
    env.sim.add_message(a, "inbox", msg).expect("add");
    let mailbox = env.source.resolve_mailbox(a).await.expect("resolve");
    let s = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &opts(),
        Arc::new(SystemClock),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .expect("backup");
    assert!(s.complete, "{s:#?}");
    let source = env.sim.dump_mailbox(a).expect("dump");
    // A client that gives up quickly, against a service failing often: some uploads
    // break off half-way.
    let flaky = Arc::new(GraphTarget::new(client(&env.sim, 1)));
    let mut opts = RestoreOptions::new(SnapshotSelector::Latest {
        mailbox: MailboxId::new(a),
        as_of: None,
    });
    opts.target = Some(b.clone());
    env.sim.set_faults(faults(0.3));
    let p = plan(&env.repo, &opts).await.expect("plan");
    let first = execute(&p, &env.repo, flaky, &NullReporter, &Cancel::new()).await;
    env.sim.set_faults(FaultConfig::default());
    if let Ok(s) = &first {
        assert!(
            !s.complete,
            "with 30 % failures and no retries something must fail"
        );
        assert!(s.folders.iter().any(|f| !f.missing.is_empty()));
    }
    let p = plan(&env.repo, &opts).await.expect("plan");
    let done = execute(
        &p,
        &env.repo,
        env.target.clone(),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .expect("restore");
    assert!(done.complete, "{done:#?}");
    let target = env.sim.dump_mailbox(b).expect("dump");
    assert_restored(&source, &target, done.root.as_deref().expect("root"));
    assert!(
        target
            .messages
            .iter()
            .any(|m| m.attachments.iter().any(|x| x.size >= 3 * 1024 * 1024))
    );
}

/// `backup -m`: its plan lists the named mailbox's folders from the bookmark its latest
/// snapshot keeps (one request), not afresh (a listing per parent folder and one per
/// well-known folder), as the backup itself does.
async fn named_backup_plans_from_the_bookmark(env: &Env, a: &str) {
    let sim = &env.sim;
    let mut request = atlas_core::service::backup::BackupRequest::new(
        atlas_core::service::backup::MailboxSelection::Named(vec![a.to_owned()]),
    );
    request.options = opts();
    let graph_requests = || {
        let c = sim.counters();
        c.total_requests() - c.kind("token").requests
    };
    sim.reset_counters();
    atlas_core::service::backup::plan(env.source.as_ref(), &request)
        .await
        .expect("plan");
    let afresh = graph_requests();
    sim.reset_counters();
    let planned = atlas_core::service::backup::plan_for(&env.repo, env.source.as_ref(), &request)
        .await
        .expect("plan");
    let counts = sim.counters();
    assert_eq!(counts.kind("folder_delta").requests, 1, "{counts:#?}");
    assert_eq!(counts.kind("folders").requests, 0, "{counts:#?}");
    let bookmarked = graph_requests();
    assert!(
        bookmarked + 5 <= afresh,
        "planning from the bookmark: {bookmarked} requests, afresh: {afresh}"
    );
    let report = atlas_core::service::backup::execute(
        &planned,
        &env.repo,
        env.source.clone(),
        Arc::new(SystemClock),
        Arc::new(NullReporter),
        Arc::new(Cancel::new()),
    )
    .await
    .expect("execute");
    assert_eq!(report.outcomes.len(), 1);
    let counts = sim.counters();
    assert_eq!(counts.kind("folder_delta").requests, 2, "{counts:#?}");
    assert_eq!(counts.kind("folders").requests, 0, "{counts:#?}");
}

/// Incremental backups learn the folder tree from the `mailFolders/delta` link kept in the
/// snapshot record: each stores exactly the folders the `childFolders` walk finds and every
/// message of the mailbox, through new, renamed, moved and deleted folders; an unchanged
/// incremental costs one Graph request per folder and one for the tree (it cost ~1.7 per
/// folder with the walk and the well-known folders asked for each run). Messages deleted
/// from a folder the round does not report again (its count is the old one) leave the
/// backup complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_backups_follow_the_folder_tree_from_its_delta_link() {
    let env = env(SimConfig {
        users: 1,
        shared_mailboxes: 0,
        messages_per_user: 40,
        ..SimConfig::default()
    })
    .await;
    let upn = env
        .sim
        .users()
        .into_iter()
        .find(|u| u.has_mailbox)
        .expect("user")
        .upn;
    let a = upn.as_str();
    let mailbox = env.source.resolve_mailbox(a).await.expect("resolve");
    let backup = || async {
        let s = backup_mailbox(
            &env.repo,
            env.source.clone(),
            &mailbox,
            &opts(),
            Arc::new(SystemClock),
            &NullReporter,
            &Cancel::new(),
        )
        .await
        .expect("backup");
        assert!(s.complete, "{s:#?}");
        s
    };
    let walked = || async {
        let tree = env
            .source
            .client()
            .list_folder_tree(&mailbox.id, atlas_graph::FolderTreeOptions::default())
            .await
            .expect("walk");
        tree.into_iter()
            .filter(|f| !f.is_search_folder)
            .map(|f| (f.id.as_str().to_owned(), f.path.join("/")))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let stored = || async {
        let snap = env
            .repo
            .latest_snapshot(&mailbox.id)
            .await
            .expect("snapshots")
            .expect("a snapshot");
        assert!(snap.record.folder_bookmark.is_some(), "the tree is kept");
        snap.record
            .folders
            .iter()
            .map(|f| (f.folder.id.as_str().to_owned(), f.folder.path.join("/")))
            .collect::<std::collections::BTreeSet<_>>()
    };

    backup().await;
    assert_eq!(stored().await, walked().await);
    assert_matches_simulator(&env, a).await;

    let sim = &env.sim;
    let new = sim.add_folder(a, "Inbox/Projects", "New").expect("add");
    sim.add_message(a, &new, NewMessage::text("in a new folder", "x"))
        .expect("add");
    sim.rename_folder(a, "Inbox/Projects", "Projects 2")
        .expect("rename");
    sim.move_folder(a, "Inbox/Receipts", "Archive")
        .expect("move");
    sim.delete_folder(a, "Archive/2023").expect("delete");
    sim.add_folder(a, "", "Top").expect("add");
    backup().await;
    assert_eq!(stored().await, walked().await);
    assert_matches_simulator(&env, a).await;

    // Unchanged: one request per folder (its message delta) and one for the tree.
    sim.reset_counters();
    let s = backup().await;
    let counts = sim.counters();
    let folders = s.folders.iter().filter(|f| f.visited).count() as u64;
    let graph = counts.total_requests() - counts.kind("token").requests;
    assert_eq!(graph, folders + 1, "{counts:#?}");
    assert_eq!(counts.kind("folder_delta").requests, 1);

    named_backup_plans_from_the_bookmark(&env, a).await;

    // Messages deleted: the folder's count from the tree is an old one; still complete.
    let dump = sim.dump_mailbox(a).expect("dump");
    for m in dump
        .messages
        .iter()
        .filter(|m| m.folder_path == "Inbox")
        .take(3)
    {
        sim.delete_message(a, &m.id).expect("delete");
    }
    backup().await;
    assert_matches_simulator(&env, a).await;
}
