//! The `atlas` binary on S3 (the moto server of `scripts/s3-server.sh`, found through
//! `ATLAS_TEST_S3_ENDPOINT`; `bash scripts/test.sh` starts it) with the Graph simulator:
//! backup/list/verify/save, Object Lock for snapshots proven through the store,
//! delete under lock, storage-check verdicts, and concurrent processes on one bucket.
//! Without the server every test prints a SKIPPED line and returns.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;

use atlas_core::ports::{BlobStore, LockMode, PutOptions, StoreError, StoreKey};
use atlas_core::repo::{KEY_BLOB_KEY, Passphrase, Repository};
use atlas_sim::SimConfig;
use atlas_store::S3Store;
use atlas_store::s3::{Credentials, S3Config};
use chrono::Utc;

use super::graph_e2e::Sim;
use super::{PASSPHRASE, Sandbox, json, output_text};

const SKIP: &str = "SKIPPED atlas-cli S3 end-to-end tests: ATLAS_TEST_S3_ENDPOINT is not set \
                    (run `bash scripts/test.sh`, or `eval \"$(scripts/s3-server.sh start)\"`)";

pub(super) fn moto_endpoint() -> Option<String> {
    match std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            // Past the harness's capture, so the skip is visible.
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), format!("{SKIP}\n").as_bytes());
            None
        }
    }
}

fn fresh_bucket() -> String {
    format!("atlas-e2e-{}", &uuid_like()[..16])
}

/// A random lower-case hex string (bucket names must be unique per test run).
fn uuid_like() -> String {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("hex digit"))
        .collect()
}

pub(super) struct S3 {
    pub(super) endpoint: String,
    pub(super) bucket: String,
}

impl S3 {
    pub(super) fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            bucket: fresh_bucket(),
        }
    }

    /// The store the binary uses (bucket root), for checks behind its back.
    pub(super) fn store(&self) -> S3Store {
        let mut cfg = S3Config::shared_bucket(
            &self.bucket,
            "x",
            "us-east-1",
            Credentials::new("test-access", "test-secret"),
        )
        .expect("config")
        .endpoint(self.endpoint.as_str())
        .path_style(true);
        cfg.key_prefix = String::new();
        S3Store::new(cfg).expect("store")
    }
}

impl Sandbox {
    /// `atlas` for the simulator and the S3 bucket.
    fn on_s3(&self, sim: &Sim, s3: &S3) -> assert_cmd::Command {
        let mut cmd = self.bare();
        cmd.envs(sim.graph_env())
            .env("ATLAS_ENCRYPTION_PASSPHRASE", PASSPHRASE)
            .env("ATLAS_S3_ENDPOINT", &s3.endpoint)
            .env("ATLAS_S3_ACCESS_KEY", "test-access")
            .env("ATLAS_S3_SECRET_KEY", "test-secret")
            .env("ATLAS_S3_BUCKET", &s3.bucket)
            .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
        cmd
    }
}

fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> std::process::Output {
    cmd.args(args).output().expect("runs")
}

fn assert_code(out: &std::process::Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", output_text(out));
}

