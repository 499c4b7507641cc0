//! End to end, library level: back up a simulated mailbox over HTTP into a local
//! repository, restore it with the restore service through the Graph target adapter, and
//! compare the simulator's dump of the target with the source — message by message,
//! attachment bytes by SHA-256, folders, state and dates — with throttling and faults on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atlas_core::model::MailboxId;
use atlas_core::ports::TargetError;
use atlas_core::ports::{BlobStore, Event, MailSource, NullReporter, Reporter, SystemClock};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox};
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::restore::{
    Destination, RestoreError, RestoreOptions, RestoreSummary, execute, plan,
};
use atlas_graph::{
    Credential, GraphClient, GraphConfig, GraphSource, GraphTarget, PROP_SOURCE, RetryPolicy,
};
use atlas_sim::{
    FaultConfig, MailboxDump, MessageDump, NewAttachment, NewMessage, SimConfig, SimHandle,
    Simulator, roles,
};
use atlas_store::LocalStore;

struct Env {
    sim: SimHandle,
    source: Arc<GraphSource>,
    target: Arc<GraphTarget>,
    repo: Repository,
    dir: tempfile::TempDir,
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
    GraphClient::new(gc).unwrap()
}

async fn env(config: SimConfig) -> Env {
    let sim = Simulator::start(config).await.unwrap();
    let c = client(&sim, 12);
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
        source: Arc::new(GraphSource::new(c.clone())),
        target: Arc::new(GraphTarget::new(c)),
        sim,
        repo,
        dir,
    }
}

fn users(sim: &SimHandle) -> Vec<String> {
    sim.users()
        .into_iter()
        .filter(|u| u.has_mailbox && u.kind != "shared")
        .map(|u| u.upn)
        .collect()
}

