//! The binary on a really full file system: a small tmpfs holds the repository (and a
//! save's output), filled up with a filler file. atlas-core covers full disks with the
//! fault store and atlas-store the `ENOSPC` mapping; this is the whole path a user meets.
//!
//! Mounting needs root (as on this project's machines and CI) or, without it, a user and
//! mount namespace (`unshare -r -m`), in which the test runs itself again. Where neither
//! works the test fails and says why: it never passes without having filled a disk.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::graph_e2e::Sim;
use super::{Sandbox, files_under, json, output_text};

/// Set in the copy of the test run inside a user and mount namespace.
const IN_NAMESPACE: &str = "ATLAS_TEST_IN_MOUNT_NAMESPACE";

/// A tmpfs mounted for one test and unmounted when dropped (also on panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (e.g. `16m`), or `None` when this test was run again inside a
    /// user and mount namespace (and passed there) because this process may not mount.
    /// Panics when neither works, or when the run in the namespace failed.
    fn mount_or_rerun(size: &str, test_name: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Self { dir });
        }
        assert!(
            std::env::var_os(IN_NAMESPACE).is_none(),
            "cannot mount a tmpfs even inside a user and mount namespace: this test needs \
             root or unprivileged user namespaces (`unshare -r -m`)"
        );
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new("unshare")
            .args(["-r", "-m", "--"])
            .arg(exe)
            .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
            .env(IN_NAMESPACE, "1")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot mount a tmpfs (not root) and cannot run `unshare`: {e}")
            });
        let text = output_text(&out);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "not root, so the test ran inside `unshare -r -m`, and failed there (or could \
             not start: this test needs root or unprivileged user namespaces):\n{text}"
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fill the file system of `dir` with `dir/filler` until a write fails with "no space",
/// then give back `room` bytes. Returns the filler's path.
fn fill(dir: &Path, room: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 64 << 10, 4 << 10] {
        let block = vec![0x5a_u8; chunk];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    // A short write may have stored part of the last block; measure, then give back room.
    file.flush().ok();
    let len = file.metadata().expect("filler size").len();
    file.set_len(len.saturating_sub(room))
        .expect("give back room");
    path
}

/// A backup into a repository on a full disk — with no room even for its lease, and with
/// room for the lease but not the pack — fails with a clear error that names the full disk
/// and what to do (exit 1, the README's "not everything was done"), its lease released, no
/// snapshot record, no temporary file. Once space is freed the next backup is complete
/// and verify finds no damage. A save whose output does not fit fails the same way, with
/// only Atlas's error on stderr, and leaves neither the output nor its temporary file.
#[test]
fn a_full_disk_fails_backup_and_save_cleanly_and_the_next_run_succeeds() {
    let Some(disk) = Tmpfs::mount_or_rerun(
        "64m",
        "full_disk_e2e::a_full_disk_fails_backup_and_save_cleanly_and_the_next_run_succeeds",
    ) else {
        return;
    };
    let (sim, upn) = Sim::one_user(200);
    let sandbox = Sandbox::new();
    let repo = disk.path().join("repo");
    let atlas = || {
        let mut cmd = sandbox.against(&sim);
        cmd.env("ATLAS_REPOSITORY", &repo);
        cmd
    };
    let out = atlas().arg("init").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // No room at all: not even the lease can be written.
    let filler = fill(disk.path(), 0);
    let out = atlas().args(["backup", "-m", &upn]).output().expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no space left") && text.contains("free some space and run again"),
        "the error names the full disk and what to do: {text}"
    );
    std::fs::remove_file(&filler).expect("free space");

    // Room for the lease (and the mailbox record of a repository before format 5), not for
    // the messages' pack.
    let filler = fill(disk.path(), 64 << 10);
    let out = atlas().args(["backup", "-m", &upn]).output().expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no space left while writing packs/")
            && text.contains("free some space and run again"),
        "the error names the full disk and what to do: {text}"
    );
    let out = atlas()
        .args(["--json", "backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("backup", &out);
    assert_eq!(doc["mailboxes"][0]["result"], "failed", "{doc}");
    assert!(
        doc["mailboxes"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no space left")),
        "{doc}"
    );
    let left = files_under(&repo);
    assert!(
        !left.iter().any(|f| f.starts_with("locks/")),
        "leases and the prune lock are released: {left:?}"
    );
    assert!(
        !left.iter().any(|f| f.starts_with("snapshots/")),
        "no snapshot was committed: {left:?}"
    );
    assert!(
        !left.iter().any(|f| f.contains('~')),
        "no temporary file is left: {left:?}"
    );

    // Space freed: the next backup is complete and the repository is sound.
    std::fs::remove_file(&filler).expect("free space");
    let out = atlas()
        .args(["--json", "backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json(&out)["mailboxes"][0]["result"], "complete");
    let out = atlas()
        .args(["verify", "--read-data"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // A save whose output does not fit.
    let filler = fill(disk.path(), 64 << 10);
    let zip = disk.path().join("out.zip");
    let out = atlas()
        .args(["save", "-m", &upn, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no space left") && text.contains("free some space"),
        "{text}"
    );
    // Only Atlas's error: the zip writer, dropped unfinished, used to finish itself into
    // the full disk and print its own "ZipWriter drop failed: … StorageFull" line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ZipWriter") && !stderr.contains("StorageFull"),
        "{stderr}"
    );
    let outputs: Vec<String> = files_under(disk.path())
        .into_iter()
        .filter(|f| f.starts_with("out.zip") || f.contains(".partial-"))
        .collect();
    assert!(outputs.is_empty(), "nothing half-written: {outputs:?}");
    std::fs::remove_file(&filler).expect("free space");
    let out = atlas()
        .args(["save", "-m", &upn, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(zip.is_file());
    let out = atlas().args(["verify"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}
