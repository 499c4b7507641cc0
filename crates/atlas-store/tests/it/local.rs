//! `LocalStore` behaviour beyond the shared contract: layout on disk, temp files, error
//! mapping on real file systems, the limits of a directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use atlas_core::ports::{BlobStore, LockMode, PutOptions, Retention, StoreError, StoreKey};
use atlas_store::LocalStore;
use bytes::Bytes;

fn key(s: &str) -> StoreKey {
    StoreKey::new(s).expect("test keys are valid")
}

/// Every file under `root` whose name marks it as a temp file.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("readable test directory");
            if entry.file_type().expect("file type").is_dir() {
                pending.push(entry.path());
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".atlas~tmp~")
            {
                out.push(entry.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn keys_are_plain_files_one_directory_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("repo"));
    store
        .put(
            &key("data/user@contoso.com/abc"),
            Bytes::from_static(b"x"),
            PutOptions::CREATE,
        )
        .await
        .unwrap();
    let path = dir.path().join("repo/data/user@contoso.com/abc");
    assert_eq!(std::fs::read(path).unwrap(), b"x");
    assert!(
        store
            .describe()
            .contains(&dir.path().join("repo").display().to_string())
    );
    assert!(store.describe().starts_with("local directory "));
}

#[tokio::test]
async fn a_missing_root_is_an_empty_store_until_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/there");
    let store = LocalStore::new(&root);
    assert!(store.list("").await.unwrap().is_empty());
    assert!(store.head(&key("a")).await.unwrap().is_none());
    assert!(matches!(
        store.get(&key("a")).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete(&key("a")).await.unwrap();
    assert_eq!(store.cleanup_temp().await.unwrap(), 0);
    assert!(!root.exists(), "reads and deletes must not create the root");

    store
        .put(&key("a"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    assert!(root.join("a").is_file());
}

#[tokio::test]
async fn stale_temp_files_are_invisible_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store
        .put(
            &key("snap/one"),
            Bytes::from_static(b"1"),
            PutOptions::CREATE,
        )
        .await
        .unwrap();
    // What a writer killed between writing and publishing leaves behind.
    let stale = dir.path().join("snap/.atlas~tmp~0badc0ffee");
    std::fs::write(&stale, b"half a pack").unwrap();
    let stale_root = dir.path().join(".atlas~tmp~123");
    std::fs::write(&stale_root, b"").unwrap();

    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, ["snap/one"]);
    assert_eq!(store.list("snap/").await.unwrap().len(), 1);

    assert_eq!(store.cleanup_temp().await.unwrap(), 2);
    assert!(!stale.exists() && !stale_root.exists());
    assert_eq!(
        store.get(&key("snap/one")).await.unwrap(),
        Bytes::from_static(b"1")
    );
    assert_eq!(store.cleanup_temp().await.unwrap(), 0);
}

#[tokio::test]
async fn failed_puts_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store
        .put(&key("k"), Bytes::from_static(b"v"), PutOptions::CREATE)
        .await
        .unwrap();
    let err = store
        .put(&key("k"), Bytes::from(vec![1; 1 << 20]), PutOptions::CREATE)
        .await;
    assert!(matches!(err, Err(StoreError::AlreadyExists { .. })));
    let err = store
        .put(
            &key("k/under"),
            Bytes::from_static(b"x"),
            PutOptions::OVERWRITE,
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::Unsupported { .. })),
        "{err:?}"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn retention_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("repo"));
    let opts = PutOptions {
        retention: Some(Retention {
            mode: LockMode::Compliance,
            retain_until: far_future(),
        }),
        ..PutOptions::CREATE
    };
    let err = store
        .put(&key("locked"), Bytes::new(), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
    assert!(store.head(&key("locked")).await.unwrap().is_none());
}

fn far_future() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(4_000_000_000, 0).expect("a date in 2096 is representable")
}

