//! Mailbox leases.

use atlas_core::Error;
use atlas_core::model::MailboxId;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_per_mailbox_and_stale_leases_are_broken_explicitly() {
    let repo = new_repo(memory()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let first = repo
        .begin_backup(&mb, "host-a:1", clock.clone())
        .await
        .unwrap();
    let err = repo
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap_err();
    match err {
        Error::LeaseHeld { owner, expires } => {
            assert_eq!(owner, "host-a:1");
            assert_eq!(expires, t0() + chrono::Duration::seconds(60));
        }
        other => panic!("{other:?}"),
    }
    // Another mailbox is independent.
    let other = repo
        .begin_backup(&MailboxId::new("b@example.com"), "host-b:2", clock.clone())
        .await
        .unwrap();
    other.release().await.unwrap();

    // A live lease cannot be broken.
    assert!(matches!(
        repo.break_lease(&mb, clock.as_ref()).await,
        Err(Error::LeaseHeld { .. })
    ));
    // Holder dies; the lease expires; a new writer must break it explicitly.
    drop(first);
    clock.set(t0() + chrono::Duration::seconds(61));
    let err = repo
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseStale { ref owner, .. } if owner == "host-a:1"),
        "{err:?}"
    );
    let broken = repo
        .break_lease(&mb, clock.as_ref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(broken.owner, "host-a:1");
    assert!(
        repo.break_lease(&mb, clock.as_ref())
            .await
            .unwrap()
            .is_none()
    );
    let s = repo
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap();
    s.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_renews_and_a_broken_lease_cannot_commit() {
    let repo = new_repo(memory()).await;
    let mb = MailboxId::new("a@example.com");
    let clock = clock_at(t0());
    let mut s = repo
        .begin_backup(&mb, "host-a:1", clock.clone())
        .await
        .unwrap();
    clock.set(t0() + chrono::Duration::seconds(40));
    s.flush().await.unwrap();
    assert_eq!(s.lease_expires(), t0() + chrono::Duration::seconds(100));
    assert_eq!(
        repo.lease_info(&mb).await.unwrap().unwrap().expires,
        s.lease_expires()
    );

    // Stalled past expiry; an operator breaks it and another writer takes over.
    clock.set(t0() + chrono::Duration::seconds(200));
    repo.break_lease(&mb, clock.as_ref()).await.unwrap();
    let other = repo
        .begin_backup(&mb, "host-b:2", clock.clone())
        .await
        .unwrap();
    let err = s.renew_lease().await.unwrap_err();
    assert!(
        matches!(err, Error::LeaseLost { ref owner } if owner == "host-b:2"),
        "{err:?}"
    );
    other.release().await.unwrap();
}