async fn backup(env: &Env, upn: &str) {
    let mailbox = env.source.resolve_mailbox(upn).await.unwrap();
    let summary = backup_mailbox(
        &env.repo,
        env.source.clone(),
        &mailbox,
        &BackupOptions {
            lease_owner: "test".into(),
            tool: "atlas-test".into(),
            ..BackupOptions::default()
        },
        Arc::new(SystemClock),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(summary.complete, "{summary:#?}");
}

fn latest(upn: &str) -> SnapshotSelector {
    SnapshotSelector::Latest {
        mailbox: MailboxId::new(upn),
        as_of: None,
    }
}

async fn restore(
    env: &Env,
    opts: &RestoreOptions,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RestoreSummary, RestoreError> {
    let p = plan(&env.repo, opts).await?;
    execute(&p, &env.repo, env.target.clone(), reporter, cancel).await
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

/// Source messages (optionally only some) must appear exactly once under
/// `prefix + folder path` in the target, identical in everything that counts.
fn assert_restored(
    source: &MailboxDump,
    target: &MailboxDump,
    prefix: &str,
    only: impl Fn(&MessageDump) -> bool,
) {
    let key = |path: &str, m: &MessageDump| format!("{path}\u{0}{}", m.internet_message_id);
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in source.messages.iter().filter(|m| only(m)) {
        let path = if prefix.is_empty() {
            m.folder_path.clone()
        } else {
            format!("{prefix}/{}", m.folder_path)
        };
        want.entry(key(&path, m)).or_default().push(fingerprint(m));
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &target.messages {
        if prefix.is_empty() || m.folder_path.starts_with(&format!("{prefix}/")) {
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
    if !prefix.is_empty() {
        assert_eq!(
            got.values().map(Vec::len).sum::<usize>(),
            want.values().map(Vec::len).sum::<usize>(),
            "extra messages under {prefix}"
        );
    }
    for m in &target.messages {
        if m.folder_path.starts_with(prefix) && !m.folder_path.contains("Drafts") {
            assert!(!m.is_draft, "restored message {} is a draft", m.id);
        }
    }
}

fn faults(rate: f64) -> FaultConfig {
    FaultConfig {
        error_rate: rate,
        retry_after_secs: 0,
        ..FaultConfig::default()
    }
}

/// Cancels (hard) once `after` messages were reported done.
#[derive(Debug)]
struct CancelAfter {
    after: u64,
    seen: AtomicU64,
    cancel: Arc<Cancel>,
}

impl Reporter for CancelAfter {
    fn report(&self, event: Event) {
        if let Event::Items { count, .. } = event
            && self.seen.fetch_add(count, Ordering::SeqCst) + count >= self.after
            && !self.cancel.is_hard()
        {
            self.cancel.escalate();
            self.cancel.escalate();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restore_into_another_mailbox_matches_the_source_under_faults() {
    let env = env(SimConfig::with_size(7, 4, 40)).await;
    let us = users(&env.sim);
    let (a, b) = (&us[0], &us[1]);
    backup(&env, a).await;
    let before_b = env.sim.dump_mailbox(b).unwrap();
    env.sim.set_faults(faults(0.1));
    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    let summary = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.sim.set_faults(FaultConfig::default());
    assert!(summary.complete, "{summary:#?}");
    let source = env.sim.dump_mailbox(a).unwrap();
    assert_eq!(summary.created as usize, source.messages.len());
    let root = summary.root.clone().unwrap();
    assert!(root.starts_with("Restore-"));
    let target = env.sim.dump_mailbox(b).unwrap();
    assert_restored(&source, &target, &root, |_| true);
    // Nothing outside the restore root changed.
    let outside = |d: &MailboxDump| {
        d.messages
            .iter()
            .filter(|m| !m.folder_path.starts_with(&root))
            .count()
    };
    assert_eq!(outside(&target), outside(&before_b));
    // Restored messages carry the mark with the original id.
    let m = target
        .messages
        .iter()
        .find(|m| m.folder_path.starts_with(&root))
        .unwrap();
    assert!(
        m.extended_properties
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(PROP_SOURCE))
    );
    // An item attachment and an inline image were among them.
    assert!(target.messages.iter().any(
        |m| m.folder_path.starts_with(&root) && m.attachments.iter().any(|x| x.kind == "item")
    ));
    assert!(
        target
            .messages
            .iter()
            .any(|m| m.folder_path.starts_with(&root) && m.attachments.iter().any(|x| x.is_inline))
    );

    // Running the same restore again writes nothing new.
    let again = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(again.complete);
    assert_eq!(again.created, 0);
    assert_eq!(again.skipped as usize, source.messages.len());
    assert_restored(&source, &env.sim.dump_mailbox(b).unwrap(), &root, |_| true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_restore_brings_back_only_deleted_messages() {
    let env = env(SimConfig::with_size(11, 2, 30)).await;
    let a = users(&env.sim)[0].clone();
    backup(&env, &a).await;
    let original = env.sim.dump_mailbox(&a).unwrap();
    let deleted: Vec<String> = original
        .messages
        .iter()
        .step_by(5)
        .map(|m| m.id.clone())
        .collect();
    for id in &deleted {
        env.sim.delete_message(&a, id).unwrap();
    }
    let mut opts = RestoreOptions::new(latest(&a));
    opts.destination = Destination::InPlace;
    env.sim.set_faults(faults(0.05));
    let summary = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.sim.set_faults(FaultConfig::default());
    assert!(summary.complete, "{summary:#?}");
    assert_eq!(summary.created as usize, deleted.len());
    assert_eq!(
        summary.skipped as usize,
        original.messages.len() - deleted.len()
    );
    let after = env.sim.dump_mailbox(&a).unwrap();
    assert_eq!(after.messages.len(), original.messages.len());
    assert_restored(&original, &after, "", |_| true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_at_several_points_and_rerun_has_no_duplicates_and_no_gaps() {
    let env = env(SimConfig::with_size(5, 4, 30)).await;
    let us = users(&env.sim);
    let (a, b) = (&us[0], &us[1]);
    backup(&env, a).await;
    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    for after in [1, 7, 19] {
        let cancel = Arc::new(Cancel::new());
        let reporter = CancelAfter {
            after,
            seen: AtomicU64::new(0),
            cancel: cancel.clone(),
        };
        let s = restore(&env, &opts, &reporter, &cancel).await.unwrap();
        assert!(s.cancelled && !s.complete, "{s:#?}");
    }
    let done = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(done.complete, "{done:#?}");
    let source = env.sim.dump_mailbox(a).unwrap();
    assert_restored(
        &source,
        &env.sim.dump_mailbox(b).unwrap(),
        done.root.as_deref().unwrap(),
        |_| true,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_attachments_go_through_upload_sessions_and_survive_faults_mid_upload() {
    let mut config = SimConfig::with_size(3, 4, 20);
    config.large_attachments = true;
    config.max_attachment_bytes = 5 * 1024 * 1024;
    let env = env(config).await;
    let us = users(&env.sim);
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
    env.sim.add_message(a, "inbox", msg).unwrap();
    backup(&env, a).await;
    let source = env.sim.dump_mailbox(a).unwrap();
    // A client that gives up quickly, against a service failing often: some uploads
    // break off half-way.
    let flaky = Arc::new(GraphTarget::new(client(&env.sim, 1)));
    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    env.sim.set_faults(faults(0.3));
    let p = plan(&env.repo, &opts).await.unwrap();
    let first = execute(&p, &env.repo, flaky, &NullReporter, &Cancel::new()).await;
    env.sim.set_faults(FaultConfig::default());
    if let Ok(s) = &first {
        assert!(
            !s.complete,
            "with 30 % failures and no retries something must fail"
        );
        assert!(s.folders.iter().any(|f| !f.missing.is_empty()));
    }
    let done = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(done.complete, "{done:#?}");
    let target = env.sim.dump_mailbox(b).unwrap();
    assert_restored(&source, &target, done.root.as_deref().unwrap(), |_| true);
    assert!(
        target
            .messages
            .iter()
            .any(|m| m.attachments.iter().any(|x| x.size >= 3 * 1024 * 1024))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_no_longer_exists_restores_into_another_tenant_mailbox() {
    let env = env(SimConfig::with_size(21, 2, 20)).await;
    let a = users(&env.sim)[0].clone();
    backup(&env, &a).await;
    let source = env.sim.dump_mailbox(&a).unwrap();
    // A different tenant where `a` never existed.
    let other = Simulator::start(SimConfig::with_size(99, 2, 5))
        .await
        .unwrap();
    assert!(other.users().iter().all(|u| u.upn != a));
    let target = Arc::new(GraphTarget::new(client(&other, 12)));
    let b = users(&other)[0].clone();
    let mut opts = RestoreOptions::new(latest(&a));
    opts.target = Some(b.clone());
    opts.folders = vec!["Inbox".into()];
    let p = plan(&env.repo, &opts).await.unwrap();
    let s = execute(&p, &env.repo, target, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(s.complete, "{s:#?}");
    assert_restored(
        &source,
        &other.dump_mailbox(&b).unwrap(),
        s.root.as_deref().unwrap(),
        |m| m.folder_path == "Inbox" || m.folder_path.starts_with("Inbox/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_refused_before_anything_is_written() {
    let env = env(SimConfig::with_size(2, 4, 10)).await;
    let a = users(&env.sim)[0].clone();
    backup(&env, &a).await;
    let mut opts = RestoreOptions::new(latest(&a));
    opts.target = Some("nobody@contoso.onmicrosoft.com".into());
    let err = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RestoreError::Target(TargetError::MailboxNotFound(_))),
        "{err:?}"
    );
    let no_mailbox = env
        .sim
        .users()
        .into_iter()
        .find(|u| !u.has_mailbox)
        .unwrap()
        .upn;
    opts.target = Some(no_mailbox);
    let err = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RestoreError::Target(TargetError::MailboxNotEnabled(_))),
        "{err:?}"
    );
    opts.folders = vec!["No Such Folder".into()];
    opts.target = None;
    assert!(matches!(
        plan(&env.repo, &opts).await,
        Err(RestoreError::Core(atlas_core::Error::InvalidInput { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_mail_read_write_permission_is_named_and_nothing_is_written() {
    let mut config = SimConfig::with_size(4, 4, 10);
    config.granted_roles = [roles::USER_READ_ALL, roles::MAIL_READ]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let env = env(config).await;
    let us = users(&env.sim);
    backup(&env, &us[0]).await;
    let before = env.sim.dump_mailbox(&us[1]).unwrap();
    let mut opts = RestoreOptions::new(latest(&us[0]));
    opts.target = Some(us[1].clone());
    let err = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Mail.ReadWrite"), "{err}");
    assert!(matches!(
        err,
        RestoreError::Target(TargetError::PermissionDenied { .. })
    ));
    let after = env.sim.dump_mailbox(&us[1]).unwrap();
    assert_eq!(after.folders.len(), before.folders.len());
    assert_eq!(after.messages.len(), before.messages.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_fails_only_its_message_and_the_summary_is_partial() {
    let env = env(SimConfig::with_size(8, 4, 20)).await;
    let us = users(&env.sim);
    let (a, b) = (&us[0], &us[1]);
    backup(&env, a).await;
    // Flip a byte inside one message's stored MIME.
    let snap = env
        .repo
        .latest_snapshot(&MailboxId::new(a))
        .await
        .unwrap()
        .unwrap();
    let inbox = snap
        .record
        .folders
        .iter()
        .find(|f| f.folder.path == ["Inbox"])
        .unwrap();
    let mut uses = HashMap::new();
    for f in &snap.record.folders {
        for m in env.repo.load_folder_items(&f.items).await.unwrap() {
            *uses.entry(m.mime).or_insert(0) += 1;
        }
    }
    let items = env.repo.load_folder_items(&inbox.items).await.unwrap();
    // A message whose content no other message shares (dedup would damage both).
    let victim = items.iter().find(|m| uses[&m.mime] == 1).unwrap();
    let loc = env.repo.locate(&victim.mime).await.unwrap();
    let path = env.dir.path().join("repo").join(loc.pack.store_key());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = loc.offset as usize + loc.length as usize / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    opts.folders = vec!["Inbox".into()];
    let s = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(s.is_partial());
    assert_eq!(s.failed, 1);
    let folder = s.folders.iter().find(|f| f.source_path == "Inbox").unwrap();
    assert_eq!(folder.missing.len(), 1);
    assert_eq!(folder.missing[0].message_id, victim.id.as_str());
    assert_eq!(folder.present, folder.expected - 1);
    let source = env.sim.dump_mailbox(a).unwrap();
    let victim_imid = victim.internet_message_id.clone().unwrap();
    assert_restored(
        &source,
        &env.sim.dump_mailbox(b).unwrap(),
        s.root.as_deref().unwrap(),
        |m| {
            (m.folder_path == "Inbox" || m.folder_path.starts_with("Inbox/"))
                && m.internet_message_id != victim_imid
        },
    );
}