#[test]
fn backup_to_s3_with_object_lock_then_read_verify_and_delete_under_lock() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let sim = Sim::start(SimConfig::default());
    let upn = sim.licensed_users()[0].clone();
    let sandbox = Sandbox::new();
    let s3 = S3::new(&endpoint);

    // Missing bucket: storage-check says so (ready: `atlas init` creates it), and a
    // read-only command says the bucket is missing.
    let out = run(sandbox.on_s3(&sim, &s3), &["--json", "storage-check"]);
    assert_code(&out, 0);
    let report = json(&out);
    assert_eq!(report["bucketExists"], false);
    assert_eq!(report["reachable"], true);
    let out = run(sandbox.on_s3(&sim, &s3), &["list"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        output_text(&out).contains(&s3.bucket),
        "{}",
        output_text(&out)
    );
    assert!(
        !output_text(&out).contains("test-secret"),
        "no secret in errors"
    );

    // A backup into the missing bucket is refused and creates nothing (issue 11: only
    // `atlas init` creates a repository).
    let out = run(sandbox.on_s3(&sim, &s3), &["backup", "-m", &upn]);
    assert_code(&out, 1);
    assert!(
        output_text(&out).contains("no repository at") && output_text(&out).contains("atlas init"),
        "{}",
        output_text(&out)
    );
    let out = run(sandbox.on_s3(&sim, &s3), &["--json", "storage-check"]);
    assert_eq!(
        json(&out)["bucketExists"],
        false,
        "the bucket was not created"
    );

    // init --object-lock creates the bucket lock-enabled; a locked backup locks its snapshot.
    assert_code(
        &run(sandbox.on_s3(&sim, &s3), &["init", "--object-lock"]),
        0,
    );
    let out = run(
        sandbox.on_s3(&sim, &s3),
        &[
            "--json",
            "backup",
            "-m",
            &upn,
            "--retention-days",
            "1",
            "--lock-mode",
            "governance",
        ],
    );
    assert_code(&out, 0);
    let report = json(&out);
    let lock = &report["objectLock"][0];
    assert_eq!(lock["mode"], "governance", "{report}");
    assert!(lock["error"].is_null(), "{report}");
    assert!(lock["objects"].as_u64().expect("count") >= 6, "{report}");

    // storage-check on the locked bucket with the lock: ready, probe refused.
    let out = run(
        sandbox.on_s3(&sim, &s3),
        &["--json", "storage-check", "--lock-mode", "governance"],
    );
    assert_code(&out, 0);
    let check = json(&out);
    assert_eq!(check["objectLock"], true);
    assert_eq!(check["lockProbe"]["deleteRefused"], true);
    assert_eq!(check["ready"], true);

    // list / verify / save work on S3.
    let out = run(sandbox.on_s3(&sim, &s3), &["--json", "list", "-m", &upn]);
    assert_code(&out, 0);
    let snap = json(&out)["snapshots"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_code(&run(sandbox.on_s3(&sim, &s3), &["verify"]), 0);
    let zip = sandbox.cwd().join("out.zip");
    let mut cmd = sandbox.on_s3(&sim, &s3);
    cmd.args(["--json", "save", "-s", &snap, "-o"]).arg(&zip);
    let out = cmd.output().expect("runs");
    assert_code(&out, 0);
    assert!(zip.exists());

    // Behind the binary's back: the record, a pack and the key are retained ≥ 1 day and
    // can be neither deleted nor replaced.
    sim.runtime.block_on(async {
        let store = s3.store();
        let keys: Vec<String> = store
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key.as_str().to_owned())
            .collect();
        let record = keys
            .iter()
            .find(|k| k.starts_with("snapshots/"))
            .expect("record")
            .clone();
        let pack = keys
            .iter()
            .find(|k| k.starts_with("packs/"))
            .expect("pack")
            .clone();
        let soon = Utc::now() + chrono::Duration::hours(23);
        for key in [record.as_str(), pack.as_str(), KEY_BLOB_KEY, "config"] {
            let k = StoreKey::new(key).expect("key");
            let r = store
                .retention(&k)
                .await
                .expect("head")
                .unwrap_or_else(|| panic!("{key} is retained"));
            assert_eq!(r.mode, LockMode::Governance, "{key}");
            assert!(r.retain_until > soon, "{key}: {r:?}");
            let err = store.delete(&k).await.expect_err("delete refused");
            assert!(matches!(err, StoreError::Retained { .. }), "{key}: {err}");
            let err = store
                .put(&k, (&b"x"[..]).into(), PutOptions::CREATE)
                .await
                .expect_err("create over it refused");
            assert!(
                matches!(err, StoreError::AlreadyExists { .. }),
                "{key}: {err}"
            );
            // An overwrite only adds a version: the retained one stays and is restored.
            let before = store.get(&k).await.expect("get");
            store
                .put(&k, (&b"tampered"[..]).into(), PutOptions::OVERWRITE)
                .await
                .expect("overwrite adds a version");
            let versions = store.versions(&k).await.expect("versions");
            assert!(versions.len() >= 2, "{key}: {versions:?}");
            let old = versions.iter().find(|v| !v.is_latest).expect("old version");
            assert!(
                store
                    .version_retention(&k, &old.version_id)
                    .await
                    .expect("retention")
                    .is_some(),
                "{key}: the old version is still retained"
            );
            // Put the original content back as the current version for the rest of the test.
            store
                .put(&k, before, PutOptions::OVERWRITE)
                .await
                .expect("restore");
        }
        let repo = Repository::open(
            Arc::new(s3.store()) as Arc<dyn BlobStore>,
            &sim.handle.tenant_id(),
            &Passphrase::new(PASSPHRASE),
        )
        .await
        .expect("opens");
        assert_eq!(repo.list_all_snapshots().await.expect("list").len(), 1);
    });

    // delete under the lock: reports the retained items and exits 1; the snapshot stays
    // complete (its record could not go, so nothing it needs went).
    let out = run(
        sandbox.on_s3(&sim, &s3),
        &["--json", "delete", "-m", &upn, "-y"],
    );
    assert_code(&out, 1);
    let text = output_text(&out);
    assert!(text.contains("snapshots/"), "{text}");
    assert_code(&run(sandbox.on_s3(&sim, &s3), &["verify"]), 0);
}