/// A directory cannot hold `a` and `a/b` at once; both orders fail with a clear
/// `Unsupported` instead of `AlreadyExists` (which would mislead lease logic) or a raw
/// I/O error, and the existing object is untouched.
#[tokio::test]
async fn a_key_cannot_also_be_a_prefix_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    store
        .put(&key("a"), Bytes::from_static(b"file"), PutOptions::CREATE)
        .await
        .unwrap();
    let err = store
        .put(&key("a/b"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
    assert_eq!(
        store.get(&key("a")).await.unwrap(),
        Bytes::from_static(b"file")
    );
    assert!(store.head(&key("a/b")).await.unwrap().is_none());
    assert!(matches!(
        store.get(&key("a/b")).await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .put(&key("x/y"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    for opts in [PutOptions::CREATE, PutOptions::OVERWRITE] {
        let err = store.put(&key("x"), Bytes::new(), opts).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unsupported { .. }),
            "{opts:?}: {err:?}"
        );
    }
    assert!(
        store.head(&key("x")).await.unwrap().is_none(),
        "a directory is not an object"
    );
    assert!(matches!(
        store.get(&key("x")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_range(&key("x"), 0..0).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete(&key("x")).await.unwrap();
    assert!(
        store.head(&key("x/y")).await.unwrap().is_some(),
        "deleting `x` spares `x/y`"
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn delete_prunes_empty_directories_but_keeps_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let store = LocalStore::new(&root);
    store
        .put(&key("a/b/c/d"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    store
        .put(&key("a/keep"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap();
    store.delete(&key("a/b/c/d")).await.unwrap();
    assert!(
        !root.join("a/b").exists(),
        "empty a/b/c and a/b are removed"
    );
    assert!(root.join("a/keep").is_file());
    store.delete(&key("a/keep")).await.unwrap();
    assert!(!root.join("a").exists());
    assert!(root.is_dir(), "the root stays");
}

#[tokio::test]
async fn list_ignores_foreign_files_and_never_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    std::fs::write(root.join("d/not a key"), b"").unwrap();
    std::fs::write(root.join("d/ok"), b"12").unwrap();
    let store = LocalStore::new(&root);
    let keys: Vec<(String, u64)> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.key.to_string(), m.size))
        .collect();
    assert_eq!(keys, [("d/ok".to_string(), 2)]);
    assert!(store.list("../").await.unwrap().is_empty());
    assert!(store.list("d/../").await.unwrap().is_empty());
    assert!(store.list("d//").await.unwrap().is_empty());
}

/// Puts and deletes racing in one directory: deletes prune the directory a put is about
/// to write into, and the put must recreate it rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_survive_concurrent_directory_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for round in 0..40 {
                let k = key(&format!("shared/deep/w{worker}-{round}"));
                store
                    .put(&k, Bytes::from_static(b"x"), PutOptions::CREATE)
                    .await
                    .unwrap();
                assert!(store.head(&k).await.unwrap().is_some());
                store.delete(&k).await.unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert!(store.list("").await.unwrap().is_empty());
    assert!(temp_files(dir.path()).is_empty());
}

/// A tmpfs mounted for one test and unmounted when dropped (also on panic).
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    /// `None` when this process may not mount (not root, no CAP_SYS_ADMIN, not Linux).
    fn tmpfs(options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A real full disk: a 1 MiB tmpfs. Skipped (with a note) where mounting is not allowed;
/// the unit tests in `local.rs` cover the same mapping and cleanup through an injected
/// `ENOSPC` everywhere.
#[tokio::test]
async fn full_disk_is_storage_full_and_leaves_no_partial_object() {
    let Some(mount) = Mount::tmpfs("size=1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store = LocalStore::new(mount.path().join("repo"));
    let small = Bytes::from(vec![1u8; 256 * 1024]);
    store
        .put(&key("p/kept"), small.clone(), PutOptions::CREATE)
        .await
        .unwrap();

    let too_big = Bytes::from(vec![2u8; 1024 * 1024]);
    for (k, opts) in [
        ("p/new", PutOptions::CREATE),
        ("p/kept", PutOptions::OVERWRITE),
    ] {
        let err = store.put(&key(k), too_big.clone(), opts).await.unwrap_err();
        assert!(
            matches!(err, StoreError::StorageFull { .. }),
            "{k}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert!(store.head(&key("p/new")).await.unwrap().is_none());
    assert_eq!(
        store.get(&key("p/kept")).await.unwrap(),
        small,
        "old version intact"
    );
    assert!(
        temp_files(mount.path()).is_empty(),
        "no temp file after ENOSPC"
    );
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, ["p/kept"]);

    // Space freed: the same put now works.
    store.delete(&key("p/kept")).await.unwrap();
    store
        .put(
            &key("p/new"),
            Bytes::from(vec![3u8; 512 * 1024]),
            PutOptions::CREATE,
        )
        .await
        .unwrap();
}

/// A read-only file system: root bypasses permission bits, so `chmod` cannot produce an
/// access error here, but a read-only mount can. Skipped where mounting is not allowed.
#[tokio::test]
async fn read_only_file_system_is_access_denied() {
    let Some(mount) = Mount::tmpfs("size=1m,ro") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store = LocalStore::new(mount.path());
    let err = store
        .put(&key("a/b"), Bytes::new(), PutOptions::CREATE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(store.list("").await.unwrap().is_empty());
}
