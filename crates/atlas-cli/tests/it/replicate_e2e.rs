//! `atlas replicate` and `atlas rehydrate` end to end: back up from the Graph simulator,
//! replicate to a second repository (a local directory, and an S3 bucket on moto when
//! `ATLAS_TEST_S3_ENDPOINT` is set), list the status, destroy the primary, rehydrate it
//! from the replica, verify, restore into the simulator, and back up again. Backups into
//! a replica are refused unless forced; a target with another key is refused.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::path::Path;

use atlas_sim::SimConfig;

use super::graph_e2e::Sim;
use super::{PASSPHRASE, Sandbox, json, output_text};

fn start_sim() -> Sim {
    Sim::start(SimConfig {
        users: 6,
        messages_per_user: 12,
        ..SimConfig::default()
    })
}

/// `atlas` against the simulator with the repository at `repo`.
fn atlas(sandbox: &Sandbox, sim: &Sim, repo: &Path) -> assert_cmd::Command {
    let mut cmd = sandbox.bare();
    cmd.envs(sim.graph_env())
        .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
        .env("ATLAS_REPOSITORY", repo);
    cmd
}

fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> std::process::Output {
    cmd.args(args).output().expect("runs")
}

fn assert_code(out: &std::process::Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", output_text(out));
}

/// After the primary is gone: rehydrate from the replica described by `source_config`,
/// then verify, restore one mailbox into another, and back up again.
fn rehydrate_verify_restore_backup(
    sandbox: &Sandbox,
    sim: &Sim,
    source_config: &Path,
    source: &str,
    target: &str,
) {
    let primary = sandbox.repo();
    let out = run(
        atlas(sandbox, sim, &primary),
        &[
            "--json",
            "rehydrate",
            "--all",
            "--source-config",
            source_config.to_str().expect("utf-8 path"),
        ],
    );
    assert_code(&out, 0);
    let summary = json(&out);
    assert!(
        summary["snapshots"]
            .as_array()
            .is_some_and(|s| s.len() == 2),
        "{summary}"
    );
    assert!(
        !primary.join("_meta/replica").exists(),
        "rehydrate must not mark the primary as a replica"
    );

    assert_code(&run(atlas(sandbox, sim, &primary), &["verify", "--all"]), 0);

    let expected = sim
        .handle
        .dump_mailbox(source)
        .expect("dump")
        .messages
        .len();
    let out = run(
        atlas(sandbox, sim, &primary),
        &[
            "--json",
            "restore",
            "-m",
            source,
            "-T",
            target,
            "--root",
            "Recovered",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json(&out)["created"].as_u64(), Some(expected as u64));
    let restored = sim
        .handle
        .dump_mailbox(target)
        .expect("dump")
        .messages
        .iter()
        .filter(|m| m.folder_path.starts_with("Recovered"))
        .count();
    assert_eq!(restored, expected);

    // The next backup works on the rehydrated primary.
    assert_code(
        &run(atlas(sandbox, sim, &primary), &["backup", "-m", source]),
        0,
    );
    assert_code(&run(atlas(sandbox, sim, &primary), &["verify", "--all"]), 0);
}

#[test]
fn replicate_to_a_directory_destroy_the_primary_rehydrate_verify_restore() {
    let sim = start_sim();
    let users = sim.licensed_users();
    let (source, target) = (users[0].as_str(), users[1].as_str());
    let sandbox = Sandbox::new();
    let primary = sandbox.repo();
    let replica = sandbox.cwd().join("replica");

    assert_code(&run(atlas(&sandbox, &sim, &primary), &["init"]), 0);
    assert_code(
        &run(atlas(&sandbox, &sim, &primary), &["backup", "-m", source]),
        0,
    );
    assert_code(
        &run(atlas(&sandbox, &sim, &primary), &["backup", "-m", source]),
        0,
    );

    // Nothing to say before the first replication.
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &["--json", "replicate", "--status"],
    );
    assert_code(&out, 0);
    assert_eq!(json(&out)["records"], serde_json::json!([]));

    let replica_arg = replica.to_str().expect("utf-8 path");
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &[
            "--json",
            "replicate",
            "--all",
            "--target-repository",
            replica_arg,
        ],
    );
    assert_code(&out, 0);
    let first = json(&out);
    assert_eq!(
        first["snapshots"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    assert_eq!(first["initializedTarget"], true);
    let copied: u64 = first["snapshots"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["copied"].as_u64().expect("copied"))
        .sum();
    assert!(copied > 0);
    assert!(replica.join("_meta/replica").is_file());

    // Idempotent: a second run copies nothing.
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &[
            "--json",
            "replicate",
            "--all",
            "--target-repository",
            replica_arg,
        ],
    );
    assert_code(&out, 0);
    let again = json(&out);
    assert!(
        again["snapshots"]
            .as_array()
            .expect("array")
            .iter()
            .all(|s| s["copied"] == 0),
        "{again}"
    );

    // Status: one record per snapshot for this target.
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &["--json", "replicate", "--status"],
    );
    assert_code(&out, 0);
    let status = json(&out);
    let status = &status["records"];
    assert_eq!(status.as_array().map(Vec::len), Some(2), "{status}");
    assert!(
        status[0]["target"]
            .as_str()
            .is_some_and(|t| t.contains("replica"))
    );
    let out = run(atlas(&sandbox, &sim, &primary), &["replicate", "--status"]);
    assert_code(&out, 0);
    assert!(output_text(&out).contains(source), "{}", output_text(&out));

    // The replica verifies on its own, and refuses backups unless forced.
    assert_code(
        &run(atlas(&sandbox, &sim, &replica), &["verify", "--all"]),
        0,
    );
    let out = run(atlas(&sandbox, &sim, &replica), &["backup", "-m", source]);
    assert_code(&out, 3);
    assert!(
        output_text(&out).contains("replica"),
        "{}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains("--force"),
        "{}",
        output_text(&out)
    );

    // Copying onto itself is refused.
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &[
            "replicate",
            "--all",
            "--target-repository",
            primary.to_str().expect("utf-8"),
        ],
    );
    assert_code(&out, 3);

    // Disaster: the primary is destroyed. Rehydrate from a config file naming the replica
    // (relative to the file).
    std::fs::remove_dir_all(&primary).expect("primary deleted");
    sandbox.write("replica.json", r#"{"repository": "replica"}"#);
    rehydrate_verify_restore_backup(
        &sandbox,
        &sim,
        &sandbox.cwd().join("replica.json"),
        source,
        target,
    );
}

