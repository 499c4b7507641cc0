//! The restore service on the memory tenant: back a mailbox up into a memory repository,
//! restore it through the target port, and compare the tenant's dump of the target with
//! the source — message by message, attachment bytes by SHA-256, folders, state and
//! dates — with scripted faults (lost answers, unsent writes) on.
//!
//! These ran over HTTP against the simulator in the CLI's tests; the fingerprints now come
//! from the messages as the test built them ([`MessageSpec`]) and from what the target was
//! sent, so no MIME parser shared with the restore decides what "equal" means. Upload
//! sessions under HTTP faults stay in atlas-graph's tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use atlas_core::model::MailboxId;
use atlas_core::ports::{
    BlobStore, Event, MailTarget, NullReporter, PutOptions, Reporter, RestoreAttachment,
    TargetError,
};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailbox};
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::restore::{
    Destination, RestoreError, RestoreOptions, RestoreSummary, execute, plan,
};
use atlas_core::testing::{
    AttachmentSpec, BodySpec, Fault, ItemDump, MailboxDump, MemoryTenant, MessageSpec, Op,
};
use sha2::{Digest, Sha256};

use super::backup::{Env, clock, env};

fn target(env: &Env) -> Arc<dyn MailTarget> {
    Arc::new(env.tenant.clone())
}

fn users(env: &Env) -> Vec<String> {
    env.tenant.addresses()
}

