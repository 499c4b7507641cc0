//! forget / delete: after random sequences of backups and forgets every remaining snapshot
//! verifies and exports exactly; delete and purge leave consistent repositories.

use std::collections::BTreeMap;

use atlas_core::model::{MailboxId, SnapshotId};
use atlas_core::ports::NullReporter;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{ExportFormat, SaveOptions, write_eml_zip};
use atlas_core::service::retention::{
    DeleteTarget, ForgetOptions, KeepPolicy, execute_delete, execute_forget, plan_delete,
    plan_forget,
};
use atlas_core::service::verify::{ContentCheck, ReadData, VerifyOptions, VerifyScope, verify};
use chrono::Duration;
use rand::{Rng, SeedableRng};
use std::io::Read;

use crate::services::common::{Msg, backup_folders, new_repo, sample_folders, t0};

/// Export a snapshot and return entry name → bytes.
async fn export(repo: &atlas_core::repo::Repository, id: SnapshotId) -> BTreeMap<String, Vec<u8>> {
    let opts = SaveOptions {
        snapshot: SnapshotSelector::Id(id),
        folder: None,
        message: None,
        kind: None,
        format: ExportFormat::EmlZip,
        skip_verify: false,
        reporter: std::sync::Arc::new(atlas_core::ports::NullReporter),
    };
    let (_, cur) = write_eml_zip(repo, &opts, std::io::Cursor::new(Vec::new()), "mem")
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(cur).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        out.insert(f.name().to_owned(), v);
    }
    out
}

#[tokio::test]
async fn random_backups_and_forgets_keep_what_the_policy_keeps_intact() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (_store, repo) = new_repo().await;
    let mbs = [
        MailboxId::new("a@contoso.com"),
        MailboxId::new("b@contoso.com"),
    ];
    let mut expected: BTreeMap<SnapshotId, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut when = t0();
    for round in 0..12 {
        when += Duration::hours(rng.gen_range(1..40));
        let mb = &mbs[rng.gen_range(0..2)];
        // Each round changes the mailbox a little: some messages go, one new one comes.
        let mut folders = sample_folders();
        folders[0].1.retain(|_| rng.gen_bool(0.7));
        folders[0].1.push(Msg {
            id: format!("AAMk-round-{round}"),
            subject: "Round",
            from: "x@contoso.com",
            text: Some(format!("round {round}\r\n")),
            html: None,
            attachments: vec![],
            received: when,
        });
        let id = backup_folders(&repo, mb, when, &folders, rng.gen_bool(0.5)).await;
        expected.insert(id, export(&repo, id).await);
        if rng.gen_bool(0.4) {
            let plan = plan_forget(
                &repo,
                &ForgetOptions {
                    policy: KeepPolicy {
                        last: Some(rng.gen_range(1..3)),
                        daily: Some(rng.gen_range(0..3)),
                        ..KeepPolicy::default()
                    },
                    mailboxes: Vec::new(),
                    allow_empty: false,
                },
            )
            .await
            .unwrap();
            let gone: Vec<SnapshotId> = plan.removals().collect();
            let sum = execute_forget(&repo, &plan).await.unwrap();
            assert_eq!(sum.snapshots_removed, gone.len());
            for g in gone {
                expected.remove(&g);
            }
        }
    }
    let remaining: Vec<SnapshotId> = repo
        .list_all_snapshots()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        remaining
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        expected.keys().copied().collect()
    );
    let v = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await
    .unwrap();
    assert!(v.is_ok(), "{:?}", v.damage);
    for (id, files) in &expected {
        assert_eq!(&export(&repo, *id).await, files);
    }
}

#[tokio::test]
async fn forget_refuses_an_empty_policy_and_unknown_mailboxes() {
    let (_store, repo) = new_repo().await;
    assert!(plan_forget(&repo, &ForgetOptions::default()).await.is_err());
    let r = plan_forget(
        &repo,
        &ForgetOptions {
            policy: KeepPolicy {
                last: Some(1),
                ..KeepPolicy::default()
            },
            mailboxes: vec![MailboxId::new("ghost@contoso.com")],
            allow_empty: false,
        },
    )
    .await;
    assert!(r.is_err());
}

