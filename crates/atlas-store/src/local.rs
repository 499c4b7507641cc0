//! A [`BlobStore`] on a local directory: Atlas's embedded default repository.
//!
//! # Layout
//!
//! Key `a/b/c` is the file `<root>/a/b/c`, one directory per `/` segment, so a repository
//! stays readable with ordinary tools and its layout matches the S3 one key for key.
//! Because a path cannot be a file and a directory at once, a key can never coexist with
//! keys below it (`a` and `a/b`); such a put fails with [`StoreError::Unsupported`]
//! instead of being silently misfiled. The repository layout never needs both.
//!
//! # Writes, and the fsync order that makes them durable
//!
//! Every put goes through a temporary file in the object's own directory, so the final
//! step is a same-directory link or rename, which POSIX makes atomic:
//!
//! 1. create missing parent directories one by one, fsyncing the parent of each new one
//!    (so the new directory entry itself survives a crash);
//! 2. write the data to `<dir>/.atlas~tmp~<uuid>` (created exclusively) and fsync the file
//!    — the bytes are on disk before any name points at them;
//! 3. publish: `PutMode::Overwrite` renames the temp file over the key;
//!    `PutMode::Create` hard-links it to the key, which fails with `EEXIST` if the key
//!    exists — the kernel decides the race, there is no check-then-act window — and then
//!    unlinks the temp name;
//! 4. fsync the directory, making the new name (and the removed temp name) durable.
//!    Only then does `put` return `Ok`.
//!
//! A reader therefore sees the old object, the new one, or nothing, never a prefix. A
//! crash between 2 and 4 leaves at worst a stale temp file: `~` is outside the key
//! alphabet, so no key can name it, [`LocalStore::list`](BlobStore::list) skips it, and
//! [`LocalStore::cleanup_temp`] removes it. A failed write (including `ENOSPC`) removes
//! its temp file before returning, so it leaves no partial object behind.
//!
//! Deletes unlink the file, fsync the directory, then remove now-empty parent directories
//! (best effort; a concurrent put that loses its directory this way recreates it).
//!
//! # Limits
//!
//! Object Lock retention cannot be enforced by a directory, so puts that ask for it fail
//! with [`StoreError::Unsupported`]. On case-insensitive file systems (macOS, Windows
//! defaults) keys that differ only in case collide; Atlas lower-cases mailbox ids in keys.
//! Symbolic links inside the root are not followed by `list`. `Create` needs hard links,
//! which every POSIX local file system has; a mount without them (FAT/exFAT, some FUSE or
//! SMB mounts) fails `Create` with an error rather than falling back to a racy check.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use atlas_core::ports::{BlobStore, ObjectMeta, PutMode, PutOptions, StoreError, StoreKey};
use bytes::Bytes;

/// Name prefix of in-flight temporary files. `~` is not in the key alphabet, so no key
/// segment can ever equal or start with this.
const TEMP_PREFIX: &str = ".atlas~tmp~";

/// How often a put recreates its directory when a concurrent delete pruned it between
/// `mkdir` and creating the temp file. Each retry needs a new race to be lost, so a small
/// bound is plenty; it only exists to rule out an endless loop.
const DIR_RACE_RETRIES: u32 = 8;

