//! Scale-out (issue 15): N `atlas backup --shard i/N` processes at once on one S3
//! repository (the moto server of `scripts/s3-server.sh`) and the simulator, as the pods of
//! a Kubernetes Indexed Job run them. Together they back up every mailbox exactly once,
//! lose nothing and never block each other; a worker killed mid-run leaves nothing its
//! rerun cannot finish. Without the S3 server the S3 test prints a SKIPPED line.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atlas_sim::{FaultConfig, SimConfig};

use super::graph_e2e::Sim;
use super::s3_e2e::{S3, moto_endpoint};
use super::{PASSPHRASE, Sandbox, output_text};

const WORKERS: u32 = 3;

/// `atlas` as a plain `std` command (to spawn and kill it) for the simulator and a bucket.
fn worker(sandbox: &Sandbox, sim: &Sim, s3: &S3) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("atlas"));
    cmd.env_clear()
        .current_dir(sandbox.cwd())
        .env("HOME", sandbox.home())
        .env("ATLAS_KDF", "scrypt-n14")
        .envs(sim.graph_env())
        .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
        .env("ATLAS_S3_ENDPOINT", &s3.endpoint)
        .env("ATLAS_S3_ACCESS_KEY", "test-access")
        .env("ATLAS_S3_SECRET_KEY", "test-secret")
        .env("ATLAS_S3_BUCKET", &s3.bucket)
        .env("ATLAS_S3_FORCE_PATH_STYLE", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(sandbox: &Sandbox, sim: &Sim, s3: &S3, args: &[&str]) -> std::process::Output {
    worker(sandbox, sim, s3).args(args).output().expect("runs")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {}", output_text(out)))
}

/// Shard `index` of [`WORKERS`], started (not waited for). `auto/N` with the index in
/// `JOB_COMPLETION_INDEX`, as in a pod, for every other worker.
fn spawn_shard(sandbox: &Sandbox, sim: &Sim, s3: &S3, index: u32) -> Child {
    let mut cmd = worker(sandbox, sim, s3);
    cmd.args(["--json", "backup", "--shard"]);
    if index % 2 == 1 {
        cmd.arg(format!("auto/{WORKERS}"))
            .env("JOB_COMPLETION_INDEX", index.to_string());
    } else {
        cmd.arg(format!("{index}/{WORKERS}"));
    }
    cmd.spawn().expect("spawns")
}

/// Every mailbox of the repository: (snapshots, latest status, last backup), from
/// `atlas list --json`.
fn listing(sandbox: &Sandbox, sim: &Sim, s3: &S3) -> BTreeMap<String, (u64, String, String)> {
    let out = run(sandbox, sim, s3, &["--json", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    json_of(&out)["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| {
            (
                m["mailbox"].as_str().expect("mailbox").to_owned(),
                (
                    m["snapshots"].as_u64().expect("snapshots"),
                    m["latestStatus"].as_str().unwrap_or_default().to_owned(),
                    m["lastBackup"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

/// `verify` finds nothing wrong and `report --compare-tenant` nothing unprotected.
fn assert_verified_and_protected(sandbox: &Sandbox, sim: &Sim, s3: &S3) {
    let out = run(sandbox, sim, s3, &["--json", "verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = run(
        sandbox,
        sim,
        s3,
        &["--json", "report", "--max-age", "1h", "--compare-tenant"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = json_of(&out);
    for m in report["mailboxes"].as_array().expect("mailboxes") {
        assert_eq!(m["state"], "protected", "{m}");
    }
}

#[test]
fn three_shards_at_once_back_up_every_mailbox_once_and_a_killed_shard_is_rerun() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let sim = Sim::start(SimConfig {
        users: 10,
        shared_mailboxes: 2,
        messages_per_user: 60,
        accounts_without_mailbox: false,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let s3 = S3::new(&endpoint);
    let out = run(&sandbox, &sim, &s3, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // Round 1: three workers at once, each with its own share.
    let children: Vec<Child> = (0..WORKERS)
        .map(|i| spawn_shard(&sandbox, &sim, &s3, i))
        .collect();
    let mut owners: BTreeMap<String, u32> = BTreeMap::new();
    let mut selected = BTreeSet::new();
    for (i, child) in (0..WORKERS).zip(children) {
        let out = child.wait_with_output().expect("waits");
        assert_eq!(
            out.status.code(),
            Some(0),
            "shard {i}: {}",
            output_text(&out)
        );
        let report = json_of(&out);
        super::json_schemas::validate("backup", &report).expect("documented");
        assert_eq!(report["shard"]["index"], i, "{report}");
        assert_eq!(report["shard"]["count"], WORKERS, "{report}");
        let mailboxes = report["mailboxes"].as_array().expect("mailboxes");
        assert_eq!(report["shard"]["mailboxes"], mailboxes.len(), "{report}");
        selected.insert(report["shard"]["selected"].as_u64().expect("selected"));
        for m in mailboxes {
            assert_eq!(m["result"], "complete", "shard {i}: {m}");
            let name = m["mailbox"].as_str().expect("mailbox").to_owned();
            assert!(
                owners.insert(name.clone(), i).is_none(),
                "{name} backed up by two shards"
            );
        }
    }
    // Every worker saw the same selection, and together they covered all of it.
    assert_eq!(selected.len(), 1, "{selected:?}");
    let all = usize::try_from(*selected.first().expect("one")).expect("fits");
    assert_eq!(owners.len(), all);
    assert!(all >= 8, "the tenant's mailboxes: {owners:?}");
    assert!(
        (0..WORKERS).all(|i| owners.values().any(|&o| o == i)),
        "every shard had work: {owners:?}"
    );
    let first = listing(&sandbox, &sim, &s3);
    assert_eq!(
        first.keys().cloned().collect::<BTreeSet<_>>(),
        owners.keys().cloned().collect(),
    );
    for (mailbox, (snapshots, status, _)) in &first {
        assert_eq!(*snapshots, 1, "{mailbox}: exactly one snapshot");
        assert_eq!(status, "complete", "{mailbox}");
    }
    assert_verified_and_protected(&sandbox, &sim, &s3);

    // Round 2: new mail everywhere (shard 1's mailboxes get much more, so that it is
    // still downloading when killed: content already held is reused, even with --full),
    // a slow Graph; shard 1 is killed (SIGKILL) in the middle while the others finish,
    // then shard 1 alone runs again, as the Job's retry of that index does.
    for (mailbox, owner) in &owners {
        let n = if *owner == 1 { 150 } else { 10 };
        for i in 0..n {
            sim.handle
                .add_message(
                    mailbox,
                    "inbox",
                    atlas_sim::NewMessage::text(&format!("round 2 {i}"), "to download"),
                )
                .expect("add");
        }
    }
    sim.handle.set_faults(FaultConfig {
        latency: Duration::from_millis(10),
        ..FaultConfig::default()
    });
    sim.handle.reset_counters();
    let mut children: Vec<Child> = (0..WORKERS)
        .map(|i| spawn_shard(&sandbox, &sim, &s3, i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.handle.counters().total_requests() < 150 {
        assert!(Instant::now() < deadline, "the workers never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let victim = &mut children[1];
    assert!(
        victim.try_wait().expect("polls").is_none(),
        "shard 1 ended before it could be killed"
    );
    victim.kill().expect("SIGKILL");
    for (i, child) in (0..WORKERS).zip(children) {
        let out = child.wait_with_output().expect("waits");
        if i == 1 {
            assert_eq!(out.status.code(), None, "shard 1 was killed");
        } else {
            assert_eq!(
                out.status.code(),
                Some(0),
                "shard {i}: {}",
                output_text(&out)
            );
        }
    }
    sim.handle.set_faults(FaultConfig::default());
    let rerun = spawn_shard(&sandbox, &sim, &s3, 1)
        .wait_with_output()
        .expect("waits");
    assert_eq!(rerun.status.code(), Some(0), "{}", output_text(&rerun));
    for m in json_of(&rerun)["mailboxes"].as_array().expect("mailboxes") {
        assert_eq!(m["result"], "complete", "{m}");
        assert_eq!(owners[m["mailbox"].as_str().expect("mailbox")], 1, "{m}");
    }

    // Every mailbox has a new complete snapshot; nothing is lost or left locked.
    let second = listing(&sandbox, &sim, &s3);
    assert_eq!(second.len(), first.len());
    for (mailbox, (snapshots, status, last)) in &second {
        let (_, _, before) = &first[mailbox];
        assert!(*snapshots >= 2, "{mailbox}: {snapshots}");
        assert_eq!(status, "complete", "{mailbox}");
        assert!(last > before, "{mailbox}: {last} after {before}");
    }
    assert_verified_and_protected(&sandbox, &sim, &s3);
    let out = run(&sandbox, &sim, &s3, &["--json", "unlock"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(json_of(&out)["kept"], serde_json::json!([]));
}

#[test]
fn bad_shard_values_are_usage_errors() {
    let sandbox = Sandbox::new();
    sandbox.atlas().arg("init").assert().success();
    for (spec, index, expected) in [
        ("3/3", None, "less than N"),
        ("1/0", None, "at least 1"),
        ("x/3", None, "whole number"),
        ("2", None, "I/N"),
        ("auto/3", None, "JOB_COMPLETION_INDEX, which is not set"),
        ("auto/3", Some("3"), "JOB_COMPLETION_INDEX=3"),
        ("auto/3", Some("first"), "whole number"),
        ("auto/0", Some("0"), "at least 1"),
    ] {
        let mut cmd = sandbox.atlas();
        if let Some(index) = index {
            cmd.env("JOB_COMPLETION_INDEX", index);
        }
        let out = cmd
            .args(["backup", "--shard", spec])
            .output()
            .expect("runs");
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(3), "{spec} {index:?}: {text}");
        assert!(text.contains(expected), "{spec} {index:?}: {text}");
    }
}