pub(super) async fn backup(env: &Env, upn: &str) {
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
        clock(),
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
    execute(&p, &env.repo, target(env), reporter, cancel).await
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `name|kind|inline|identity` of every attachment, sorted, and the inline content ids:
/// the identity of a file is the SHA-256 of its bytes, of an attached message its subject.
fn spec_attachments(spec: &MessageSpec) -> (Vec<String>, Vec<String>) {
    let mut atts = Vec::new();
    let mut cids = Vec::new();
    for a in &spec.attachments {
        match a {
            AttachmentSpec::File {
                name,
                bytes,
                inline,
                content_id,
                ..
            } => {
                atts.push(format!("{name}|file|{inline}|{}", sha(bytes)));
                cids.extend(content_id.iter().filter(|_| *inline).cloned());
            }
            AttachmentSpec::Message { name, message } => {
                atts.push(format!("{name}|item|false|{}", message.subject));
            }
        }
    }
    atts.sort();
    cids.sort();
    (atts, cids)
}

fn restored_attachments(list: &[RestoreAttachment]) -> (Vec<String>, Vec<String>) {
    let mut atts = Vec::new();
    let mut cids = Vec::new();
    for a in list {
        match a {
            RestoreAttachment::File {
                name,
                bytes,
                is_inline,
                content_id,
                ..
            } => {
                atts.push(format!("{name}|file|{is_inline}|{}", sha(bytes)));
                cids.extend(content_id.iter().filter(|_| *is_inline).cloned());
            }
            RestoreAttachment::Item { name, message, .. } => {
                atts.push(format!("{name}|item|false|{}", message.subject));
            }
        }
    }
    atts.sort();
    cids.sort();
    (atts, cids)
}

/// What must survive a restore, per message, and its Message-ID (without brackets).
fn fingerprint(item: &ItemDump) -> (String, String) {
    let mail = item.mail().expect("a message");
    let (subject, imid, sent, received, atts, cids) = match (&item.restored, &item.spec) {
        (Some(r), _) => {
            let (atts, cids) = restored_attachments(&r.attachments);
            (
                r.message.subject.clone(),
                r.message.internet_message_id.clone().unwrap_or_default(),
                r.message.sent.map(|t| t.timestamp()),
                r.message.received.map(|t| t.timestamp()),
                atts,
                cids,
            )
        }
        (None, Some(spec)) => {
            let (atts, cids) = spec_attachments(spec);
            (
                spec.subject.clone(),
                spec.internet_message_id.clone(),
                Some(spec.sent.timestamp()),
                Some(spec.received.timestamp()),
                atts,
                cids,
            )
        }
        (None, None) => panic!("message {} has neither a spec nor a restore", item.id),
    };
    let imid = imid
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    (
        imid,
        format!(
            "subject={subject:?} read={} draft={} flag={:?} cats={:?} received={received:?} sent={sent:?} atts={atts:?} cids={cids:?}",
            mail.is_read, mail.is_draft, mail.flag, mail.categories,
        ),
    )
}

/// Source messages (optionally only some) must appear exactly once under
/// `prefix + folder path` in the target, identical in everything that counts.
fn assert_restored(
    source: &MailboxDump,
    target: &MailboxDump,
    prefix: &str,
    only: impl Fn(&ItemDump) -> bool,
) {
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in source.items.iter().filter(|m| only(m)) {
        let path = if prefix.is_empty() {
            m.folder_path.clone()
        } else {
            format!("{prefix}/{}", m.folder_path)
        };
        let (imid, print) = fingerprint(m);
        want.entry(format!("{path}\u{0}{imid}"))
            .or_default()
            .push(print);
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &target.items {
        if prefix.is_empty() || m.folder_path.starts_with(&format!("{prefix}/")) {
            let (imid, print) = fingerprint(m);
            got.entry(format!("{}\u{0}{imid}", m.folder_path))
                .or_default()
                .push(print);
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
    for m in &target.items {
        if m.folder_path.starts_with(prefix) && !m.folder_path.contains("Drafts") {
            assert!(
                !m.mail().is_some_and(|x| x.is_draft),
                "restored message {} is a draft",
                m.id
            );
        }
    }
}

/// Writes whose answers get lost, or that never happen although the caller cannot tell:
/// what a restore must absorb without duplicating or losing anything.
fn script_faults(tenant: &MemoryTenant) {
    tenant.fail_next(Op::CreateMessage, 2, Fault::LoseAnswer);
    tenant.fail_next(Op::CreateMessage, 1, Fault::Unsent);
    tenant.fail_next(Op::AddAttachment, 1, Fault::LoseAnswer);
    tenant.fail_next(Op::MarkComplete, 1, Fault::LoseAnswer);
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
    let env = env(4, 40).await;
    let us = users(&env);
    let (a, b) = (&us[0], &us[1]);
    backup(&env, a).await;
    let before_b = env.tenant.dump(b).unwrap();
    script_faults(&env.tenant);
    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    let summary = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.tenant.clear_faults();
    assert!(summary.complete, "{summary:#?}");
    let source = env.tenant.dump(a).unwrap();
    assert_eq!(summary.created as usize, source.items.len());
    let root = summary.root.clone().unwrap();
    assert!(root.starts_with("Restore-"));
    let target = env.tenant.dump(b).unwrap();
    assert_restored(&source, &target, &root, |_| true);
    // Nothing outside the restore root changed.
    let outside = |d: &MailboxDump| {
        d.items
            .iter()
            .filter(|m| !m.folder_path.starts_with(&root))
            .count()
    };
    assert_eq!(outside(&target), outside(&before_b));
    // Restored messages carry the mark with the original id.
    let m = target
        .items
        .iter()
        .find(|m| m.folder_path.starts_with(&root))
        .unwrap();
    let mark = &m.restored.as_ref().unwrap().mark;
    assert!(source.items.iter().any(|s| s.id == mark.source_id));
    // An item attachment and an inline image were among them.
    let restored = |f: &dyn Fn(&RestoreAttachment) -> bool| {
        target.items.iter().any(|m| {
            m.folder_path.starts_with(&root)
                && m.restored
                    .as_ref()
                    .is_some_and(|r| r.attachments.iter().any(f))
        })
    };
    assert!(restored(&|a| matches!(a, RestoreAttachment::Item { .. })));
    assert!(restored(&|a| matches!(
        a,
        RestoreAttachment::File {
            is_inline: true,
            ..
        }
    )));

    // Running the same restore again writes nothing new.
    let again = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(again.complete);
    assert_eq!(again.created, 0);
    assert_eq!(again.skipped as usize, source.items.len());
    assert_restored(&source, &env.tenant.dump(b).unwrap(), &root, |_| true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_restore_brings_back_only_deleted_messages() {
    let env = env(2, 30).await;
    let a = users(&env)[0].clone();
    backup(&env, &a).await;
    let original = env.tenant.dump(&a).unwrap();
    let deleted: Vec<_> = original
        .items
        .iter()
        .step_by(5)
        .map(|m| m.id.clone())
        .collect();
    for id in &deleted {
        env.tenant.delete_item(&a, id).unwrap();
    }
    let mut opts = RestoreOptions::new(latest(&a));
    opts.destination = Destination::InPlace;
    env.tenant.fail_next(Op::CreateMessage, 2, Fault::Unsent);
    let summary = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.tenant.clear_faults();
    assert!(summary.complete, "{summary:#?}");
    assert_eq!(summary.created as usize, deleted.len());
    assert_eq!(
        summary.skipped as usize,
        original.items.len() - deleted.len()
    );
    let after = env.tenant.dump(&a).unwrap();
    assert_eq!(after.items.len(), original.items.len());
    assert_restored(&original, &after, "", |_| true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_at_several_points_and_rerun_has_no_duplicates_and_no_gaps() {
    let env = env(2, 30).await;
    let us = users(&env);
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
    let source = env.tenant.dump(a).unwrap();
    assert_restored(
        &source,
        &env.tenant.dump(b).unwrap(),
        done.root.as_deref().unwrap(),
        |_| true,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_attachments_are_added_after_the_create_and_survive_failures_mid_way() {
    let env = env(2, 20).await;
    let us = users(&env);
    let (a, b) = (&us[0], &us[1]);
    // Deterministic large parts: a 5 MB file and a 3.5 MB inline image (both above what
    // a create may carry; the image must stay inline with its content id).
    let big = |n: usize, seed: u8| (0..n).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>();
    let mut msg = MessageSpec::text("large parts", "see attached");
    msg.body = BodySpec::Html("<p>logo <img src=\"cid:big@x\"></p>".into());
    msg.attachments = vec![
        AttachmentSpec::file(
            "big.bin",
            "application/octet-stream",
            big(5 * 1024 * 1024, 7),
        ),
        AttachmentSpec::inline_image("big.png", "big@x", big(3_500_000, 3)),
    ];
    env.tenant.add_message(a, "inbox", msg).unwrap();
    backup(&env, a).await;
    let source = env.tenant.dump(a).unwrap();
    let mut opts = RestoreOptions::new(latest(a));
    opts.target = Some(b.clone());
    // The first run loses an attachment upload for good: that message fails.
    env.tenant
        .fail_next(Op::AddAttachment, 1, Fault::Unavailable);
    let first = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.tenant.clear_faults();
    assert!(
        !first.complete,
        "a failed attachment upload leaves the run incomplete"
    );
    assert!(first.folders.iter().any(|f| !f.missing.is_empty()));
    let done = restore(&env, &opts, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    assert!(done.complete, "{done:#?}");
    let target = env.tenant.dump(b).unwrap();
    assert_restored(&source, &target, done.root.as_deref().unwrap(), |_| true);
    assert!(target.items.iter().any(|m| {
        m.restored
            .as_ref()
            .is_some_and(|r| r.attachments.iter().any(|x| x.size() >= 3 * 1024 * 1024))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_no_longer_exists_restores_into_another_tenant_mailbox() {
    let env = env(2, 20).await;
    let a = users(&env)[0].clone();
    backup(&env, &a).await;
    let source = env.tenant.dump(&a).unwrap();
    // A different tenant where `a` never existed.
    let other = MemoryTenant::new();
    other.add_mailbox(
        "elsewhere@fabrikam.com",
        atlas_core::ports::MailboxKind::Licensed,
    );
    assert!(other.dump(&a).is_err());
    let b = "elsewhere@fabrikam.com".to_owned();
    let mut opts = RestoreOptions::new(latest(&a));
    opts.target = Some(b.clone());
    opts.folders = vec!["Inbox".into()];
    let p = plan(&env.repo, &opts).await.unwrap();
    let s = execute(
        &p,
        &env.repo,
        Arc::new(other.clone()),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(s.complete, "{s:#?}");
    assert_restored(
        &source,
        &other.dump(&b).unwrap(),
        s.root.as_deref().unwrap(),
        |m| m.folder_path == "Inbox" || m.folder_path.starts_with("Inbox/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_refused_before_anything_is_written() {
    let env = env(2, 10).await;
    let a = users(&env)[0].clone();
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
    opts.target = Some("nomailbox@contoso.com".into());
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
    let env = env(2, 10).await;
    let us = users(&env);
    backup(&env, &us[0]).await;
    let before = env.tenant.dump(&us[1]).unwrap();
    env.tenant.deny_writes(true);
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
    let after = env.tenant.dump(&us[1]).unwrap();
    assert_eq!(after.folders.len(), before.folders.len());
    assert_eq!(after.items.len(), before.items.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_fails_only_its_message_and_the_summary_is_partial() {
    let env = env(2, 20).await;
    let us = users(&env);
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
    let key = atlas_core::ports::StoreKey::new(loc.pack.store_key()).unwrap();
    let store: &Arc<dyn BlobStore> = &env.store;
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    let at = loc.offset as usize + loc.length as usize / 2;
    bytes[at] ^= 0x40;
    store
        .put(&key, bytes.into(), PutOptions::OVERWRITE)
        .await
        .unwrap();

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
    let source = env.tenant.dump(a).unwrap();
    let victim_imid = victim
        .internet_message_id
        .clone()
        .unwrap()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    assert_restored(
        &source,
        &env.tenant.dump(b).unwrap(),
        s.root.as_deref().unwrap(),
        |m| {
            (m.folder_path == "Inbox" || m.folder_path.starts_with("Inbox/"))
                && m.spec.as_ref().unwrap().internet_message_id != victim_imid
        },
    );
}

/// A target whose `list_items` fails on the given call numbers (1-based) and otherwise is
/// the memory tenant.
#[derive(Debug)]
struct ListFailsOn {
    inner: MemoryTenant,
    calls: AtomicU64,
    fail: Vec<u64>,
}

#[async_trait::async_trait]
impl MailTarget for ListFailsOn {
    async fn resolve_mailbox(&self, a: &str) -> Result<MailboxId, TargetError> {
        MailTarget::resolve_mailbox(&self.inner, a).await
    }
    async fn check_write_access(&self, m: &MailboxId) -> Result<(), TargetError> {
        self.inner.check_write_access(m).await
    }
    async fn well_known_folder(
        &self,
        m: &MailboxId,
        w: &str,
    ) -> Result<Option<atlas_core::ports::TargetFolder>, TargetError> {
        self.inner.well_known_folder(m, w).await
    }
    async fn ensure_folder(
        &self,
        m: &MailboxId,
        p: Option<&atlas_core::model::FolderId>,
        n: &str,
    ) -> Result<atlas_core::ports::TargetFolder, TargetError> {
        self.inner.ensure_folder(m, p, n).await
    }
    async fn list_items(
        &self,
        m: &MailboxId,
        f: &atlas_core::model::FolderId,
    ) -> Result<Vec<atlas_core::ports::TargetItem>, TargetError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail.contains(&n) {
            return Err(TargetError::Unavailable("listing failed".into()));
        }
        self.inner.list_items(m, f).await
    }
    async fn create_message(
        &self,
        m: &MailboxId,
        f: &atlas_core::model::FolderId,
        msg: &atlas_core::ports::RestoreMessage,
        a: &[RestoreAttachment],
        mark: &atlas_core::ports::RestoreMark,
        complete: bool,
    ) -> Result<atlas_core::model::ItemId, TargetError> {
        self.inner
            .create_message(m, f, msg, a, mark, complete)
            .await
    }
    async fn list_attachments(
        &self,
        m: &MailboxId,
        i: &atlas_core::model::ItemId,
    ) -> Result<Vec<atlas_core::ports::TargetAttachment>, TargetError> {
        self.inner.list_attachments(m, i).await
    }
    async fn add_attachment(
        &self,
        m: &MailboxId,
        i: &atlas_core::model::ItemId,
        a: &RestoreAttachment,
    ) -> Result<(), TargetError> {
        self.inner.add_attachment(m, i, a).await
    }
    async fn mark_complete(
        &self,
        m: &MailboxId,
        i: &atlas_core::model::ItemId,
        msg: &atlas_core::ports::RestoreMessage,
    ) -> Result<(), TargetError> {
        self.inner.mark_complete(m, i, msg).await
    }
    fn inline_attachment_budget(&self) -> u64 {
        self.inner.inline_attachment_budget()
    }
}

/// A restore printed "1 failed" and exited 0: a create whose answer was lost, and whose
/// check could not list the folder, is counted as failed — the message was created all
/// the same, so the folder verifies — and such a summary must not be complete.
#[tokio::test]
async fn a_failed_message_makes_the_summary_partial_even_when_the_folder_verifies() {
    let env = env(2, 10).await;
    let a = users(&env)[0].clone();
    backup(&env, &a).await;
    let victim = env.tenant.dump(&a).unwrap().items[0].clone();
    env.tenant.delete_item(&a, &victim.id).unwrap();
    let mut opts = RestoreOptions::new(latest(&a));
    opts.destination = Destination::InPlace;
    opts.message = Some(victim.id.to_string());
    let p = plan(&env.repo, &opts).await.unwrap();
    assert_eq!(p.messages, 1);
    // Calls of list_items: 1 before writing, 2 the check after the lost answer, 3 the
    // verification.
    let target = Arc::new(ListFailsOn {
        inner: env.tenant.clone(),
        calls: AtomicU64::new(0),
        fail: vec![2],
    });
    env.tenant
        .fail_next(Op::CreateMessage, 1, Fault::LoseAnswer);
    let s = execute(&p, &env.repo, target, &NullReporter, &Cancel::new())
        .await
        .unwrap();
    env.tenant.clear_faults();
    assert_eq!(s.failed, 1, "{s:#?}");
    assert!(!s.complete, "{s:#?}");
    assert!(s.is_partial());
    // The message is there once; a rerun finds it and completes the restore.
    let again = execute(
        &p,
        &env.repo,
        Arc::new(env.tenant.clone()),
        &NullReporter,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert!(again.complete, "{again:#?}");
    assert_eq!(again.created, 0);
}
