//! Every command's `--json` document against its JSON Schema (docs/schemas/atlas.schema.json,
//! explained in docs/JSON.md), checked by an independent validator: Python's `jsonschema`
//! (installed by `.ci/run`). The schemas forbid undocumented fields, so a field added,
//! renamed or re-typed without updating the documentation fails here.

use std::path::{Path, PathBuf};

use atlas_sim::SimConfig;
use serde_json::Value;

use super::graph_e2e::Sim;
use super::{Sandbox, json, output_text};

const VALIDATE: &str = r##"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit("Python's jsonschema is missing: python3 -m pip install jsonschema (.ci/run does)")
schema = json.load(open(sys.argv[1], encoding="utf-8"))
schema["$ref"] = "#/$defs/" + sys.argv[2]
validator = jsonschema.Draft202012Validator(schema)
validator.check_schema(schema)
doc = json.load(open(sys.argv[3], encoding="utf-8"))
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
for e in errors[:10]:
    print("/".join(str(p) for p in e.absolute_path) or "(document)", ":", e.message[:400])
sys.exit(1 if errors else 0)
"##;

fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/atlas.schema.json")
}

/// `Ok` when `doc` is valid against the schema's definition `name`, else the errors.
pub(super) fn validate(name: &str, doc: &Value) -> Result<(), String> {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), doc.to_string()).expect("write");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema_file())
        .arg(name)
        .arg(file.path())
        .output()
        .expect("python3 runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(output_text(&out))
    }
}

/// The document on stdout is valid against `name`; returns it.
pub(super) fn assert_schema(name: &str, out: &std::process::Output) -> Value {
    let doc = json(out);
    if let Err(errors) = validate(name, &doc) {
        panic!("--json output is not a valid `{name}` document:\n{errors}\n{doc}");
    }
    doc
}

/// Run `args` with `cmd`, expect `code`, check the document against `name`.
fn check(mut cmd: assert_cmd::Command, args: &[&str], code: i32, name: &str) -> Value {
    let out = cmd.arg("--json").args(args).output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        output_text(&out)
    );
    assert_schema(name, &out)
}

#[test]
fn the_validator_rejects_what_the_convention_forbids() {
    let good = serde_json::json!({
        "schemaVersion": 1,
        "outcome": "created",
        "tenantId": "t",
        "repository": "/r"
    });
    validate("init", &good).expect("valid");
    for bad in [
        // snake_case key
        serde_json::json!({"schemaVersion": 1, "outcome": "created", "tenant_id": "t", "repository": "/r"}),
        // no schemaVersion
        serde_json::json!({"outcome": "created", "tenantId": "t", "repository": "/r"}),
        // snake_case value
        serde_json::json!({"schemaVersion": 1, "outcome": "already_initialized", "tenantId": "t", "repository": "/r"}),
    ] {
        assert!(validate("init", &bad).is_err(), "accepted {bad}");
    }
    // A size as a float of MiB, a timestamp with an offset instead of UTC.
    let doc = |size: Value, started: &str| {
        serde_json::json!({
            "schemaVersion": 1,
            "mailbox": "a@b",
            "snapshots": [{"id": "4c6e2231-3947-43b5-9635-110f74019810", "started": started,
                "finished": "2026-01-01T00:00:00Z", "status": "complete", "folders": 1,
                "items": size, "errors": 0, "tool": "atlas"}]
        })
    };
    validate(
        "listSnapshots",
        &doc(Value::from(3), "2026-01-01T00:00:00.123Z"),
    )
    .expect("valid");
    assert!(
        validate(
            "listSnapshots",
            &doc(Value::from(1.5), "2026-01-01T00:00:00Z")
        )
        .is_err()
    );
    assert!(
        validate(
            "listSnapshots",
            &doc(Value::from(3), "2026-01-01T01:00:00+01:00")
        )
        .is_err()
    );
}