/// A repository in a local directory. Cheap to clone; all state is on disk.
///
/// File I/O runs on tokio's blocking pool (`std::fs` there, because `tokio::fs` cannot
/// fsync a directory), so the async callers never block a runtime worker.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root`. Nothing is touched until the first write, which creates
    /// the directory; reads of a missing root see an empty store.
    ///
    /// A relative root is made absolute against the current directory now, so a later
    /// `chdir` cannot move the repository and [`BlobStore::describe`] names the real place.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// The directory objects live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Remove temporary files left behind by writers that crashed mid-put; returns how
    /// many were removed.
    ///
    /// Call it only while no other writer uses the repository (e.g. when opening it under
    /// an exclusive lock): a temp file of a put in flight would be removed too, and that
    /// put would then fail (cleanly — it never publishes a partial object).
    pub async fn cleanup_temp(&self) -> Result<usize, StoreError> {
        let root = self.root.clone();
        let label = root.display().to_string();
        blocking(label.clone(), move || {
            cleanup_temp_blocking(&root).map_err(|e| map_io(&label, e))
        })
        .await
    }

    fn object_path(&self, key: &StoreKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.as_str().split('/'));
        path
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, key: &StoreKey, data: Bytes, opts: PutOptions) -> Result<(), StoreError> {
        if opts.retention.is_some() {
            return Err(StoreError::Unsupported {
                what: "Object Lock retention (local directory)".into(),
            });
        }
        let root = self.root.clone();
        let path = self.object_path(key);
        let key = key.to_string();
        blocking(key.clone(), move || {
            put_blocking(&root, &path, &key, opts.mode, |file| file.write_all(&data))
        })
        .await
    }

    async fn get(&self, key: &StoreKey) -> Result<Bytes, StoreError> {
        let path = self.object_path(key);
        let key = key.to_string();
        blocking(key.clone(), move || match fs::read(&path) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if is_absent(&e) => Err(StoreError::NotFound { key }),
            Err(e) => Err(map_io(&key, e)),
        })
        .await
    }

    async fn get_range(&self, key: &StoreKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.object_path(key);
        let key = key.to_string();
        blocking(key.clone(), move || get_range_blocking(&path, &key, range)).await
    }

    async fn head(&self, key: &StoreKey) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.object_path(key);
        let key = key.clone();
        blocking(key.to_string(), move || match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key,
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_io(key.as_str(), e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(prefix.clone(), move || list_blocking(&root, &prefix)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let root = self.root.clone();
        let path = self.object_path(key);
        let key = key.to_string();
        blocking(key.clone(), move || delete_blocking(&root, &path, &key)).await
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

/// Run `f` on the blocking pool. A panic in `f` is re-raised here (it is a bug, not a
/// storage condition); a cancelled task (runtime shutting down) becomes an I/O error.
async fn blocking<T, F>(label: String, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Io {
            key: label,
            source: io::Error::other("blocking file task was cancelled"),
        }),
    }
}

/// Translate an I/O error once, at the edge. `NotFound` is not handled here because what
/// it means (missing object, vanished directory) depends on the operation.
fn map_io(key: &str, err: io::Error) -> StoreError {
    match err.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::StorageFull {
            key: key.to_string(),
        },
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => StoreError::AccessDenied {
            key: key.to_string(),
            detail: err.to_string(),
        },
        // A hung network file system (NFS, SMB) times out; the same call may work later.
        ErrorKind::TimedOut => StoreError::Transient {
            key: key.to_string(),
            detail: err.to_string(),
        },
        _ => StoreError::Io {
            key: key.to_string(),
            source: err,
        },
    }
}

/// Errors that mean "there is no object at this path": the file is missing, a parent is
/// missing or is a file, or the path is a directory (a prefix of other keys, not a key).
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

/// The error for a key that collides with the file/directory duality of a path.
fn prefix_conflict(key: &str, detail: &str) -> StoreError {
    StoreError::Unsupported {
        what: format!("storing {key} in a local directory: {detail}"),
    }
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// The put algorithm (see the module docs). `write` fills the temp file; it is a parameter
/// so tests can make the write itself fail (e.g. with `ENOSPC`) and check the cleanup.
fn put_blocking(
    root: &Path,
    path: &Path,
    key: &str,
    mode: PutMode,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .expect("invariant: an object path is the root joined with at least one segment");

    // Fast path only: saves writing a large temp file when the key clearly exists. The
    // hard link below is what actually decides a race.
    if mode == PutMode::Create && fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return Err(StoreError::AlreadyExists {
            key: key.to_string(),
        });
    }

    let mut write = Some(write);
    let mut attempt = 0;
    let tmp = loop {
        match ensure_dir(root, dir, key) {
            Ok(()) => {}
            Err(DirError::Raced(_)) if attempt < DIR_RACE_RETRIES => {
                attempt += 1;
                continue;
            }
            Err(DirError::Raced(e)) => return Err(map_io(key, e)),
            Err(DirError::Failed(e)) => return Err(e),
        }
        let tmp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(mut file) => {
                let write = write
                    .take()
                    .expect("invariant: the writer is taken once, right after the file opens");
                let written = write(&mut file).and_then(|()| file.sync_all());
                drop(file);
                if let Err(e) = written {
                    remove_temp(&tmp);
                    return Err(map_io(key, e));
                }
                break tmp;
            }
            // A concurrent delete pruned the (empty) directory after `ensure_dir`.
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < DIR_RACE_RETRIES => {
                attempt += 1;
            }
            Err(e) => return Err(map_io(key, e)),
        }
    };

    let published = match mode {
        PutMode::Create => fs::hard_link(&tmp, path),
        PutMode::Overwrite => fs::rename(&tmp, path),
    };
    if mode == PutMode::Create || published.is_err() {
        remove_temp(&tmp);
    }
    if let Err(e) = published {
        // `EEXIST`/`EISDIR` on a directory means the key is a prefix of other keys.
        if path.is_dir() {
            return Err(prefix_conflict(
                key,
                "other objects are stored below this key",
            ));
        }
        if mode == PutMode::Create && e.kind() == ErrorKind::AlreadyExists {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        return Err(map_io(key, e));
    }
    sync_dir(dir).map_err(|e| map_io(key, e))
}