/// `forget --keep-last 0` planned to delete every snapshot while `forget` with no rule was
/// refused. A policy that keeps nothing is refused the same way unless the caller says it
/// means it (`allow_empty`); `within` always keeps the newest, so it is never "nothing".
#[tokio::test]
async fn forget_refuses_a_policy_that_keeps_nothing_unless_allowed() {
    let (_store, repo) = new_repo().await;
    let a = MailboxId::new("a@contoso.com");
    backup_folders(&repo, &a, t0(), &sample_folders(), false).await;
    backup_folders(
        &repo,
        &a,
        t0() + Duration::days(1),
        &sample_folders(),
        false,
    )
    .await;
    let nothing = [
        KeepPolicy {
            last: Some(0),
            ..KeepPolicy::default()
        },
        KeepPolicy {
            last: Some(0),
            daily: Some(0),
            weekly: Some(0),
            monthly: Some(0),
            yearly: Some(0),
            within: None,
        },
    ];
    for policy in nothing {
        let opts = ForgetOptions {
            policy,
            mailboxes: Vec::new(),
            allow_empty: false,
        };
        let err = plan_forget(&repo, &opts).await.unwrap_err();
        assert!(
            matches!(err, atlas_core::Error::InvalidInput { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--allow-empty"), "{err}");
        let plan = plan_forget(
            &repo,
            &ForgetOptions {
                allow_empty: true,
                ..opts
            },
        )
        .await
        .unwrap();
        assert_eq!(plan.removals().count(), 2, "allowed: everything goes");
    }
    // Rules that keep something are not affected.
    for policy in [
        KeepPolicy {
            last: Some(0),
            daily: Some(1),
            ..KeepPolicy::default()
        },
        KeepPolicy {
            within: Some(Duration::zero()),
            ..KeepPolicy::default()
        },
    ] {
        let plan = plan_forget(
            &repo,
            &ForgetOptions {
                policy,
                mailboxes: Vec::new(),
                allow_empty: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(plan.mailboxes[0].keep.len(), 1, "{policy:?}");
    }
}

#[tokio::test]
async fn delete_snapshot_mailbox_and_purge() {
    let (store, repo) = new_repo().await;
    let a = MailboxId::new("a@contoso.com");
    let b = MailboxId::new("b@contoso.com");
    let a1 = backup_folders(&repo, &a, t0(), &sample_folders(), false).await;
    let a2 = backup_folders(
        &repo,
        &a,
        t0() + Duration::days(1),
        &sample_folders(),
        false,
    )
    .await;
    let b1 = backup_folders(&repo, &b, t0(), &sample_folders(), false).await;

    let plan = plan_delete(&repo, &DeleteTarget::Snapshot(a1))
        .await
        .unwrap();
    assert_eq!(plan.snapshots.len(), 1);
    execute_delete(
        &repo,
        &plan,
        "test",
        &atlas_core::ports::SystemClock,
        &NullReporter,
    )
    .await
    .unwrap();
    assert!(repo.load_snapshot(a1).await.is_err());
    assert!(repo.load_snapshot(a2).await.is_ok());
    assert!(
        plan_delete(&repo, &DeleteTarget::Snapshot(a1))
            .await
            .is_err()
    );

    let plan = plan_delete(&repo, &DeleteTarget::Mailbox(a.clone()))
        .await
        .unwrap();
    assert_eq!(plan.snapshots.len(), 1);
    let sum = execute_delete(
        &repo,
        &plan,
        "test",
        &atlas_core::ports::SystemClock,
        &NullReporter,
    )
    .await
    .unwrap();
    assert!(sum.is_complete());
    assert_eq!(repo.list_mailboxes().await.unwrap(), vec![b.clone()]);
    let v = verify(
        &repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await
    .unwrap();
    assert!(v.is_ok() && v.snapshots == 1, "{:?}", v.damage);
    assert!(repo.load_snapshot(b1).await.is_ok());

    let plan = plan_delete(&repo, &DeleteTarget::Purge).await.unwrap();
    assert!(plan.purge && plan.objects > 0);
    execute_delete(
        &repo,
        &plan,
        "test",
        &atlas_core::ports::SystemClock,
        &NullReporter,
    )
    .await
    .unwrap();
    assert!(store.list("").await.unwrap().is_empty());
    assert!(matches!(
        atlas_core::repo::Repository::open(
            store,
            crate::services::common::TENANT,
            &crate::services::common::passphrase()
        )
        .await,
        Err(atlas_core::Error::NotInitialized { .. })
    ));
}

/// A purge deleted every object in the store, Atlas's or not: a repository in a directory
/// (or a bucket) that also holds other things took them along. Only the repository's own
/// keys go; the rest is left and not counted in the plan.
#[tokio::test]
async fn purge_removes_only_the_repository_and_never_objects_that_are_not_atlas() {
    use atlas_core::ports::{PutOptions, StoreKey};
    let (store, repo) = new_repo().await;
    let a = MailboxId::new("a@contoso.com");
    backup_folders(&repo, &a, t0(), &sample_folders(), false).await;
    let before = repo.object_count().await.unwrap();
    let foreign = [
        "notes.txt",
        "photos/cat.jpg",
        "_metadata.json",
        "packsandbox",
    ];
    for key in foreign {
        store
            .put(
                &StoreKey::new(key).unwrap(),
                bytes::Bytes::from_static(b"not atlas"),
                PutOptions::CREATE,
            )
            .await
            .unwrap();
    }
    let plan = plan_delete(&repo, &DeleteTarget::Purge).await.unwrap();
    assert_eq!(
        plan.objects, before,
        "only the repository's objects are counted"
    );
    let sum = execute_delete(
        &repo,
        &plan,
        "test",
        &atlas_core::ports::SystemClock,
        &NullReporter,
    )
    .await
    .unwrap();
    assert!(sum.is_complete());
    let mut left: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .iter()
        .map(|m| m.key.as_str().to_owned())
        .collect();
    left.sort_unstable();
    let mut expected: Vec<String> = foreign.iter().map(|s| (*s).to_owned()).collect();
    expected.sort_unstable();
    assert_eq!(left, expected);
    for key in foreign {
        assert_eq!(
            &store.get(&StoreKey::new(key).unwrap()).await.unwrap()[..],
            b"not atlas"
        );
    }
}