#[test]
#[allow(clippy::too_many_lines)] // One tour of every command, in the order a user would go.
fn every_command_prints_one_documented_json_document() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 8,
        ..SimConfig::default()
    });
    let source = &sim.licensed_users()[0];
    let target = &sim
        .handle
        .users()
        .into_iter()
        .find(|u| u.has_mailbox && u.upn != *source)
        .expect("a second mailbox")
        .upn;
    let sandbox = Sandbox::new();

    check(sandbox.atlas_for(&sim), &["init"], 0, "init");
    check(sandbox.against(&sim), &["mailboxes"], 0, "mailboxes");

    // A partial backup first (one message fails), so item errors are in the document.
    let bad = sim.handle.dump_mailbox(source).expect("dump").messages[0]
        .id
        .clone();
    sim.handle
        .set_mime_failure(source, &bad, true)
        .expect("fault");
    let partial = check(
        sandbox.against(&sim),
        &["backup", "-m", source],
        2,
        "backup",
    );
    assert_eq!(partial["exitCode"], 2);
    sim.handle
        .set_mime_failure(source, &bad, false)
        .expect("fault");
    check(sandbox.against(&sim), &["backup"], 0, "backup");
    check(
        sandbox.against(&sim),
        &["status", "-m", source],
        0,
        "status",
    );

    let repo = || sandbox.atlas_for(&sim);
    check(repo(), &["list"], 0, "listMailboxes");
    let snaps = check(repo(), &["list", "-m", source], 0, "listSnapshots");
    let snap = snaps["snapshots"][0]["id"].as_str().expect("id").to_owned();
    let page = check(
        repo(),
        &["list", "-s", &snap, "--limit", "2"],
        0,
        "listItems",
    );
    assert_eq!(page["nextOffset"], 2, "{page}");
    let all = check(repo(), &["list", "-s", &snap, "-S"], 0, "listItems");
    let message = all["items"][0]["messageId"]
        .as_str()
        .expect("id")
        .to_owned();
    check(
        repo(),
        &["read", "-s", &snap, "--message", &message],
        0,
        "read",
    );
    check(repo(), &["verify"], 0, "verify");
    let zip = sandbox.cwd().join("out.zip");
    check(
        repo(),
        &["save", "-s", &snap, "-o", zip.to_str().expect("utf-8")],
        0,
        "save",
    );
    check(repo(), &["stats"], 0, "stats");
    check(repo(), &["stats", "-m", source], 0, "stats");

    let restore = ["restore", "-s", &snap, "-T", target, "-f", "Inbox"];
    let plan = [&restore[..], &["--dry-run"]].concat();
    check(sandbox.against(&sim), &plan, 0, "restorePlan");
    check(sandbox.against(&sim), &restore, 0, "restore");

    let replica = sandbox.dir.path().join("replica");
    let replica = replica.to_str().expect("utf-8");
    check(
        repo(),
        &["replicate", "--all", "--target-repository", replica],
        0,
        "replicate",
    );
    check(repo(), &["replicate", "--status"], 0, "replicateStatus");
    let mut rehydrated = sandbox.atlas_for(&sim);
    rehydrated.env("ATLAS_REPOSITORY", sandbox.dir.path().join("rehydrated"));
    check(
        rehydrated,
        &["rehydrate", "--all", "--source-repository", replica],
        0,
        "replicate",
    );

    check(
        repo(),
        &["forget", "--keep-last", "1", "--dry-run"],
        0,
        "forget",
    );
    check(
        repo(),
        &["forget", "--keep-last", "1", "--prune", "--dry-run"],
        0,
        "forget",
    );
    check(
        repo(),
        &["forget", "--keep-last", "1", "--prune"],
        0,
        "forget",
    );
    check(repo(), &["delete", "-s", &snap, "-y"], 0, "delete");

    // storage-check needs S3; without the test server it is a usage error — a document too.
    if let Ok(endpoint) = std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        let mut s3 = sandbox.atlas_for(&sim);
        s3.env_remove("ATLAS_REPOSITORY")
            .env("ATLAS_S3_ENDPOINT", endpoint)
            .env("ATLAS_S3_ACCESS_KEY", "test-access")
            .env("ATLAS_S3_SECRET_KEY", "test-secret")
            .env(
                "ATLAS_S3_BUCKET",
                format!("atlas-schema-{:016x}", rand::random::<u64>()),
            )
            .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
        check(s3, &["storage-check"], 0, "storageCheck");
    } else {
        let error = check(repo(), &["storage-check"], 3, "error");
        assert_eq!(error["error"]["kind"], "usage");
    }

    // Failures are documents too: usage (exit 3), from clap and from a command, and
    // failure (exit 1).
    let error = check(repo(), &["list", "-m", "nobody@contoso.com"], 3, "error");
    assert_eq!(error["error"]["exitCode"], 3);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nobody@contoso.com")),
        "{error}"
    );
    check(sandbox.bare(), &["list", "--no-such-flag"], 3, "error");
    let mut wrong = sandbox.atlas_for(&sim);
    wrong.env("ATLAS_ENCRYPTION_PASSPHRASE", "not the passphrase at all");
    let error = check(wrong, &["list"], 1, "error");
    assert_eq!(error["error"]["kind"], "failure");

    // Damage is named in the document (exit 1).
    for dir in std::fs::read_dir(sandbox.repo().join("packs")).expect("packs") {
        for pack in std::fs::read_dir(dir.expect("entry").path()).expect("pack dir") {
            let path = pack.expect("entry").path();
            let mut bytes = std::fs::read(&path).expect("pack");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(&path, bytes).expect("write");
        }
    }
    let damaged = check(repo(), &["verify", "--read-data=100%"], 1, "verify");
    assert!(
        damaged["damage"].as_array().is_some_and(|d| !d.is_empty()),
        "{damaged}"
    );

    // Last, as it changes the passphrase.
    let mut passwd = sandbox.atlas_for(&sim);
    passwd.env(
        "ATLAS_NEW_ENCRYPTION_PASSPHRASE",
        "another long passphrase here",
    );
    check(passwd, &["key", "passwd"], 0, "keyPasswd");
}

