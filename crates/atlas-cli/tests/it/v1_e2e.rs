//! The `atlas` binary on a TypeScript Atlas 1.3 repository (the checked-in fixture, a real
//! v1 bucket byte for byte): list, verify (and damage detection), save (read back by
//! Python's `email` package against `expected.json`), and `migrate --from-v1`. The v1
//! directory must never change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Sandbox, json, output_text};

pub(super) const V1_TENANT: &str = "ed344b8b-563e-428f-932f-e490291cc864";
pub(super) const V1_PASSPHRASE: &str = "fixture-passphrase-v1";
const LUCAS: &str = "lucas.johnson@simcorp.onmicrosoft.com";
const OMAR: &str = "omar.kowalski@simcorp.onmicrosoft.com";

/// Reads a save zip and checks every message against `expected.json`: the as-of state of
/// the given snapshots (newest version of each Graph id), subject, sender, a non-empty
/// body, and each attachment's file name and SHA-256. Prints `OK <count>`.
const CHECK_SAVE: &str = r#"
import sys, json, zipfile, hashlib, email
from email import policy
zip_path, expected_path, mailbox = sys.argv[1], sys.argv[2], sys.argv[3]
snap_ids = sys.argv[4:]
exp = json.load(open(expected_path))
want = {}
for mb in exp["mailboxes"]:
    if mb["address"] != mailbox:
        continue
    for s in mb["snapshots"]:
        if s["snapshot_id"] in snap_ids:
            for m in s["messages"]:
                want[m["graph_id"]] = m
by_mid = {}
for m in want.values():
    by_mid.setdefault(m["internet_message_id"], []).append(m)
problems = []
seen = 0
with zipfile.ZipFile(zip_path) as z:
    for name in z.namelist():
        if not name.endswith(".eml"):
            continue
        msg = email.message_from_bytes(z.read(name), policy=policy.default)
        mid = str(msg["Message-ID"]).strip()
        m = by_mid[mid].pop() if by_mid.get(mid) else None
        if m is None:
            problems.append(f"unexpected message {mid} in {name}")
            continue
        seen += 1
        if str(msg["Subject"]) != m["subject"]:
            problems.append(f"{mid}: subject {msg['Subject']!r} != {m['subject']!r}")
        frm = msg["From"].addresses[0].addr_spec.lower()
        if frm != m["from_address"].lower():
            problems.append(f"{mid}: from {frm} != {m['from_address']}")
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is None or not body.get_content().strip():
            problems.append(f"{mid}: no body")
        got = sorted((p.get_filename(), hashlib.sha256(p.get_payload(decode=True)).hexdigest())
                     for p in msg.walk() if p.get_filename())
        exp_att = sorted((a["name"], a["sha256"]) for a in m.get("attachments", []))
        if got != exp_att:
            problems.append(f"{mid}: attachments {got} != {exp_att}")
