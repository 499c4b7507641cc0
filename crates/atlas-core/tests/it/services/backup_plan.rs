//! `BackupPlan` on the memory tenant: which mailboxes and folders a backup covers,
//! checked before anything is written; the skip-versus-fail rule; Object Lock refused up
//! front by a store that cannot enforce it.

use std::sync::Arc;

use atlas_core::Error;
use atlas_core::model::MailboxId;
use atlas_core::ports::{LockMode, MailboxKind, NullReporter, Reporter, Retention, SourceError};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{
    BackupPlan, BackupReport, BackupRequest, MailboxSelection, SkipReason, Verdict, execute, plan,
};

use super::backup::{Env, assert_matches_tenant, clock, env, opts};

fn request(mailboxes: MailboxSelection) -> BackupRequest {
    let mut r = BackupRequest::new(mailboxes);
    r.options = opts();
    r
}

async fn run(env: &Env, planned: &BackupPlan) -> BackupReport {
    execute(
        planned,
        &env.repo,
        env.source.clone(),
        clock(),
        Arc::new(NullReporter) as Arc<dyn Reporter>,
        Arc::new(Cancel::new()),
    )
    .await
    .unwrap()
}

async fn nothing_written(env: &Env) {
    for address in env.tenant.addresses() {
        assert!(
            env.repo
                .latest_snapshot(&MailboxId::new(&address))
                .await
                .unwrap()
                .is_none(),
            "{address} has a snapshot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_backup_takes_the_chosen_kinds_and_skips_the_rest() {
    let env = env(2, 12).await;
    env.tenant
        .add_mailbox("shared@contoso.com", MailboxKind::Shared);
    let mut req = request(MailboxSelection::Tenant {
        kinds: vec![MailboxKind::Licensed],
    });
    req.mailboxes_in_parallel = 0;
    let planned = plan(env.source.as_ref(), &req).await.unwrap();
    assert_eq!(planned.mailboxes_in_parallel, 1, "at least one at a time");
    let mut chosen: Vec<&str> = planned
        .mailboxes
        .iter()
        .map(atlas_core::ports::SourceMailbox::address)
        .collect();
    chosen.sort_unstable();
    assert_eq!(chosen, ["user1@contoso.com", "user2@contoso.com"]);
    let mut skipped: Vec<(&str, SkipReason)> = planned
        .skipped
        .iter()
        .map(|s| (s.mailbox.as_str(), s.reason))
        .collect();
    skipped.sort_unstable_by_key(|s| s.0);
    assert_eq!(
        skipped,
        [
            (
                "nomailbox@contoso.com",
                SkipReason::KindNotSelected(MailboxKind::NoMailbox)
            ),
            (
                "shared@contoso.com",
                SkipReason::KindNotSelected(MailboxKind::Shared)
            ),
        ]
    );

    let report = run(&env, &planned).await;
    assert_eq!(report.verdict(), Verdict::Complete);
    assert_eq!(report.outcomes.len(), 2);
    assert!(report.locks.is_empty());
    for address in chosen {
        assert_matches_tenant(&env, address).await;
    }
    assert!(
        env.repo
            .latest_snapshot(&MailboxId::new("shared@contoso.com"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn named_mailboxes_are_resolved_before_anything_is_written() {
    let env = env(2, 5).await;
    let err = plan(
        env.source.as_ref(),
        &request(MailboxSelection::Named(vec![
            "user1@contoso.com".into(),
            "nobody@contoso.com".into(),
        ])),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Source(SourceError::MailboxNotFound(_))),
        "{err}"
    );
    let err = plan(
        env.source.as_ref(),
        &request(MailboxSelection::Named(vec![
            "nomailbox@contoso.com".into(),
        ])),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Source(SourceError::MailboxNotEnabled(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains("no Exchange Online mailbox"),
        "{err}"
    );
}

/// `backup -f Inbx` exited 0, said every folder was fully captured and wrote a snapshot.
#[tokio::test]
async fn a_folder_filter_that_selects_nothing_is_refused_naming_near_matches() {
    let env = env(2, 5).await;
    for mailboxes in [
        MailboxSelection::Named(vec!["user1@contoso.com".into()]),
        MailboxSelection::tenant(),
    ] {
        let mut req = request(mailboxes.clone());
        req.options.folders = vec!["Inbox".into(), "Inbx".into()];
        let err = plan(env.source.as_ref(), &req).await.unwrap_err();
        let Error::InvalidInput { reason } = &err else {
            panic!("{mailboxes:?}: {err}");
        };
        assert!(
            reason.contains("Inbx") && reason.contains("did you mean Inbox"),
            "{reason}"
        );
        // Subfolders and bare names still select.
        req.options.folders = vec!["inbox/projects".into(), "Projects".into()];
        let planned = plan(env.source.as_ref(), &req).await.unwrap();
        assert!(!planned.mailboxes.is_empty());
    }
    nothing_written(&env).await;

    // A folder only one mailbox has is fine tenant-wide.
    env.tenant
        .add_folder(
            "user2@contoso.com",
            "Inbox",
            "Only here",
            atlas_core::model::ItemKind::Mail,
        )
        .unwrap();
    let mut req = request(MailboxSelection::tenant());
    req.options.folders = vec!["Only here".into()];
    let planned = plan(env.source.as_ref(), &req).await.unwrap();
    let report = run(&env, &planned).await;
    assert_eq!(report.verdict(), Verdict::Complete, "{report:#?}");
}

#[tokio::test]
async fn object_lock_on_a_store_that_cannot_lock_is_refused_before_anything_is_written() {
    let env = env(1, 5).await;
    let mut req = request(MailboxSelection::tenant());
    req.options.retention = Some(Retention {
        mode: LockMode::Governance,
        retain_until: "2030-01-01T00:00:00Z".parse().unwrap(),
    });
    let planned = plan(env.source.as_ref(), &req).await.unwrap();
    let err = execute(
        &planned,
        &env.repo,
        env.source.clone(),
        clock(),
        Arc::new(NullReporter) as Arc<dyn Reporter>,
        Arc::new(Cancel::new()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err}");
    nothing_written(&env).await;
}

#[tokio::test]
async fn one_failing_mailbox_makes_the_run_partial_not_failed() {
    let env = env(2, 5).await;
    let planned = plan(env.source.as_ref(), &request(MailboxSelection::tenant()))
        .await
        .unwrap();
    // Another writer holds the lease of one mailbox.
    let held = MailboxId::new("user2@contoso.com");
    let _session = env
        .repo
        .begin_backup(&held, "other-host/123", clock())
        .await
        .unwrap();
    let report = run(&env, &planned).await;
    assert_eq!(report.verdict(), Verdict::Partial, "{report:#?}");
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.mailbox.as_str())
        .collect();
    assert_eq!(failed, ["user2@contoso.com"]);
    assert_eq!(report.summaries().count(), 1);
}

/// `--shard I/N`: the N workers' plans split the tenant's selection (and its skipped
/// mailboxes) between them, each mailbox to exactly one, by its directory object id; each
/// plan says what share it took of how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_plans_split_the_selection_exactly_once() {
    use atlas_core::service::shard::{Shard, shard_key};

    let env = env(1, 1).await;
    for i in 0..30 {
        env.tenant
            .add_mailbox(&format!("user{i}@contoso.com"), MailboxKind::Licensed);
    }
    for i in 0..6 {
        env.tenant
            .add_mailbox(&format!("shared{i}@contoso.com"), MailboxKind::Shared);
    }
    let kinds = vec![MailboxKind::Licensed];
    let whole = plan(
        env.source.as_ref(),
        &request(MailboxSelection::Tenant {
            kinds: kinds.clone(),
        }),
    )
    .await
    .unwrap();
    assert!(whole.shard.is_none());
    let mut seen = std::collections::BTreeMap::new();
    let mut skipped = std::collections::BTreeSet::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let mut req = request(MailboxSelection::Tenant {
            kinds: kinds.clone(),
        });
        req.shard = Some(shard);
        let planned = plan(env.source.as_ref(), &req).await.unwrap();
        let taken = planned.shard.unwrap();
        assert_eq!(taken.shard, shard);
        assert_eq!(taken.selected, whole.mailboxes.len());
        assert_eq!(taken.mailboxes, planned.mailboxes.len());
        assert!(!planned.mailboxes.is_empty(), "shard {index} has work");
        for m in &planned.mailboxes {
            assert_eq!(Shard::of(shard_key(&m.id), 3), index);
            assert!(seen.insert(m.address().to_owned(), index).is_none());
        }
        for s in &planned.skipped {
            assert!(
                skipped.insert(s.mailbox.clone()),
                "{} skipped twice",
                s.mailbox
            );
        }
    }
    let all: Vec<String> = whole
        .mailboxes
        .iter()
        .map(|m| m.address().to_owned())
        .collect();
    assert_eq!(seen.len(), all.len());
    assert!(all.iter().all(|a| seen.contains_key(a)));
    let whole_skipped: std::collections::BTreeSet<String> =
        whole.skipped.iter().map(|s| s.mailbox.clone()).collect();
    assert_eq!(skipped, whole_skipped);
}