/// Best-effort removal of a temp file on an error path; a leftover one is harmless (never
/// listed) and [`LocalStore::cleanup_temp`] collects it.
fn remove_temp(tmp: &Path) {
    if let Err(e) = fs::remove_file(tmp) {
        if e.kind() != ErrorKind::NotFound {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove temporary file");
        }
    }
}

/// Why [`ensure_dir`] failed: a lost race with a concurrent delete pruning the very
/// directories being created (worth retrying), or anything else.
enum DirError {
    Raced(io::Error),
    Failed(StoreError),
}

/// Create `dir` (under `root`) and any missing ancestors, fsyncing the parent of each
/// directory created so its entry is durable before an object is published inside it.
fn ensure_dir(root: &Path, dir: &Path, key: &str) -> Result<(), DirError> {
    let conflict = || {
        DirError::Failed(prefix_conflict(
            key,
            "a parent of this key is itself an object",
        ))
    };
    // A parent that vanished under us was pruned by a concurrent delete.
    let classify = |e: io::Error| {
        if e.kind() == ErrorKind::NotFound {
            DirError::Raced(e)
        } else {
            DirError::Failed(map_io(key, e))
        }
    };
    if dir.is_dir() {
        return Ok(());
    }
    if !root.is_dir() {
        fs::create_dir_all(root).map_err(|e| DirError::Failed(map_io(key, e)))?;
        if let Some(parent) = root.parent() {
            // Best effort: the root's parent is outside the repository and may not be
            // ours to open; failing here would make a usable root unusable.
            if let Err(e) = sync_dir(parent) {
                tracing::debug!(path = %parent.display(), error = %e, "could not fsync parent of repository root");
            }
        }
    }
    let relative = dir
        .strip_prefix(root)
        .expect("invariant: object directories are built by joining segments onto the root");
    let mut current = root.to_path_buf();
    for segment in relative {
        let parent = current.clone();
        current.push(segment);
        match fs::create_dir(&current) {
            Ok(()) => sync_dir(&parent).map_err(classify)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !current.is_dir() {
                    return Err(conflict());
                }
            }
            Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(conflict()),
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(())
}

/// Make a directory's entries (new names, removed names) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file to flush it; NTFS journals metadata, and
/// `rename`/`hard_link` are already durable once the file data was flushed.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn get_range_blocking(path: &Path, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
    let not_found = || StoreError::NotFound {
        key: key.to_string(),
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Err(not_found()),
        Err(e) => return Err(map_io(key, e)),
    };
    // The open handle pins this version of the object: a concurrent overwrite replaces
    // the name, not the file we read, so size and bytes stay consistent.
    let meta = file.metadata().map_err(|e| map_io(key, e))?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let size = meta.len();
    let invalid = || StoreError::InvalidRange {
        key: key.to_string(),
        start: range.start,
        end: range.end,
        size,
    };
    if range.start > range.end || range.end > size {
        return Err(invalid());
    }
    let len = usize::try_from(range.end - range.start).map_err(|_| invalid())?;
    let mut buf = vec![0u8; len];
    if len > 0 {
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| map_io(key, e))?;
    }
    Ok(Bytes::from(buf))
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    // Start at the deepest directory the prefix fully names. If that part is not a valid
    // key path (e.g. `../`), no key can start with the prefix, and it must never be
    // joined onto the root.
    let (start_dir, start_rel) = match prefix.rsplit_once('/') {
        Some((dirs, _)) => match StoreKey::new(dirs) {
            Ok(dirs_key) => {
                let mut dir = root.to_path_buf();
                dir.extend(dirs_key.as_str().split('/'));
                (dir, format!("{dirs}/"))
            }
            Err(_) => return Ok(Vec::new()),
        },
        None => (root.to_path_buf(), String::new()),
    };

    let mut found = Vec::new();
    let mut pending = vec![(start_dir, start_rel)];
    while let Some((dir, rel)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Missing root, or a directory pruned by a concurrent delete: nothing there.
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(map_io(prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| map_io(prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(dir = %dir.display(), "skipping a non-UTF-8 file name in the repository");
                continue;
            };
            if is_temp_name(&name) {
                continue;
            }
            let key = format!("{rel}{name}");
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(map_io(prefix, e)),
            };
            if file_type.is_dir() {
                let below = format!("{key}/");
                if below.starts_with(prefix) || prefix.starts_with(&below) {
                    pending.push((entry.path(), below));
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                let Ok(store_key) = StoreKey::new(key.as_str()) else {
                    tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not a valid object key");
                    continue;
                };
                let size = match entry.metadata() {
                    Ok(meta) => meta.len(),
                    // Deleted since `read_dir` returned it.
                    Err(e) if is_absent(&e) => continue,
                    Err(e) => return Err(map_io(&key, e)),
                };
                found.push(ObjectMeta {
                    key: store_key,
                    size,
                });
            } else if !file_type.is_dir() && !file_type.is_file() {
                tracing::warn!(path = %entry.path().display(), "skipping a symbolic link or special file in the repository");
            }
        }
    }
    // Directory order is arbitrary and `/` sorts between other key bytes, so sort at the end.
    found.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

fn delete_blocking(root: &Path, path: &Path, key: &str) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(map_io(key, e)),
    }
    let dir = path
        .parent()
        .expect("invariant: an object path is the root joined with at least one segment");
    match sync_dir(dir) {
        Ok(()) => {}
        // A concurrent delete already pruned the directory, and our entry with it.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(map_io(key, e)),
    }
    // Prune empty parents so deleted prefixes do not leave directory skeletons. A failure
    // (not empty, raced by a put) just stops the pruning.
    let mut current = dir;
    while current != root && current.starts_with(root) {
        if fs::remove_dir(current).is_err() {
            break;
        }
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Ok(())
}