for mid, left in by_mid.items():
    for _ in left:
        problems.append(f"missing message {mid}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"OK {seen}")
"#;

/// Prints the SHA-256 of every .eml of a zip, sorted (so two saves compare message for
/// message regardless of entry names).
const EML_DIGESTS: &str = r#"
import sys, zipfile, hashlib
with zipfile.ZipFile(sys.argv[1]) as z:
    print("\n".join(sorted(hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if n.endswith(".eml"))))
"#;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../atlas-core/tests/fixtures/atlas-v1-repo")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir` with its bytes, to prove the v1 repository is left untouched.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(
                    entry.path(),
                    std::fs::read(entry.path()).expect("read file"),
                );
            }
        }
    }
    out
}

fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python check failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// (mailbox, v1 snapshot id, message count of the as-of state), oldest first per mailbox.
fn expected_snapshots() -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for mb in expected()["mailboxes"].as_array().expect("mailboxes") {
        let address = mb["address"].as_str().expect("address").to_owned();
        let mut ids = BTreeSet::new();
        for s in mb["snapshots"].as_array().expect("snapshots") {
            for m in s["messages"].as_array().expect("messages") {
                ids.insert(m["graph_id"].as_str().expect("graph_id").to_owned());
            }
            let id = s["snapshot_id"].as_str().expect("snapshot_id").to_owned();
            out.push((address.clone(), id, ids.len()));
        }
    }
    out
}

impl Sandbox {
    /// A copy of the fixture bucket in the sandbox.
    pub(super) fn v1_bucket(&self) -> PathBuf {
        let bucket = self.dir.path().join("v1-bucket");
        copy_dir(&fixture().join("objects"), &bucket);
        bucket
    }

    /// `atlas` configured for the v1 repository in `bucket`.
    fn on_v1(&self, bucket: &Path) -> assert_cmd::Command {
        let mut cmd = self.bare();
        cmd.env("ATLAS_TENANT_ID", V1_TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", V1_PASSPHRASE)
            .env("ATLAS_REPOSITORY", bucket);
        cmd
    }

    fn run_ok(mut cmd: assert_cmd::Command, args: &[&str]) -> std::process::Output {
        let output = cmd.args(args).output().expect("runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            output_text(&output)
        );
        output
    }
}

/// Read one message of a v1 snapshot, by its Message-ID, with its attachment.
fn read_a_message_by_message_id(sandbox: &Sandbox, bucket: &Path) {
    let exp = expected();
    let first = &exp["mailboxes"][0]["snapshots"][0];
    let message = first["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["attachment_count"].as_u64() > Some(0))
        .expect("a message with an attachment");
    let read = json(&Sandbox::run_ok(
        sandbox.on_v1(bucket),
        &[
            "--json",
            "read",
            "-s",
            first["snapshot_id"].as_str().expect("id"),
            "--message",
            message["internet_message_id"].as_str().expect("mid"),
        ],
    ));
    assert_eq!(read["messageId"], message["graph_id"]);
    assert_eq!(read["subject"], message["subject"]);
    assert_eq!(
        read["attachments"][0]["name"],
        message["attachments"][0]["name"]
    );
}

#[test]
fn v1_repository_lists_verifies_and_saves_what_expected_json_says() {
    let sandbox = Sandbox::new();
    let bucket = sandbox.v1_bucket();
    let before = snapshot_tree(&bucket);

    // Mailboxes: exactly the two backed up, with their snapshot counts; the notice.
    let output = Sandbox::run_ok(sandbox.on_v1(&bucket), &["--json", "list"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TypeScript Atlas 1.x repository"),
        "{stderr}"
    );
    assert!(stderr.contains("never recorded deletions"), "{stderr}");
    let listed: BTreeMap<String, (u64, u64)> = json(&output)["mailboxes"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["mailbox"].as_str().expect("mailbox").to_owned(),
                (
                    m["snapshots"].as_u64().expect("snapshots"),
                    m["items"].as_u64().expect("items"),
                ),
            )
        })
        .collect();
    let aggregated = &expected()["aggregated_per_mailbox"];
    let want: BTreeMap<String, (u64, u64)> = [(LUCAS, 2), (OMAR, 1)]
        .into_iter()
        .map(|(m, n)| {
            (
                m.to_owned(),
                (n, aggregated[m]["unique_messages"].as_u64().expect("count")),
            )
        })
        .collect();
    assert_eq!(listed, want);

    // Each snapshot by its v1 id: the as-of message count; the mailbox listing maps ids.
    for (mailbox, v1_id, count) in expected_snapshots() {
        let output = Sandbox::run_ok(
            sandbox.on_v1(&bucket),
            &["--json", "list", "-s", &v1_id, "--all"],
        );
        let items = json(&output);
        assert_eq!(items["mailbox"], mailbox.as_str());
        assert_eq!(items["total"].as_u64(), Some(count as u64), "{v1_id}");
        let by_mailbox = Sandbox::run_ok(sandbox.on_v1(&bucket), &["list", "-m", &mailbox]);
        assert!(
            String::from_utf8_lossy(&by_mailbox.stderr)
                .contains(&format!("Atlas 1.x snapshot {v1_id} is snapshot")),
            "{}",
            output_text(&by_mailbox)
        );
    }

    read_a_message_by_message_id(&sandbox, &bucket);

    // Verify checks the v1 objects themselves: every manifest, message and attachment.
    let output = Sandbox::run_ok(sandbox.on_v1(&bucket), &["--json", "verify"]);
    let report = super::json_schemas::assert_schema("verifyV1", &output);
    assert_eq!(report["format"], "atlas-v1");
    assert_eq!(report["manifests"], 3);
    assert_eq!(report["messages"], 74);
    assert_eq!(report["attachments"], 27);
    assert_eq!(report["damage"], Value::Array(Vec::new()));
    // Without --json (and no terminal), progress in plain lines on stderr, as for any
    // other long command: one task per mailbox, with its object count.
    let output = Sandbox::run_ok(sandbox.on_v1(&bucket), &["verify"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("checking Atlas 1.x objects: ") && stderr.contains(" objects"),
        "{stderr}"
    );

    // Save each snapshot (by v1 id or prefix) and read it back with Python's email.
    let expected_path = fixture().join("expected.json");
    let mut so_far: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (mailbox, v1_id, count) in expected_snapshots() {
        let ids = so_far.entry(mailbox.clone()).or_default();
        ids.push(v1_id.clone());
        let zip = sandbox.dir.path().join(format!("{v1_id}.zip"));
        let zip_text = zip.to_str().expect("utf-8 path").to_owned();
        Sandbox::run_ok(
            sandbox.on_v1(&bucket),
            &["save", "-s", &v1_id[..8], "-o", &zip_text],
        );
        let mut args = vec![
            zip_text.as_str(),
            expected_path.to_str().expect("utf-8 path"),
            mailbox.as_str(),
        ];
        args.extend(ids.iter().map(String::as_str));
        let result = python(CHECK_SAVE, &args);
        assert_eq!(result.trim(), format!("OK {count}"), "{v1_id}");
    }

    // Commands that write refuse the v1 repository; nothing was ever written into it.
    let output = sandbox
        .on_v1(&bucket)
        .args(["delete", "-m", LUCAS, "-y"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", output_text(&output));
    assert!(output_text(&output).contains("migrate --from-v1"));
    // `init` would add a v2 config into the bucket: refused too.
    let output = sandbox
        .on_v1(&bucket)
        .args(["init"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", output_text(&output));
    assert_eq!(snapshot_tree(&bucket), before, "the v1 repository changed");
}

#[test]
fn a_flipped_byte_in_a_v1_object_is_named_by_verify() {
    let sandbox = Sandbox::new();
    let bucket = sandbox.v1_bucket();
    let exp = expected();
    let lucas = &exp["mailboxes"][0]["snapshots"][0]["messages"];
    let with_attachment = lucas
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["attachment_count"].as_u64() > Some(0))
        .expect("a message with an attachment");
    let data_key = with_attachment["data_key"].as_str().expect("data_key");
    let attachment_key = with_attachment["attachments"][0]["storage_key"]
        .as_str()
        .expect("storage_key");
    let other_data = lucas
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["attachment_count"].as_u64() == Some(0))
        .expect("a message without attachment")["data_key"]
        .as_str()
        .expect("data_key");
    let manifest_key = exp["mailboxes"][1]["snapshots"][0]["manifest_key"]
        .as_str()
        .expect("manifest_key");
    // A flipped byte in a message, an attachment of another message, and a manifest.
    for key in [other_data, attachment_key, manifest_key] {
        let path = bucket.join(key);
        let mut bytes = std::fs::read(&path).expect("object");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
    }
    let output = sandbox
        .on_v1(&bucket)
        .args(["--json", "verify"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let report = super::json_schemas::assert_schema("verifyV1", &output);
    let named: BTreeSet<String> = report["damage"]
        .as_array()
        .expect("damage")
        .iter()
        .map(|d| d["object"].as_str().expect("object").to_owned())
        .collect();
    for key in [other_data, attachment_key, manifest_key] {
        assert!(named.contains(key), "{key} not in {named:?}");
    }
    assert!(!named.contains(data_key), "an intact object was named");
    // The human form names them too (never subjects).
    let text = sandbox.on_v1(&bucket).arg("verify").output().expect("runs");
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("DAMAGE: ") && stdout.contains(attachment_key),
        "{stdout}"
    );

    // A damaged wrapped key fails to open, clearly.
    let key_path = bucket.join("_meta/dek.enc");
    let mut key = std::fs::read(&key_path).expect("key");
    let last = key.len() - 1;
    key[last] ^= 0x01;
    std::fs::write(&key_path, key).expect("write");
    let output = sandbox.on_v1(&bucket).arg("verify").output().expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
}

#[test]
fn migrate_from_v1_converts_every_snapshot_idempotently_and_saves_identically() {
    let sandbox = Sandbox::new();
    let bucket = sandbox.v1_bucket();
    let before = snapshot_tree(&bucket);
    let bucket_text = bucket.to_str().expect("utf-8 path").to_owned();
    let migrate = |sandbox: &Sandbox| {
        let mut cmd = sandbox.bare();
        cmd.env("ATLAS_TENANT_ID", V1_TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", V1_PASSPHRASE)
            .env("ATLAS_REPOSITORY", sandbox.repo());
        cmd
    };
    let output = Sandbox::run_ok(
        migrate(&sandbox),
        &["--json", "migrate", "--from-v1", "--from-dir", &bucket_text],
    );
    let report = super::json_schemas::assert_schema("migrate", &output);
    assert_eq!(report["converted"], 3, "{report}");
    assert_eq!(report["complete"], true);
    let mapping: BTreeMap<String, String> = report["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["v1SnapshotId"].as_str().expect("v1 id").to_owned(),
                s["snapshotId"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    for (_, v1_id, _) in expected_snapshots() {
        assert!(mapping.contains_key(&v1_id), "{v1_id} not migrated");
    }

    // Rerun: nothing new, everything already converted.
    let again = json(&Sandbox::run_ok(
        migrate(&sandbox),
        &["--json", "migrate", "--from-v1", "--from-dir", &bucket_text],
    ));
    assert_eq!(again["converted"], 0);
    assert_eq!(again["alreadyConverted"], 3);

    // The new repository is a normal one: its verify reads every pack.
    let verified = json(&Sandbox::run_ok(
        migrate(&sandbox),
        &["--json", "verify", "--read-data"],
    ));
    assert_eq!(verified["snapshots"], 3, "{verified}");
    assert_eq!(verified["damage"], Value::Array(Vec::new()));

    // Its save output equals the v1 save output, message for message.
    for (v1_id, id) in &mapping {
        let from_v1 = sandbox.dir.path().join(format!("v1-{v1_id}.zip"));
        let from_v2 = sandbox.dir.path().join(format!("v2-{id}.zip"));
        Sandbox::run_ok(
            sandbox.on_v1(&bucket),
            &["save", "-s", v1_id, "-o", from_v1.to_str().expect("utf-8")],
        );
        Sandbox::run_ok(
            migrate(&sandbox),
            &["save", "-s", id, "-o", from_v2.to_str().expect("utf-8")],
        );
        let a = python(EML_DIGESTS, &[from_v1.to_str().expect("utf-8")]);
        let b = python(EML_DIGESTS, &[from_v2.to_str().expect("utf-8")]);
        assert!(!a.trim().is_empty());
        assert_eq!(a, b, "save of {v1_id} differs after migration");
    }

    // Migrating into the v1 directory itself is refused; the v1 repository is untouched.
    let output = sandbox
        .on_v1(&bucket)
        .args(["migrate", "--from-v1", "--from-dir", &bucket_text])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", output_text(&output));
    assert_eq!(snapshot_tree(&bucket), before, "the v1 repository changed");
}

#[test]
fn restore_from_a_v1_snapshot_recreates_its_messages_as_received_mail_with_their_dates() {
    use atlas_sim::{SimConfig, Simulator};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The tenant id matters: Atlas 1.x mixed it into the key derivation.
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            users: 2,
            messages_per_user: 3,
            tenant_id: Some(V1_TENANT.to_owned()),
            ..SimConfig::default()
        }))
        .expect("simulator starts");
    let target = sim
        .users()
        .into_iter()
        .find(|u| u.has_mailbox && u.kind == "user")
        .expect("a licensed user")
        .upn;
    let sandbox = Sandbox::new();
    let bucket = sandbox.v1_bucket();
    let (_, v1_id, count) = expected_snapshots()
        .into_iter()
        .find(|(m, _, _)| m == OMAR)
        .expect("omar's snapshot");
    let output = sandbox
        .on_v1(&bucket)
        .env("ATLAS_CLIENT_ID", sim.client_id())
        .env("ATLAS_CLIENT_SECRET", sim.client_secret())
        .env("ATLAS_GRAPH_ENDPOINT", sim.base_url())
        .env("ATLAS_AUTHORITY_HOST", sim.base_url())
        .args([
            "--json", "restore", "-s", &v1_id, "-T", &target, "--root", "FromV1",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let dump = sim.dump_mailbox(&target).expect("dump");
    let restored: Vec<_> = dump
        .messages
        .iter()
        .filter(|m| m.folder_path.starts_with("FromV1"))
        .collect();
    assert_eq!(restored.len(), count);
    let exp = expected();
    let by_mid: BTreeMap<String, String> = exp["mailboxes"][1]["snapshots"][0]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["internet_message_id"].as_str().expect("mid").to_owned(),
                m["received"].as_str().expect("received").to_owned(),
            )
        })
        .collect();
    for m in &restored {
        assert!(!m.is_draft, "{} restored as a draft", m.internet_message_id);
        let want = by_mid
            .get(&m.internet_message_id)
            .unwrap_or_else(|| panic!("unexpected {}", m.internet_message_id));
        let want: chrono::DateTime<chrono::Utc> = want.parse().expect("time");
        assert_eq!(m.received, want, "{}", m.internet_message_id);
    }
}

/// Every file under `dir` as (store key, bytes).
fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot_tree(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let key = path
                .strip_prefix(dir)
                .expect("under dir")
                .components()
                .map(|c| c.as_os_str().to_str().expect("utf-8 key"))
                .collect::<Vec<_>>()
                .join("/");
            (key, bytes)
        })
        .collect()
}

/// Put every fixture object into `bucket` (created if missing) on the S3 server.
fn upload_fixture(endpoint: &str, bucket: &str) {
    use atlas_core::ports::{BlobStore as _, PutOptions, StoreKey};
    use atlas_store::S3Store;
    use atlas_store::s3::{Credentials, S3Config};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut config = S3Config::shared_bucket(
            bucket,
            "tenant",
            "us-east-1",
            Credentials::new("test-access", "test-secret"),
        )
        .expect("config")
        .endpoint(endpoint)
        .path_style(true);
        config.key_prefix = String::new();
        let store = S3Store::new(config).expect("store");
        store.ensure_bucket(false).await.expect("bucket");
        for (key, bytes) in objects(&fixture().join("objects")) {
            store
                .put(
                    &StoreKey::new(&key).expect("key"),
                    bytes.into(),
                    PutOptions::OVERWRITE,
                )
                .await
                .expect("upload");
        }
    });
}

/// Over a real S3 server (moto, `scripts/s3-server.sh`): the fixture objects uploaded into
/// a bucket named as Atlas 1.x named it (`atlas-<tenant>`) are listed and verified through
/// `ATLAS_S3_*` with no other setting.
#[test]
fn v1_bucket_on_s3_lists_and_verifies() {
    let endpoint = match std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED: no S3 test server (run scripts/s3-server.sh)\n",
            );
            return;
        }
    };
    let bucket = format!("atlas-{V1_TENANT}");
    upload_fixture(&endpoint, &bucket);
    let sandbox = Sandbox::new();
    let on_s3 = || {
        let mut cmd = sandbox.bare();
        cmd.env("ATLAS_TENANT_ID", V1_TENANT)
            .env("ATLAS_ENCRYPTION_PASSPHRASE", V1_PASSPHRASE)
            .env("ATLAS_S3_ENDPOINT", &endpoint)
            .env("ATLAS_S3_ACCESS_KEY", "test-access")
            .env("ATLAS_S3_SECRET_KEY", "test-secret")
            .env("ATLAS_S3_FORCE_PATH_STYLE", "true");
        cmd
    };
    let output = Sandbox::run_ok(on_s3(), &["--json", "list"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("TypeScript Atlas 1.x repository"),
        "{}",
        output_text(&output)
    );
    let mailboxes: BTreeSet<String> = json(&output)["mailboxes"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["mailbox"].as_str().expect("mailbox").to_owned())
        .collect();
    assert_eq!(
        mailboxes,
        [LUCAS, OMAR].into_iter().map(str::to_owned).collect()
    );
    for (_, v1_id, count) in expected_snapshots() {
        let items = json(&Sandbox::run_ok(
            on_s3(),
            &["--json", "list", "-s", &v1_id, "--all"],
        ));
        assert_eq!(items["total"].as_u64(), Some(count as u64), "{v1_id}");
    }
    let report = json(&Sandbox::run_ok(on_s3(), &["--json", "verify"]));
    assert_eq!(report["format"], "atlas-v1");
    assert_eq!(report["messages"], 74);
    assert_eq!(report["attachments"], 27);
    assert_eq!(report["damage"], Value::Array(Vec::new()));

    // Migrate bucket to bucket on the same server; the new one verifies.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let target = format!("atlas2-v1-test-{}-{nanos}", std::process::id());
    let mut cmd = on_s3();
    cmd.env("ATLAS_S3_BUCKET", &target);
    let migrated = json(&Sandbox::run_ok(
        cmd,
        &[
            "--json",
            "migrate",
            "--from-v1",
            "--from-s3-bucket",
            &bucket,
        ],
    ));
    assert_eq!(migrated["converted"], 3, "{migrated}");
    let mut cmd = on_s3();
    cmd.env("ATLAS_S3_BUCKET", &target);
    let verified = json(&Sandbox::run_ok(cmd, &["--json", "verify", "--read-data"]));
    assert_eq!(verified["snapshots"], 3, "{verified}");
    assert_eq!(verified["damage"], Value::Array(Vec::new()));
    // The source bucket itself as the target is refused.
    on_s3()
        .args(["migrate", "--from-v1", "--from-s3-bucket", &bucket])
        .assert()
        .code(3);
}