#[test]
fn replicate_refuses_a_target_with_another_key() {
    let sim = start_sim();
    let source = sim.licensed_users()[0].clone();
    let sandbox = Sandbox::new();
    let primary = sandbox.repo();
    let other = sandbox.cwd().join("other");
    assert_code(&run(atlas(&sandbox, &sim, &primary), &["init"]), 0);
    assert_code(
        &run(atlas(&sandbox, &sim, &primary), &["backup", "-m", &source]),
        0,
    );
    // Another repository (its own key) at the target, under another passphrase …
    let mut init = atlas(&sandbox, &sim, &other);
    init.env(
        "ATLAS_ENCRYPTION_PASSPHRASE",
        "another rather long passphrase",
    );
    assert_code(&run(init, &["init"]), 0);
    let before = std::fs::read(other.join("_meta/dek.enc")).expect("key");
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &[
            "replicate",
            "--all",
            "--target-repository",
            other.to_str().expect("utf-8"),
        ],
    );
    // The target named on the command line is the wrong one: a usage error (exit 3).
    assert_code(&out, 3);
    assert!(
        output_text(&out).contains("different data key"),
        "{}",
        output_text(&out)
    );
    // … and nothing was written there.
    assert_eq!(
        std::fs::read(other.join("_meta/dek.enc")).expect("key"),
        before
    );
    assert!(!other.join("_meta/replica").exists());
    assert!(!other.join("snapshots").exists());
}