#[test]
fn sim_serve_prints_a_documented_ready_line() {
    use std::io::{BufRead as _, BufReader};

    let sandbox = Sandbox::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("atlas"))
        .env_clear()
        .current_dir(sandbox.cwd())
        .env("HOME", sandbox.home())
        .args(["--json", "sim", "serve", "--users", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reads the ready line");
    child.kill().expect("stops");
    let _ = child.wait();
    let doc: Value = serde_json::from_str(&line).expect("JSON");
    validate("simServe", &doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
}

#[test]
fn list_json_returns_every_message_not_the_first_50() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 61,
        ..SimConfig::default()
    });
    let upn = sim.licensed_users().remove(0);
    let sandbox = Sandbox::new();
    sandbox.against(&sim).arg("init").assert().success();
    let out = sandbox
        .against(&sim)
        .args(["backup", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let snaps = check(
        sandbox.atlas_for(&sim),
        &["list", "-m", &upn],
        0,
        "listSnapshots",
    );
    let snap = snaps["snapshots"][0]["id"].as_str().expect("id").to_owned();

    let all = check(
        sandbox.atlas_for(&sim),
        &["list", "-s", &snap],
        0,
        "listItems",
    );
    let total = all["total"].as_u64().expect("total");
    assert!(total > 50, "{total}");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(total as usize));
    assert!(all.get("nextOffset").is_none(), "{all}");

    // Paging is explicit: --limit, then --offset from nextOffset.
    let first = check(
        sandbox.atlas_for(&sim),
        &["list", "-s", &snap, "--limit", "50"],
        0,
        "listItems",
    );
    assert_eq!(first["items"].as_array().map(Vec::len), Some(50));
    assert_eq!(first["nextOffset"], 50);
    let rest = check(
        sandbox.atlas_for(&sim),
        &["list", "-s", &snap, "--offset", "50"],
        0,
        "listItems",
    );
    assert_eq!(
        rest["items"].as_array().map(Vec::len),
        Some(total as usize - 50)
    );
    assert_eq!(rest["items"][0]["index"], 51);
    assert!(rest.get("nextOffset").is_none(), "{rest}");
}
