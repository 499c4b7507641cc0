//! The binary interrupted, killed, or talking to a reader that went away: SIGTERM, SIGHUP
//! and SIGKILL in the middle of a backup, stdout and stderr closed under every long
//! command. Each scenario ends with a next run that succeeds without manual steps.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atlas_sim::{FaultConfig, SimConfig};

use super::graph_e2e::Sim;
use super::{PASSPHRASE, Sandbox, files_under, output_text};

impl Sandbox {
    /// The binary as a plain `std` command (to spawn, signal and kill it), configured for
    /// the simulator and a local repository in the sandbox.
    pub(super) fn spawnable(&self, sim: &Sim) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("atlas"));
        cmd.env_clear()
            .current_dir(self.cwd())
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.home().join("data"))
            .env("ATLAS_KDF", "scrypt-n14")
            .envs(sim.graph_env())
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .env("ATLAS_REPOSITORY", self.repo());
        cmd
    }

    pub(super) fn run(&self, sim: &Sim, args: &[&str]) -> std::process::Output {
        self.spawnable(sim)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("atlas runs")
    }
}

fn set_latency(sim: &Sim, millis: u64) {
    sim.handle.set_faults(FaultConfig {
        latency: Duration::from_millis(millis),
        ..FaultConfig::default()
    });
}

/// A finished process to put in place of one whose output is taken.
fn dummy_child() -> Child {
    Command::new("true").spawn().expect("true runs")
}