fn cleanup_temp_blocking(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if entry.file_name().to_str().is_some_and(is_temp_name) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    pending.push(entry.path());
                } else if is_temp_name(entry.file_name().to_str().unwrap()) {
                    out.push(entry.path());
                }
            }
        }
        out
    }

    #[test]
    fn io_errors_map_to_semantic_variants() {
        let cases = [
            (ErrorKind::StorageFull, "StorageFull"),
            (ErrorKind::QuotaExceeded, "StorageFull"),
            (ErrorKind::PermissionDenied, "AccessDenied"),
            (ErrorKind::ReadOnlyFilesystem, "AccessDenied"),
            (ErrorKind::TimedOut, "Transient"),
            (ErrorKind::InvalidData, "Io"),
        ];
        for (kind, expected) in cases {
            let got = match map_io("k", io::Error::from(kind)) {
                StoreError::StorageFull { .. } => "StorageFull",
                StoreError::AccessDenied { .. } => "AccessDenied",
                StoreError::Transient { .. } => "Transient",
                StoreError::Io { .. } => "Io",
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(got, expected, "{kind:?}");
        }
        // The raw errno the kernel returns for a full disk takes the same path.
        let enospc = io::Error::from_raw_os_error(28);
        assert!(matches!(
            map_io("k", enospc),
            StoreError::StorageFull { .. }
        ));
    }

    /// The disk filling up halfway through the data: the error is `StorageFull`, the temp
    /// file is gone, and an existing object under the key is untouched.
    #[test]
    fn enospc_during_write_leaves_no_partial_object() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let path = root.join("a").join("obj");
        put_blocking(&root, &path, "a/obj", PutMode::Create, |f| {
            f.write_all(b"old")
        })
        .unwrap();

        for mode in [PutMode::Overwrite, PutMode::Create] {
            let other = root.join("a").join("new");
            let target = if mode == PutMode::Create {
                &other
            } else {
                &path
            };
            let err = put_blocking(&root, target, "a/x", mode, |f| {
                f.write_all(b"partial")?;
                Err(io::Error::from_raw_os_error(28))
            })
            .unwrap_err();
            assert!(matches!(err, StoreError::StorageFull { .. }), "{err:?}");
            assert!(temp_files(&root).is_empty());
            assert!(!other.exists());
            assert_eq!(fs::read(&path).unwrap(), b"old");
        }
    }

    #[test]
    fn permission_error_during_write_is_access_denied_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let path = root.join("k");
        let err = put_blocking(&root, &path, "k", PutMode::Overwrite, |_| {
            Err(io::Error::from(ErrorKind::PermissionDenied))
        })
        .unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
        assert!(temp_files(&root).is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn temp_names_cannot_be_keys() {
        let name = format!("{TEMP_PREFIX}0123");
        assert!(is_temp_name(&name));
        assert!(StoreKey::new(name.as_str()).is_err());
        assert!(StoreKey::new(format!("a/{name}")).is_err());
    }
}
