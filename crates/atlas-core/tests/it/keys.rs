//! Key creation, opening errors and passphrase changes.

use std::sync::Arc;

use atlas_core::Error;
use atlas_core::model::MailboxId;
use atlas_core::ports::{PutOptions, StoreKey};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use bytes::Bytes;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_distinguishes_not_initialized_wrong_passphrase_and_corrupt() {
    let store = memory();
    let err = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotInitialized { .. }), "{err:?}");
    new_repo(store.clone()).await;
    // A repository written before root objects had spare copies: damage to them is fatal
    // (`damaged_root_objects_open_through_their_spares` covers the spares).
    for spare in ["_meta/dek.spare", "_meta/config.spare"] {
        store.delete(&StoreKey::new(spare).unwrap()).await.unwrap();
    }
    let err = Repository::open(store.clone(), TENANT, &Passphrase::new("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");

    let key = StoreKey::new("_meta/dek.enc").unwrap();
    let good = store.get(&key).await.unwrap();
    let mut bad = good.to_vec();
    bad[0] = 7;
    store
        .put(&key, Bytes::from(bad), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let err = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 7, .. }),
        "{err:?}"
    );
    store
        .put(&key, Bytes::from_static(b"garbage!"), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let err = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion { .. } | Error::Corrupt { .. }
        ),
        "{err:?}"
    );
    store.put(&key, good, PutOptions::OVERWRITE).await.unwrap();

    let cfg = StoreKey::new("config").unwrap();
    let mut bytes = store.get(&cfg).await.unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store
        .put(&cfg, Bytes::from(bytes), PutOptions::OVERWRITE)
        .await
        .unwrap();
    let err = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AuthenticationFailed { ref key } if key == "config"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_inits_end_with_one_key() {
    let store = memory();
    let (a, b, c) = tokio::join!(
        new_repo(store.clone()),
        new_repo(store.clone()),
        new_repo(store.clone())
    );
    assert_eq!(a.data_key().expose_secret(), b.data_key().expose_secret());
    assert_eq!(a.data_key().expose_secret(), c.data_key().expose_secret());
    assert_eq!(a.config().unwrap().repo_id, c.config().unwrap().repo_id);
    let opened = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    assert_eq!(
        opened.data_key().expose_secret(),
        a.data_key().expose_secret()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_passphrase_rewraps_and_keeps_data() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let mb = MailboxId::new("a@example.com");
    let id = backup(&repo, &mb, clock_at(t0()), SMALL_BACKUP)
        .await
        .unwrap();
    let objects_before = store.list("packs/").await.unwrap();

    let new = Passphrase::new("a brand new passphrase");
    repo.change_passphrase(&new, KdfChoice::ARGON2ID_MINIMUM)
        .await
        .unwrap();
    let err = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
    let reopened = Repository::open(store.clone(), TENANT, &new).await.unwrap();
    assert!(reopened.verify_snapshot(id).await.unwrap().is_ok());
    assert_eq!(store.list("packs/").await.unwrap(), objects_before);

    // And back to scrypt.
    reopened
        .change_passphrase(&passphrase(), KdfChoice::SCRYPT_MINIMUM)
        .await
        .unwrap();
    Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    let weak = KdfChoice::Scrypt {
        log_n: 12,
        r: 8,
        p: 1,
    };
    assert!(matches!(
        reopened.change_passphrase(&new, weak).await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_bucket_gets_a_config_from_open_or_init() {
    let store = memory();
    // Only a key, as TypeScript Atlas leaves it.
    let repo = new_repo(store.clone()).await;
    for key in ["config", "_meta/config.spare", "_meta/dek.spare"] {
        store.delete(&StoreKey::new(key).unwrap()).await.unwrap();
    }
    let legacy = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    assert!(legacy.config().is_none());
    let err = legacy
        .begin_backup(&MailboxId::new("a@b.c"), "h", clock_at(t0()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotInitialized { .. }), "{err:?}");
    let upgraded =
        Repository::open_or_init(store, TENANT, &passphrase(), KdfChoice::SCRYPT_MINIMUM)
            .await
            .unwrap();
    assert!(upgraded.config().is_some());
    assert_eq!(
        upgraded.data_key().expose_secret(),
        repo.data_key().expose_secret()
    );
    let _: Arc<_> = Arc::new(upgraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_root_objects_open_through_their_spares() {
    use atlas_core::repo::RootObject;
    let store = memory();
    let repo = new_repo(store.clone()).await;
    let id = backup(
        &repo,
        &MailboxId::new("a@example.com"),
        clock_at(t0()),
        SMALL_BACKUP,
    )
    .await
    .unwrap();
    assert!(repo.check_root_objects().await.is_empty());
    let key = StoreKey::new("_meta/dek.enc").unwrap();
    let cfg = StoreKey::new("config").unwrap();
    let (good_key, good_cfg) = (
        store.get(&key).await.unwrap(),
        store.get(&cfg).await.unwrap(),
    );
    // Each damage in turn: a flipped byte, a missing object.
    for (object, good) in [(&key, &good_key), (&cfg, &good_cfg)] {
        let mut bad = good.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        for damage in [Some(Bytes::from(bad)), None] {
            match &damage {
                Some(b) => store.put(object, b.clone(), PutOptions::OVERWRITE).await,
                None => store.delete(object).await,
            }
            .unwrap();
            let opened = Repository::open(store.clone(), TENANT, &passphrase())
                .await
                .unwrap_or_else(|e| panic!("{object} {damage:?}: {e:?}"));
            let damaged = opened.root_damage();
            assert_eq!(damaged.len(), 1, "{object}: {damaged:?}");
            assert_eq!(damaged[0].object, object.as_str());
            assert!(damaged[0].spare_used);
            assert_eq!(
                damaged[0].what,
                if *object == key {
                    RootObject::Key
                } else {
                    RootObject::Config
                }
            );
            let problems = opened.check_root_objects().await;
            assert_eq!(problems.len(), 1, "{object}: {problems:?}");
            assert_eq!(problems[0].object, object.as_str());
            // Still fully readable.
            assert!(opened.verify_snapshot(id).await.unwrap().is_ok());
            assert_eq!(
                opened.config().map(|c| c.repo_id),
                repo.config().map(|c| c.repo_id)
            );
            store
                .put(object, good.clone(), PutOptions::OVERWRITE)
                .await
                .unwrap();
        }
    }
    // A wrong passphrase is still a wrong passphrase (the spare does not open either).
    let err = Repository::open(store.clone(), TENANT, &Passphrase::new("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_never_recreates_a_lost_config_of_a_repository_with_data() {
    let store = memory();
    let repo = new_repo(store.clone()).await;
    backup(
        &repo,
        &MailboxId::new("a@example.com"),
        clock_at(t0()),
        SMALL_BACKUP,
    )
    .await
    .unwrap();
    // Both copies gone (a repository from before spares, or both deleted).
    for key in ["config", "_meta/config.spare"] {
        store.delete(&StoreKey::new(key).unwrap()).await.unwrap();
    }
    let err = Repository::open_or_init(
        store.clone(),
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NeedsRepair { .. }), "{err:?}");
    assert!(
        store
            .head(&StoreKey::new("config").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // A repository opened for reading names the loss.
    let opened = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    let problems = opened.check_root_objects().await;
    assert!(
        problems
            .iter()
            .any(|p| p.object == "config" && matches!(p.error, Error::Missing { .. })),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_add_spares_to_a_repository_written_before_they_existed() {
    let store = memory();
    new_repo(store.clone()).await;
    for key in ["_meta/dek.spare", "_meta/config.spare"] {
        store.delete(&StoreKey::new(key).unwrap()).await.unwrap();
    }
    let read = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    assert!(
        read.check_root_objects().await.is_empty(),
        "no spare is no damage"
    );
    Repository::open_or_init(
        store.clone(),
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .get(&StoreKey::new("_meta/dek.spare").unwrap())
            .await
            .unwrap(),
        store
            .get(&StoreKey::new("_meta/dek.enc").unwrap())
            .await
            .unwrap()
    );
    let reopened = Repository::open(store.clone(), TENANT, &passphrase())
        .await
        .unwrap();
    store
        .delete(&StoreKey::new("config").unwrap())
        .await
        .unwrap();
    let through_spare = Repository::open(store, TENANT, &passphrase())
        .await
        .unwrap();
    assert_eq!(
        through_spare.config().map(|c| c.repo_id),
        reopened.config().map(|c| c.repo_id)
    );
}