/// Wait until the running backup holds its lease and has downloaded a few messages.
fn wait_until_backing_up(sim: &Sim, sandbox: &Sandbox, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("poll").is_some() {
            let out = wait_with_timeout(std::mem::replace(child, dummy_child()));
            panic!(
                "backup ended before it could be interrupted: {}",
                output_text(&out)
            );
        }
        let leased = !files_under(&sandbox.repo().join("locks")).is_empty();
        let downloads = sim.handle.counters().total_requests();
        if leased && downloads > 40 {
            return;
        }
        assert!(Instant::now() < deadline, "backup never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

fn wait_with_timeout(child: Child) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(Duration::from_secs(180)) {
        return out.expect("wait");
    }
    let _ = Command::new("kill")
        .args(["-KILL", &id.to_string()])
        .status();
    panic!("atlas did not stop within 180 s of the signal");
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {}", output_text(out)))
}

/// SIGTERM (systemd stop, `docker stop`, `timeout`) and SIGHUP (a closed SSH session) in
/// the middle of a backup: like the first Ctrl+C, what is stored is committed as a partial
/// snapshot, the lease is released, and the exit code is 2. Before, both signals killed the
/// process (exit 143/129) with no snapshot and the mailbox blocked by the lease.
#[test]
fn sigterm_and_sighup_mid_backup_commit_a_partial_snapshot_and_release_the_lease() {
    let (sim, upn) = Sim::one_user(600);
    let sandbox = Sandbox::new();
    let init = sandbox.run(&sim, &["init"]);
    assert_eq!(init.status.code(), Some(0), "{}", output_text(&init));
    for sig in ["TERM", "HUP"] {
        add_messages(&sim, &upn, sig, 300);
        set_latency(&sim, 15);
        sim.handle.reset_counters();
        let mut child = sandbox
            .spawnable(&sim)
            .args(["--json", "backup", "-m", &upn, "--full"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns");
        wait_until_backing_up(&sim, &sandbox, &mut child);
        signal(&child, sig);
        let out = wait_with_timeout(child);
        assert_eq!(
            out.status.code(),
            Some(2),
            "SIG{sig}: {}",
            output_text(&out)
        );
        let report = json_of(&out);
        assert_eq!(report["mailboxes"][0]["result"], "partial", "{report}");
        assert!(
            report["mailboxes"][0]["summary"]["snapshot"].is_string(),
            "a partial snapshot was committed: {report}"
        );
        assert_eq!(
            files_under(&sandbox.repo().join("locks")),
            Vec::<String>::new(),
            "SIG{sig}: the lease was released"
        );
    }
    // The next run finishes the job with no manual step.
    set_latency(&sim, 0);
    let out = sandbox.run(&sim, &["--json", "backup", "-m", &upn]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json_of(&out)["mailboxes"][0]["result"], "complete");
}

/// Writers whose reader is gone: `atlas backup … 2>&1 | head -2` exited 101 (a panic when
/// stderr closed, in the middle of the run). Every long command, with stdout and stderr
/// both a pipe nobody reads, must do its work and exit with its documented code.
#[test]
fn closed_stdout_and_stderr_never_panic_or_abort_the_work() {
    let (sim, upn) = Sim::one_user(30);
    let sandbox = Sandbox::new();
    let closed_with = |mut cmd: Command, args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let status = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("clone"))
            .stderr(writer)
            .status()
            .expect("runs");
        status.code()
    };
    let closed = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let status = sandbox
            .spawnable(&sim)
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("clone"))
            .stderr(writer)
            .status()
            .expect("runs");
        status.code()
    };
    assert_eq!(closed(&["init"]), Some(0));
    // -v makes every command log on stderr too.
    assert_eq!(closed(&["-v", "backup", "-m", &upn]), Some(0), "backup");
    sim.handle
        .add_message(
            &upn,
            "inbox",
            atlas_sim::NewMessage::text("One more", "for the second snapshot"),
        )
        .expect("add");
    assert_eq!(closed(&["backup", "-m", &upn]), Some(0), "second backup");
    let out = sandbox.run(&sim, &["--json", "list", "-m", &upn]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        json_of(&out)["snapshots"].as_array().map(Vec::len),
        Some(2),
        "both backups committed although nobody read their output"
    );
    assert_eq!(closed(&["-v", "list", "-m", &upn]), Some(0), "list");
    assert_eq!(closed(&["-v", "verify"]), Some(0), "verify");
    let zip = sandbox.cwd().join("closed.zip");
    let zip_arg = zip.display().to_string();
    assert_eq!(
        closed(&["-v", "save", "-m", &upn, "-o", &zip_arg]),
        Some(0),
        "save"
    );
    assert!(zip.is_file(), "the export was written");
    assert_eq!(
        closed(&[
            "-v",
            "restore",
            "-m",
            &upn,
            "--root",
            "Restored while nobody listened",
        ]),
        Some(0),
        "restore"
    );
    assert_eq!(
        closed(&["-v", "forget", "--keep-last", "1", "--prune"]),
        Some(0),
        "forget --prune"
    );
    let out = sandbox.run(&sim, &["--json", "list", "-m", &upn]);
    assert_eq!(
        json_of(&out)["snapshots"].as_array().map(Vec::len),
        Some(1),
        "forgot one"
    );
    // Replication both ways.
    let replica = sandbox.cwd().join("replica");
    let replica_arg = replica.display().to_string();
    assert_eq!(
        closed(&[
            "-v",
            "replicate",
            "--all",
            "--target-repository",
            &replica_arg
        ]),
        Some(0),
        "replicate"
    );
    let mut rehydrate = sandbox.spawnable(&sim);
    rehydrate.env("ATLAS_REPOSITORY", sandbox.cwd().join("rehydrated"));
    assert_eq!(
        closed_with(
            rehydrate,
            &[
                "-v",
                "rehydrate",
                "--all",
                "--source-repository",
                &replica_arg
            ]
        ),
        Some(0),
        "rehydrate"
    );
    let out = sandbox
        .spawnable(&sim)
        .env("ATLAS_REPOSITORY", sandbox.cwd().join("rehydrated"))
        .args(["--json", "list", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(
        json_of(&out)["snapshots"].as_array().map(Vec::len),
        Some(1),
        "rehydrated"
    );
    // Migration from a v1 repository.
    let bucket = sandbox.v1_bucket();
    let mut migrate = sandbox.spawnable(&sim);
    migrate
        .env("ATLAS_TENANT_ID", super::v1_e2e::V1_TENANT)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", super::v1_e2e::V1_PASSPHRASE)
        .env("ATLAS_REPOSITORY", sandbox.cwd().join("migrated"));
    assert_eq!(
        closed_with(
            migrate,
            &[
                "-v",
                "migrate",
                "--from-v1",
                "--from-dir",
                &bucket.display().to_string()
            ]
        ),
        Some(0),
        "migrate"
    );
    let out = sandbox
        .spawnable(&sim)
        .env("ATLAS_TENANT_ID", super::v1_e2e::V1_TENANT)
        .env("ATLAS_ENCRYPTION_PASSPHRASE", super::v1_e2e::V1_PASSPHRASE)
        .env("ATLAS_REPOSITORY", sandbox.cwd().join("migrated"))
        .args(["--json", "list"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let demo = Command::new(assert_cmd::cargo::cargo_bin("atlas"))
        .env_clear()
        .env("HOME", sandbox.home())
        .env("ATLAS_KDF", "scrypt-n14")
        .current_dir(sandbox.cwd())
        .args(["demo", "--users", "2", "--messages-per-user", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr({
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            writer
        })
        .status()
        .expect("demo runs");
    assert_eq!(demo.code(), Some(0), "demo");
}

/// Where a test's repository lives: the sandbox's directory, or a fresh bucket on the
/// test S3 server.
enum Place {
    Local,
    S3(super::s3_e2e::S3),
}

impl Place {
    fn all() -> Vec<Place> {
        let mut places = vec![Place::Local];
        if let Some(endpoint) = super::s3_e2e::moto_endpoint() {
            places.push(Place::S3(super::s3_e2e::S3::new(&endpoint)));
        }
        places
    }

    fn name(&self) -> &'static str {
        match self {
            Place::Local => "local",
            Place::S3(_) => "S3",
        }
    }

    /// `atlas` for the simulator and this repository.
    fn atlas(&self, sandbox: &Sandbox, sim: &Sim) -> Command {
        let mut cmd = sandbox.spawnable(sim);
        if let Place::S3(s3) = self {
            cmd.env_remove("ATLAS_REPOSITORY")
                .env("ATLAS_S3_ENDPOINT", &s3.endpoint)
                .env("ATLAS_S3_ACCESS_KEY", "test-access")
                .env("ATLAS_S3_SECRET_KEY", "test-secret")
                .env("ATLAS_S3_BUCKET", &s3.bucket)
                .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
        }
        cmd
    }

    fn run(&self, sandbox: &Sandbox, sim: &Sim, args: &[&str]) -> std::process::Output {
        self.atlas(sandbox, sim)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("atlas runs")
    }
}

/// Wait until a backup holds its lease (seen in the store) and has downloaded a few
/// messages.
fn wait_until_running(sim: &Sim, sandbox: &Sandbox, place: &Place, child: &mut Child) {
    let Place::S3(s3) = place else {
        return wait_until_backing_up(sim, sandbox, child);
    };
    let store = s3.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("backup ended before it could be interrupted: {status}");
        }
        let leased = sim
            .runtime
            .block_on(atlas_core::ports::BlobStore::list(&store, "locks/"))
            .is_ok_and(|l| !l.is_empty());
        if leased && sim.handle.counters().total_requests() > 40 {
            return;
        }
        assert!(Instant::now() < deadline, "backup never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A backup killed with SIGKILL left its mailbox unusable ("being backed up by … (pid N)"
/// with N dead) in 16 of 23 kills, on S3 too. On the same machine, the next run sees the
/// process is gone, removes the lease with a notice, and succeeds at once. SIGTERM on S3
/// commits a partial snapshot as it does locally.
#[test]
fn kill_9_or_sigterm_mid_backup_then_the_next_run_succeeds_without_manual_steps() {
    let (sim, upn) = Sim::one_user(600);
    for place in Place::all() {
        let sandbox = Sandbox::new();
        let init = place.run(&sandbox, &sim, &["init"]);
        assert_eq!(init.status.code(), Some(0), "{}", output_text(&init));
        for sig in ["KILL", "TERM"] {
            add_messages(&sim, &upn, &format!("{} {sig}", place.name()), 300);
            set_latency(&sim, 15);
            sim.handle.reset_counters();
            let mut child = place
                .atlas(&sandbox, &sim)
                .args(["--json", "backup", "-m", &upn, "--full"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawns");
            wait_until_running(&sim, &sandbox, &place, &mut child);
            signal(&child, sig);
            let out = wait_with_timeout(child);
            let what = format!("{} SIG{sig}", place.name());
            if sig == "TERM" {
                assert_eq!(out.status.code(), Some(2), "{what}: {}", output_text(&out));
            } else {
                assert_eq!(out.status.code(), None, "{what}: killed");
            }
            // The next run: no manual step, no waiting for the lease to expire.
            set_latency(&sim, 0);
            let started = Instant::now();
            let next = place.run(&sandbox, &sim, &["--json", "backup", "-m", &upn]);
            assert_eq!(
                next.status.code(),
                Some(0),
                "{what}: {}",
                output_text(&next)
            );
            assert_eq!(
                json_of(&next)["mailboxes"][0]["result"],
                "complete",
                "{what}"
            );
            if sig == "KILL" {
                let err = String::from_utf8_lossy(&next.stderr);
                assert!(
                    err.contains("removed the stale lease") && err.contains("process is gone"),
                    "{what}: the takeover is noticed: {err}"
                );
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        }
        // Nothing is left behind: unlock finds nothing to do.
        let unlock = place.run(&sandbox, &sim, &["--json", "unlock"]);
        assert_eq!(unlock.status.code(), Some(0), "{}", output_text(&unlock));
        let report = json_of(&unlock);
        assert_eq!(report["removed"], serde_json::json!([]), "{report}");
        assert_eq!(report["kept"], serde_json::json!([]), "{report}");
    }
}

/// A prune killed while holding its lock blocked every backup, even after the lock's
/// expiry ("prune … is running"), until `prune/lock` was deleted by hand. A killed prune's
/// lock is removed by the next backup (its process is gone), which then runs.
#[test]
fn a_killed_prune_never_blocks_the_next_backup() {
    let (sim, upn) = Sim::one_user(40);
    let sandbox = Sandbox::new();
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let lock = sandbox.repo().join("prune").join("lock");
    // The prune must be caught holding its lock; it is quick, so try a few times, each
    // time with one more snapshot (and so more to prune).
    let mut killed = false;
    for round in 0..20 {
        sim.handle
            .add_message(
                &upn,
                "inbox",
                atlas_sim::NewMessage::text(&format!("round {round}"), "x"),
            )
            .expect("add");
        let out = sandbox.run(&sim, &["backup", "-m", &upn]);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let mut child = sandbox
            .spawnable(&sim)
            .args(["forget", "--keep-last", "1", "--prune"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        loop {
            if lock.exists() {
                let _ = child.kill();
                let _ = child.wait();
                killed = lock.exists();
                break;
            }
            if child.try_wait().expect("poll").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if killed {
            break;
        }
    }
    assert!(killed, "never caught a prune holding its lock");
    let next = sandbox.run(&sim, &["--json", "backup", "-m", &upn]);
    assert_eq!(next.status.code(), Some(0), "{}", output_text(&next));
    let err = String::from_utf8_lossy(&next.stderr);
    assert!(err.contains("removed the stale prune lock"), "{err}");
    assert!(!lock.exists());
    // And the next prune runs too.
    let out = sandbox.run(&sim, &["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// `atlas unlock`: stale only by default; `--remove-all` asks (exit 3 without a terminal
/// or -y) and then also removes a valid lease, whose holder can no longer commit.
#[test]
fn unlock_removes_stale_leases_and_valid_ones_only_with_remove_all() {
    let (sim, upn) = Sim::one_user(600);
    let sandbox = Sandbox::new();
    let init = sandbox.run(&sim, &["init"]);
    assert_eq!(init.status.code(), Some(0), "{}", output_text(&init));
    set_latency(&sim, 15);
    let mut child = sandbox
        .spawnable(&sim)
        .args(["--json", "backup", "-m", &upn, "--full"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    wait_until_backing_up(&sim, &sandbox, &mut child);
    // The running backup's lease is valid: kept.
    let out = sandbox.run(&sim, &["--json", "unlock"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json_of(&out);
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");
    assert_eq!(report["kept"][0]["standing"], "valid", "{report}");
    assert_eq!(report["kept"][0]["mailbox"], upn.as_str(), "{report}");
    // --remove-all wants a confirmation.
    let out = sandbox.run(&sim, &["unlock", "--remove-all"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(!files_under(&sandbox.repo().join("locks")).is_empty());
    let out = sandbox.run(&sim, &["--json", "unlock", "--remove-all", "-y"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json_of(&out)["removed"][0]["standing"], "valid");
    assert!(files_under(&sandbox.repo().join("locks")).is_empty());
    // The holder whose lease was removed cannot commit: its mailbox fails (exit 1).
    signal(&child, "TERM");
    let out = wait_with_timeout(child);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("lease was lost"),
        "{}",
        output_text(&out)
    );
    assert!(files_under(&sandbox.repo().join("locks")).is_empty());
    set_latency(&sim, 0);
    let out = sandbox.run(&sim, &["backup", "-m", &upn]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// Start `atlas --json backup -m upn [extra]` slowed down by the simulator and wait until
/// it holds its lease and is downloading.
fn start_slow_backup(
    sim: &Sim,
    sandbox: &Sandbox,
    place: &Place,
    upn: &str,
    extra: &[&str],
) -> Child {
    set_latency(sim, 15);
    sim.handle.reset_counters();
    let mut child = place
        .atlas(sandbox, sim)
        .args(["--json", "backup", "-m", upn])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    wait_until_running(sim, sandbox, place, &mut child);
    child
}

/// Add `n` new messages to the inbox: the next backup has them to download (content it
/// already holds is reused, even with `--full`, so it would be over too soon to interrupt).
fn add_messages(sim: &Sim, upn: &str, tag: &str, n: usize) {
    for i in 0..n {
        sim.handle
            .add_message(
                upn,
                "inbox",
                atlas_sim::NewMessage::text(&format!("{tag} {i}"), "to download"),
            )
            .expect("add");
    }
}

fn kill_9(child: Child) {
    signal(&child, "KILL");
    let out = wait_with_timeout(child);
    assert_eq!(out.status.code(), None, "killed");
}

/// A backup killed with SIGKILL — an incremental one as well as a full one — left the
/// mailbox's lease behind, and forget, prune and delete were blocked by it too ("mailbox
/// is being backed up by … (pid N)" with N dead). Each of them now removes the lease of
/// the dead process at once, with a notice, and runs; so does the next backup.
#[test]
fn after_a_killed_backup_forget_prune_and_delete_just_work() {
    let (sim, upn) = Sim::one_user(300);
    for place in Place::all() {
        let what = place.name();
        let sandbox = Sandbox::new();
        for args in [vec!["init"], vec!["backup", "-m", &upn]] {
            set_latency(&sim, 0);
            let out = place.run(&sandbox, &sim, &args);
            assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        }
        // An incremental backup with plenty to download, killed in the middle.
        for n in 0..300 {
            sim.handle
                .add_message(
                    &upn,
                    "inbox",
                    atlas_sim::NewMessage::text(&format!("new {n}"), "for the incremental"),
                )
                .expect("add");
        }
        kill_9(start_slow_backup(&sim, &sandbox, &place, &upn, &[]));
        set_latency(&sim, 0);
        let out = place.run(&sandbox, &sim, &["forget", "--keep-last", "1", "--prune"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("removed the stale lease") && err.contains("process is gone"),
            "{what}: forget --prune takes the dead backup's lease over: {err}"
        );
        // Another backup killed in the middle; delete of that mailbox just works.
        add_messages(&sim, &upn, &format!("{what} before delete"), 300);
        kill_9(start_slow_backup(&sim, &sandbox, &place, &upn, &["--full"]));
        set_latency(&sim, 0);
        let out = place.run(&sandbox, &sim, &["delete", "-m", &upn, "-y"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("removed the stale lease"),
            "{what}: {}",
            output_text(&out)
        );
        // And one more killed backup does not stop the next one.
        kill_9(start_slow_backup(&sim, &sandbox, &place, &upn, &[]));
        set_latency(&sim, 0);
        let out = place.run(&sandbox, &sim, &["--json", "backup", "-m", &upn]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        assert_eq!(
            json_of(&out)["mailboxes"][0]["result"],
            "complete",
            "{what}"
        );
        let out = place.run(&sandbox, &sim, &["verify", "--read-data"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
    }
}

/// `delete -m A` while B was being backed up removed A's snapshots but exited 1 with
/// "mailbox is being backed up" (about B). A delete's lease scope is its own mailbox: it
/// succeeds (exit 0) and says that the space is freed by a later prune; B's backup goes on
/// and completes. Deleting B itself meanwhile is refused (exit 1) and removes nothing.
/// `forget --prune` did the same (records removed, then exit 1); it now defers its prune
/// like `delete`. Both on a local repository and on S3 (moto), whose leases and prune lock
/// are objects with conditional writes rather than files.
#[test]
fn delete_and_forget_prune_of_one_mailbox_while_another_is_backed_up_exit_0() {
    let sim = Sim::start(SimConfig {
        users: 2,
        shared_mailboxes: 0,
        messages_per_user: 300,
        accounts_without_mailbox: false,
        ..SimConfig::default()
    });
    let users = sim.licensed_users();
    let (a, b) = (users[0].clone(), users[1].clone());
    for place in Place::all() {
        let what = place.name();
        let sandbox = Sandbox::new();
        // A has two snapshots (forget keeps one); B is known to the repository by one small
        // folder, so its full backup below has everything else to download and runs long
        // enough.
        set_latency(&sim, 0);
        for args in [
            vec!["init"],
            vec!["backup", "-m", &a],
            vec!["backup", "-m", &a],
            vec!["backup", "-m", &b, "-f", "Drafts"],
        ] {
            let out = place.run(&sandbox, &sim, &args);
            assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        }
        let mut child = start_slow_backup(&sim, &sandbox, &place, &b, &["--full"]);
        // Slower still, so B's backup outlasts the forget and both deletes.
        set_latency(&sim, 100);
        let out = place.run(
            &sandbox,
            &sim,
            &["--json", "forget", "-m", &a, "--keep-last", "1", "--prune"],
        );
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        let report = super::json_schemas::assert_schema("forget", &out);
        assert_eq!(report["result"]["snapshotsRemoved"], 1, "{what}: {report}");
        assert!(report["result"]["prune"].is_null(), "{what}: {report}");
        assert!(
            report["result"]["pruneDeferred"]
                .as_str()
                .is_some_and(|s| s.contains("being backed up")),
            "{what}: {report}"
        );
        let out = place.run(
            &sandbox,
            &sim,
            &["forget", "-m", &a, "--keep-last", "1", "--prune"],
        );
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        assert!(
            output_text(&out).contains("freed by the next prune"),
            "{what}: the text says the prune waits: {}",
            output_text(&out)
        );
        let out = place.run(&sandbox, &sim, &["--json", "delete", "-m", &a, "-y"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        let report = super::json_schemas::assert_schema("delete", &out);
        assert_eq!(report["result"]["snapshotsRemoved"], 1, "{what}: {report}");
        assert!(
            report["result"]["pruneDeferred"]
                .as_str()
                .is_some_and(|s| s.contains("being backed up")),
            "{what}: {report}"
        );
        let out = place.run(&sandbox, &sim, &["delete", "-m", &b, "-y"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", output_text(&out));
        assert!(
            output_text(&out).contains("being backed up"),
            "{what}: {}",
            output_text(&out)
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "{what}: B's backup was still running during the forget and both deletes"
        );
        set_latency(&sim, 0);
        let out = wait_with_timeout(child);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        let out = place.run(&sandbox, &sim, &["--json", "list"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        let listed = json_of(&out).to_string();
        assert!(
            !listed.contains(&a) && listed.contains(&b),
            "{what}: {listed}"
        );
        // The prune that waited runs now.
        let out = place.run(
            &sandbox,
            &sim,
            &["--json", "forget", "--keep-last", "1", "--prune"],
        );
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
        assert!(
            json_of(&out)["result"]["prune"]["blobsFreed"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{what}: A's data is freed now: {}",
            output_text(&out)
        );
        let out = place.run(&sandbox, &sim, &["verify", "--read-data"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", output_text(&out));
    }
}

/// Hidden temporary outputs of saves in `dir`.
fn partials_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

/// Start a save into `dir` and wait until its temporary output exists.
fn start_save(sim: &Sim, sandbox: &Sandbox, upn: &str, dir: &Path) -> Option<Child> {
    let mut child = sandbox
        .spawnable(sim)
        .args(["save", "-m", upn, "-o"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    loop {
        if !partials_in(dir).is_empty() {
            return Some(child);
        }
        if child.try_wait().expect("poll").is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// Ctrl+C during `save` was ignored, and a killed save left a hidden `.partial-*` file that
/// later saves never removed. SIGINT, SIGTERM and SIGHUP stop a save (exit 1: not done)
/// and remove its temporary output; a save killed with SIGKILL leaves it, and the next save
/// to the same place removes it. Nothing else in the directory is touched.
#[test]
fn a_stopped_save_removes_its_partial_and_a_killed_ones_is_removed_by_the_next() {
    let (sim, upn) = Sim::one_user(600);
    let sandbox = Sandbox::new();
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let dir = sandbox.cwd().join("exports");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), b"the user's own file").expect("write");
    let mut stopped = Vec::new();
    for sig in ["INT", "TERM", "HUP"] {
        // The save is quick; catch it while its partial exists (a few tries).
        for _ in 0..20 {
            let Some(child) = start_save(&sim, &sandbox, &upn, &dir) else {
                // It finished first: remove the export and try again.
                for e in std::fs::read_dir(&dir).expect("dir").flatten() {
                    if e.file_name() != "notes.txt" {
                        std::fs::remove_file(e.path()).expect("rm");
                    }
                }
                continue;
            };
            signal(&child, sig);
            let out = wait_with_timeout(child);
            if out.status.code() == Some(0) {
                // The signal came after the rename; try again.
                for e in std::fs::read_dir(&dir).expect("dir").flatten() {
                    if e.file_name() != "notes.txt" {
                        std::fs::remove_file(e.path()).expect("rm");
                    }
                }
                continue;
            }
            assert_eq!(
                out.status.code(),
                Some(1),
                "SIG{sig}: {}",
                output_text(&out)
            );
            assert!(
                output_text(&out).contains("interrupted"),
                "SIG{sig}: {}",
                output_text(&out)
            );
            assert_eq!(partials_in(&dir), Vec::<String>::new(), "SIG{sig}");
            stopped.push(sig);
            break;
        }
    }
    assert_eq!(
        stopped,
        ["INT", "TERM", "HUP"],
        "every signal stopped a save"
    );
    // Killed: the partial stays; the next save to the same place removes it.
    let mut left = Vec::new();
    for _ in 0..20 {
        if let Some(child) = start_save(&sim, &sandbox, &upn, &dir) {
            kill_9(child);
            left = partials_in(&dir);
            if !left.is_empty() {
                break;
            }
        }
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            if e.file_name() != "notes.txt" {
                std::fs::remove_file(e.path()).expect("rm");
            }
        }
    }
    assert!(!left.is_empty(), "never caught a save with its partial");
    let out = sandbox
        .spawnable(&sim)
        .args(["save", "-m", &upn, "-o"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(partials_in(&dir), Vec::<String>::new());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "the export and the user's file: {names:?}");
    assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");
    assert_eq!(
        std::fs::read(dir.join("notes.txt")).expect("read"),
        b"the user's own file"
    );
}

/// `atlas backup … 2>&1 | head -2`: the reader takes two lines and goes away while the
/// command is still writing (before, exit 101: a panic). Each long command, with stdout
/// and stderr on one pipe read like that, finishes its work with its documented code.
#[test]
fn head_2_of_each_long_command_never_panics() {
    let (sim, upn) = Sim::one_user(60);
    let sandbox = Sandbox::new();
    let head_2 = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let mut child = sandbox
            .spawnable(&sim)
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("clone"))
            .stderr(writer)
            .spawn()
            .expect("spawns");
        // Read two lines (or to the end), then close the pipe as `head -2` does.
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(reader));
        let _ = lines.next();
        let _ = lines.next();
        drop(lines);
        let status = child.wait().expect("waits");
        status.code()
    };
    assert_eq!(head_2(&["init"]), Some(0));
    // -vv logs a line per request: far more than two lines.
    assert_eq!(head_2(&["-vv", "backup", "-m", &upn]), Some(0), "backup");
    sim.handle
        .add_message(
            &upn,
            "inbox",
            atlas_sim::NewMessage::text("One more", "for the second snapshot"),
        )
        .expect("add");
    assert_eq!(head_2(&["-vv", "backup", "-m", &upn]), Some(0), "backup");
    assert_eq!(head_2(&["-vv", "list", "-m", &upn]), Some(0), "list");
    assert_eq!(head_2(&["-vv", "verify", "--read-data"]), Some(0), "verify");
    let zip = sandbox.cwd().join("head.zip");
    assert_eq!(
        head_2(&["-vv", "save", "-m", &upn, "-o", &zip.display().to_string()]),
        Some(0),
        "save"
    );
    assert!(zip.is_file(), "the export was written");
    // The export itself to a reader that goes away: not done (exit 1), no panic, no file.
    assert_eq!(
        head_2(&["save", "-m", &upn, "-o", "-"]),
        Some(1),
        "save -o -"
    );
    assert_eq!(
        head_2(&["-vv", "restore", "-m", &upn, "--root", "Restored for head"]),
        Some(0),
        "restore"
    );
    assert_eq!(
        head_2(&["-vv", "forget", "--keep-last", "1", "--prune"]),
        Some(0),
        "forget --prune"
    );
    let out = sandbox.run(&sim, &["--json", "list", "-m", &upn]);
    assert_eq!(
        json_of(&out)["snapshots"].as_array().map(Vec::len),
        Some(1),
        "both backups were committed and one was forgotten"
    );
    let unlock = sandbox.run(&sim, &["--json", "unlock"]);
    assert_eq!(
        json_of(&unlock)["removed"],
        serde_json::json!([]),
        "nothing left"
    );
}

/// SIGTERM in the middle of a restore: like the first Ctrl+C, the items in flight finish,
/// the run reports what it did and exits 2 (partial) instead of dying with 143; the same
/// command run again completes it (exit 0) without duplicating anything.
#[test]
fn sigterm_mid_restore_exits_2_and_the_same_command_completes_it() {
    let (sim, upn) = Sim::one_user(300);
    let sandbox = Sandbox::new();
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let restore = [
        "restore",
        "-m",
        upn.as_str(),
        "--root",
        "Stopped and resumed",
    ];
    set_latency(&sim, 15);
    sim.handle.reset_counters();
    let mut child = sandbox
        .spawnable(&sim)
        .args(restore)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.handle.counters().total_requests() < 60 {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "restore ended too soon"
        );
        assert!(Instant::now() < deadline, "restore never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "TERM");
    let out = wait_with_timeout(child);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    set_latency(&sim, 0);
    let out = sandbox.run(&sim, &restore);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("every folder holds every restored message"),
        "{}",
        output_text(&out)
    );
}