#[test]
fn storage_check_on_an_unlocked_bucket_and_a_locked_backup_refused_before_writing() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let sim = Sim::start(SimConfig::default());
    let upn = sim.licensed_users()[0].clone();
    let sandbox = Sandbox::new();
    let s3 = S3::new(&endpoint);

    // A plain init creates a plain (unlocked) bucket.
    assert_code(&run(sandbox.on_s3(&sim, &s3), &["init"]), 0);
    assert_code(&run(sandbox.on_s3(&sim, &s3), &["backup", "-m", &upn]), 0);
    let out = run(sandbox.on_s3(&sim, &s3), &["--json", "storage-check"]);
    assert_code(&out, 0);
    assert_eq!(json(&out)["objectLock"], false);

    let out = run(
        sandbox.on_s3(&sim, &s3),
        &[
            "storage-check",
            "--lock-mode",
            "compliance",
            "--retention-days",
            "30",
        ],
    );
    assert_code(&out, 1);
    let text = output_text(&out);
    assert!(text.contains("NOT READY"), "{text}");
    assert!(text.contains("Object Lock"), "{text}");

    // A locked backup into it fails before writing: still one snapshot.
    let out = run(
        sandbox.on_s3(&sim, &s3),
        &[
            "backup",
            "-m",
            &upn,
            "--retention-days",
            "1",
            "--lock-mode",
            "governance",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("Object Lock"),
        "{}",
        output_text(&out)
    );
    let out = run(sandbox.on_s3(&sim, &s3), &["--json", "list", "-m", &upn]);
    assert_code(&out, 0);
    assert_eq!(json(&out)["snapshots"].as_array().expect("array").len(), 1);
}