#[test]
fn replicate_to_s3_destroy_the_primary_rehydrate_from_s3() {
    let endpoint = match std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED replicate to S3: ATLAS_TEST_S3_ENDPOINT is not set \
                  (run `bash scripts/test.sh`)\n",
            );
            return;
        }
    };
    let sim = start_sim();
    let users = sim.licensed_users();
    let (source, target) = (users[0].as_str(), users[1].as_str());
    let sandbox = Sandbox::new();
    let primary = sandbox.repo();
    let bucket = format!("atlas-repl-{:016x}", rand::random::<u64>());
    sandbox.write(
        "replica-s3.json",
        &serde_json::json!({
            "s3_endpoint": endpoint,
            "s3_access_key": "test-access",
            "s3_secret_key": "test-secret",
            "s3_bucket": bucket,
            "s3_force_path_style": true,
        })
        .to_string(),
    );
    let config = sandbox.cwd().join("replica-s3.json");
    let config_arg = config.to_str().expect("utf-8");

    assert_code(&run(atlas(&sandbox, &sim, &primary), &["init"]), 0);
    assert_code(
        &run(atlas(&sandbox, &sim, &primary), &["backup", "-m", source]),
        0,
    );
    assert_code(
        &run(atlas(&sandbox, &sim, &primary), &["backup", "-m", source]),
        0,
    );
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &[
            "--json",
            "replicate",
            "-m",
            source,
            "--target-config",
            config_arg,
        ],
    );
    assert_code(&out, 0);
    assert!(!output_text(&out).contains("test-secret"));
    let summary = json(&out);
    assert!(
        summary["target"]
            .as_str()
            .is_some_and(|t| t.contains(&bucket)),
        "{summary}"
    );
    let server_side = |summary: &serde_json::Value| -> u64 {
        summary["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .map(|s| s["copiedServerSide"].as_u64().expect("copiedServerSide"))
            .sum()
    };
    assert_eq!(
        server_side(&summary),
        0,
        "a local primary cannot be copied server-side: {summary}"
    );

    // From the S3 replica to a second bucket on the same server with the same access key:
    // the server copies the objects itself.
    let second = format!("atlas-repl-{:016x}", rand::random::<u64>());
    sandbox.write(
        "replica-s3-2.json",
        &serde_json::json!({
            "s3_endpoint": endpoint,
            "s3_access_key": "test-access",
            "s3_secret_key": "test-secret",
            "s3_bucket": second,
            "s3_force_path_style": true,
        })
        .to_string(),
    );
    let mut from_s3 = atlas(&sandbox, &sim, &primary);
    from_s3
        .env_remove("ATLAS_REPOSITORY")
        .env("ATLAS_S3_ENDPOINT", &endpoint)
        .env("ATLAS_S3_ACCESS_KEY", "test-access")
        .env("ATLAS_S3_SECRET_KEY", "test-secret")
        .env("ATLAS_S3_BUCKET", &bucket)
        .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
    let second_config = sandbox.cwd().join("replica-s3-2.json");
    let out = run(
        from_s3,
        &[
            "--json",
            "replicate",
            "--all",
            "--target-config",
            second_config.to_str().expect("utf-8"),
        ],
    );
    assert_code(&out, 0);
    let chained = json(&out);
    let copied: u64 = chained["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["copied"].as_u64().expect("copied"))
        .sum();
    assert!(copied > 0, "{chained}");
    assert_eq!(
        server_side(&chained),
        copied,
        "bucket to bucket on one endpoint: every object copied server-side: {chained}"
    );
    let out = run(
        atlas(&sandbox, &sim, &primary),
        &["--json", "replicate", "--status"],
    );
    assert_code(&out, 0);
    assert_eq!(json(&out)["records"].as_array().map(Vec::len), Some(2));

    std::fs::remove_dir_all(&primary).expect("primary deleted");
    rehydrate_verify_restore_backup(&sandbox, &sim, &config, source, target);
}