#[test]
fn parallel_inits_agree_on_one_key_and_parallel_backups_of_two_mailboxes_both_verify() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let sim = Sim::start(SimConfig {
        users: 6,
        messages_per_user: 10,
        ..SimConfig::default()
    });
    let mailboxes = sim.licensed_users();
    assert!(mailboxes.len() >= 2, "{mailboxes:?}");
    let sandbox = Sandbox::new();
    let s3 = S3::new(&endpoint);

    // Two inits race on an empty (missing) bucket: both succeed, and only one key was
    // ever written (the loser of the create-if-absent opens the winner's; when both
    // report "created", the core's race-free init still wrote one key — counted below
    // by the key's versions).
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mut cmd = sandbox.on_s3(&sim, &s3);
                cmd.args(["--json", "init"]);
                scope.spawn(move || cmd.output().expect("runs"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut outcomes: Vec<String> = outs
        .iter()
        .map(|o| {
            assert_code(o, 0);
            json(o)["outcome"].as_str().expect("outcome").to_owned()
        })
        .collect();
    outcomes.sort();
    assert!(
        outcomes.contains(&"created".to_owned()),
        "one of the processes created the repository: {outcomes:?}"
    );
    let key_versions = sim.runtime.block_on(async {
        s3.store()
            .versions(&StoreKey::new(KEY_BLOB_KEY).expect("key"))
            .await
            .expect("versions")
    });
    assert_eq!(
        key_versions.len(),
        1,
        "one key was ever written: {key_versions:?}"
    );

    // Two backups of different mailboxes at once, each in its own process.
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = mailboxes[..2]
            .iter()
            .map(|upn| {
                let mut cmd = sandbox.on_s3(&sim, &s3);
                cmd.args(["--json", "backup", "-m", upn]);
                scope.spawn(move || cmd.output().expect("runs"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for o in &outs {
        assert_code(o, 0);
    }
    // Both snapshots exist and verify — written under the one key both processes used.
    for upn in &mailboxes[..2] {
        let out = run(sandbox.on_s3(&sim, &s3), &["--json", "list", "-m", upn]);
        assert_code(&out, 0);
        assert_eq!(
            json(&out)["snapshots"].as_array().expect("array").len(),
            1,
            "{upn}"
        );
    }
    assert_code(&run(sandbox.on_s3(&sim, &s3), &["verify"]), 0);
}

/// A bucket host name that does not resolve (a server without wildcard DNS reached with
/// virtual-hosted addressing): the error names the host and the hint names the setting.
#[test]
fn an_unresolvable_bucket_host_says_to_force_path_style() {
    let output = Sandbox::new()
        .atlas()
        .env_remove("ATLAS_REPOSITORY")
        .env("ATLAS_S3_ENDPOINT", "https://s3.nothing-here.invalid")
        // Virtual-hosted, as on AWS (a custom endpoint would get path style by itself).
        .env("ATLAS_S3_FORCE_PATH_STYLE", "false")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "secret-key-value")
        .arg("init")
        .output()
        .expect("runs");
    let all = output_text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("s3.nothing-here.invalid"), "{all}");
    assert!(
        all.contains("hint: set ATLAS_S3_FORCE_PATH_STYLE=true"),
        "{all}"
    );
    assert!(!all.contains("secret-key-value"), "{all}");
}

/// The same failure with `--json`: the error document carries the hint (stdout is one
/// JSON document, so a script sees what to change without parsing stderr).
#[test]
fn a_json_error_carries_the_hint() {
    let output = Sandbox::new()
        .atlas()
        .env_remove("ATLAS_REPOSITORY")
        .env("ATLAS_S3_ENDPOINT", "https://s3.nothing-here.invalid")
        .env("ATLAS_S3_FORCE_PATH_STYLE", "false")
        .env("ATLAS_S3_ACCESS_KEY", "access")
        .env("ATLAS_S3_SECRET_KEY", "secret-key-value")
        .args(["--json", "init"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let doc = super::json_schemas::assert_schema("error", &output);
    let hint = doc["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("ATLAS_S3_FORCE_PATH_STYLE=true"), "{doc}");
    assert!(
        output_text(&output).contains(&format!("hint: {hint}")),
        "stderr shows the same hint: {}",
        output_text(&output)
    );
}

/// Regression: `storage-check` listed store failures as bare text while every other
/// command added what to change. Each problem that comes from a store error now carries
/// the same hint, in text and in `--json` (`hints`, one per problem).
#[test]
fn storage_check_problems_carry_hints() {
    let sandbox = Sandbox::new();
    let check = |json: bool| {
        let mut cmd = sandbox.atlas();
        cmd.env_remove("ATLAS_REPOSITORY")
            .env("ATLAS_S3_ENDPOINT", "https://s3.nothing-here.invalid")
            .env("ATLAS_S3_FORCE_PATH_STYLE", "false")
            .env("ATLAS_S3_ACCESS_KEY", "access")
            .env("ATLAS_S3_SECRET_KEY", "secret-key-value");
        if json {
            cmd.arg("--json");
        }
        cmd.arg("storage-check").output().expect("runs")
    };
    let out = check(false);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("problem: "), "{text}");
    assert!(
        text.contains("hint: set ATLAS_S3_FORCE_PATH_STYLE=true"),
        "{text}"
    );

    let out = check(true);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("storageCheck", &out);
    let problems = doc["problems"].as_array().expect("problems");
    let hints = doc["hints"].as_array().expect("hints");
    assert!(!problems.is_empty(), "{doc}");
    assert_eq!(problems.len(), hints.len(), "{doc}");
    assert!(
        hints[0]
            .as_str()
            .is_some_and(|h| h.contains("ATLAS_S3_FORCE_PATH_STYLE")),
        "{doc}"
    );
}

/// An S3 endpoint behind a certificate from a private CA: without `ATLAS_CA_FILE` the run
/// fails at once naming the certificate (subject, issuer) and the setting to use; with it,
/// `init` works. The endpoint is `localhost` with a port: path style without being asked.
#[test]
fn ca_file_makes_a_private_ca_endpoint_work_and_its_absence_is_named() {
    use atlas_net::testing::{CA_NAME, SERVER_NAME, TestPki, tls_front};
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let pki = TestPki::new();
    let moto: std::net::SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let front = runtime.block_on(tls_front(&pki, moto));
    let sandbox = Sandbox::new();
    let bucket = fresh_bucket();
    let init = || {
        let mut cmd = sandbox.atlas();
        cmd.env_remove("ATLAS_REPOSITORY")
            .env(
                "ATLAS_S3_ENDPOINT",
                format!("https://localhost:{}", front.addr.port()),
            )
            .env("ATLAS_S3_ACCESS_KEY", "test-access")
            .env("ATLAS_S3_SECRET_KEY", "test-secret")
            .env("ATLAS_S3_BUCKET", &bucket)
            .arg("init");
        cmd
    };
    let out = init().output().expect("runs");
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("TLS"), "{all}");
    assert!(all.contains(SERVER_NAME) && all.contains(CA_NAME), "{all}");
    assert!(
        all.contains("hint: ") && all.contains("ATLAS_CA_FILE"),
        "{all}"
    );
    // One connection for the Atlas 1.x probe `init` makes first, one for `init` itself:
    // neither is retried (six attempts with backoff before).
    assert_eq!(front.connections(), 2, "not retried: {all}");

    pki.write_ca(&sandbox.cwd().join("private-ca.pem"));
    let out = init()
        .env("ATLAS_CA_FILE", "private-ca.pem")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    drop(runtime);
}
