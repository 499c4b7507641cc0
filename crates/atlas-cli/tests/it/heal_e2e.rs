//! Damage is found, named and healed (issue 11): `verify` checks the structure and, with
//! `--read-data[=N%]`, the data; a lost root object is damage, never silently recreated;
//! `atlas repair` heals what verify names, and the next backup downloads again what was
//! lost, byte for byte.

use atlas_sim::SimConfig;

use super::graph_e2e::Sim;
use super::{Sandbox, json, output_text};

/// Run and return (exit code, stdout + stderr).
fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> (Option<i32>, String) {
    let out = cmd.args(args).output().expect("runs");
    (out.status.code(), output_text(&out))
}

fn run_json(mut cmd: assert_cmd::Command, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = cmd.arg("--json").args(args).output().expect("runs");
    (out.status.code(), json(&out))
}

fn small_sim() -> Sim {
    Sim::start(SimConfig {
        users: 2,
        messages_per_user: 6,
        ..SimConfig::default()
    })
}

#[test]
fn verify_checks_structure_by_default_and_data_with_read_data_percent() {
    let sim = small_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");

    let (code, structure) = run_json(sandbox.atlas_for(&sim), &["verify"]);
    assert_eq!(code, Some(0), "{structure}");
    assert_eq!(structure["packsRead"], 0, "{structure}");
    assert_eq!(structure["readData"]["percent"], 0, "{structure}");
    assert!(
        structure["packs"].as_u64().is_some_and(|p| p > 0),
        "{structure}"
    );

    // As the README writes it, and without the sign.
    for flag in ["--read-data=50%", "--read-data=50"] {
        let (code, half) = run_json(sandbox.atlas_for(&sim), &["verify", flag]);
        assert_eq!(code, Some(0), "{flag}: {half}");
        assert_eq!(half["readData"]["percent"], 50, "{flag}: {half}");
    }
    let (code, all) = run_json(sandbox.atlas_for(&sim), &["verify", "--read-data"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(all["packsRead"], all["packs"], "{all}");
    // The deepest check recomputes every content id; it reads what --read-data reads.
    let (code, deep) = run_json(
        sandbox.atlas_for(&sim),
        &["verify", "--read-data", "--content-ids"],
    );
    assert_eq!(code, Some(0), "{deep}");
    assert_eq!(deep["blobsChecked"], all["blobsChecked"], "{deep}");
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify", "--content-ids"]);
    assert_eq!(code, Some(3), "--content-ids needs --read-data: {text}");
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify", "--read-data=150%"]);
    assert_eq!(code, Some(3), "{text}");
}

#[test]
fn a_lost_config_is_damage_and_no_backup_recreates_it() {
    let sim = small_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let config = sandbox.repo().join("config");
    let spare = sandbox.repo().join("_meta").join("config.spare");
    assert!(config.is_file() && spare.is_file());

    // The config alone: its spare stands in, verify names the loss.
    std::fs::remove_file(&config).expect("delete config");
    let (code, report) = run_json(sandbox.atlas_for(&sim), &["verify"]);
    assert_eq!(code, Some(1), "{report}");
    let damage = report["damage"].as_array().expect("damage");
    assert!(
        damage
            .iter()
            .any(|d| d["kind"] == "config" && d["object"] == "config"),
        "{report}"
    );
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(
        code,
        Some(0),
        "a spare config keeps backups running: {text}"
    );
    assert!(
        !config.exists(),
        "a backup does not quietly rewrite the config"
    );

    // Both copies: nothing to stand in; verify names it and backups refuse.
    std::fs::remove_file(&spare).expect("delete spare");
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DAMAGE") && text.contains("config"), "{text}");
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("atlas repair"), "{text}");
    assert!(!config.exists() && !spare.exists(), "{text}");
}

/// Whether the `.eml` files of a zip, read back by an independent reader (Python's
/// `zipfile`), are byte for byte the MIME of every message of the simulated mailbox (as
/// multisets: names and order do not matter).
fn assert_export_is_the_mailbox(sim: &Sim, upn: &str, zip: &std::path::Path) {
    assert_export_is_the_mailbox_but(sim, upn, zip, None);
}

/// The same, leaving out one message (by immutable id): one a repair recorded as lost.
fn assert_export_is_the_mailbox_but(
    sim: &Sim,
    upn: &str,
    zip: &std::path::Path,
    lost: Option<&str>,
) {
    let dump = sim.handle.dump_mailbox(upn).expect("dump");
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = dump
        .messages
        .iter()
        .filter(|m| lost != Some(m.immutable_id.as_str()));
    for (i, m) in kept.enumerate() {
        std::fs::write(
            dir.path().join(format!("{i}.eml")),
            m.mime.as_deref().expect("mime"),
        )
        .expect("write");
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import hashlib, os, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             got = sorted(hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if n.endswith('.eml'))\n\
             d = sys.argv[2]\n\
             want = sorted(hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest() for f in os.listdir(d))\n\
             print(len(got), len(want))\n\
             sys.exit(0 if got == want else 1)\n",
        )
        .arg(zip)
        .arg(dir.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the export is not the mailbox byte for byte (exported, in the mailbox): {}",
        output_text(&out)
    );
}

/// The repository of the sandbox, opened by the library (to find where things are).
fn open_repo(sim: &Sim, sandbox: &Sandbox) -> atlas_core::repo::Repository {
    use std::sync::Arc;
    let store: Arc<dyn atlas_core::ports::BlobStore> =
        Arc::new(atlas_store::LocalStore::new(sandbox.repo()));
    sim.runtime
        .block_on(atlas_core::repo::Repository::open(
            store,
            &sim.handle.tenant_id(),
            &atlas_core::repo::Passphrase::new(super::PASSPHRASE),
        ))
        .expect("repository opens")
}

/// Two backups of one mailbox (the second shares everything with the first), `damage`,
/// then: verify finds it (naming both snapshots when both need what was damaged), repair
/// heals it, verify is clean, `save` of the newest snapshot works at once (every message
/// but a lost one, byte for byte), the next backup completes, verify is still clean, and
/// an export of the mailbox holds every message of the mailbox byte for byte.
fn damage_then_heal(damage: impl FnOnce(&Sim, &Sandbox, &str) -> Option<String>) {
    let sim = small_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    for _ in 0..2 {
        let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
        assert_eq!(code, Some(0), "{text}");
    }
    let lost_message = damage(&sim, &sandbox, &upn);

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "verify", "--read-data"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "damage went unnoticed: {}",
        output_text(&out)
    );
    let report = super::json_schemas::assert_schema("verify", &out);
    assert!(
        report["nextStep"]
            .as_str()
            .is_some_and(|s| s.contains("atlas repair")),
        "{report}"
    );
    if let Some(message) = &lost_message {
        // Every snapshot that needs the damaged message is named, not only the oldest.
        let snapshots: std::collections::BTreeSet<&str> = report["damage"]
            .as_array()
            .expect("damage")
            .iter()
            .filter(|d| d["messageId"] == message.as_str())
            .filter_map(|d| d["snapshot"].as_str())
            .collect();
        assert_eq!(snapshots.len(), 2, "{report}");
    }

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "repair", "--dry-run"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let plan = super::json_schemas::assert_schema("repair", &out);
    assert_eq!(plan["executed"], false);
    let (code, still) = run(sandbox.atlas_for(&sim), &["verify", "--read-data"]);
    assert_eq!(code, Some(1), "a dry run repaired something: {still}");

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "repair"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let repaired = super::json_schemas::assert_schema("repair", &out);
    assert_eq!(repaired["executed"], true);
    if let Some(message) = &lost_message {
        let lost: Vec<&serde_json::Value> = repaired["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .flat_map(|s| s["lost"].as_array().expect("lost"))
            .filter(|l| l["messageId"] == message.as_str())
            .collect();
        assert_eq!(
            lost.len(),
            2,
            "the loss is recorded in both snapshots: {repaired}"
        );
    }
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify", "--read-data"]);
    assert_eq!(code, Some(0), "not clean after repair: {text}");
    let (code, text) = run(sandbox.atlas_for(&sim), &["repair"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Nothing to repair"),
        "a second repair found more: {text}"
    );

    // Right after the repair, before any backup: the newest snapshot exports (exit 0)
    // with every message it still holds, byte for byte — all but the lost one.
    let zip = save(&sim, &sandbox, &upn, "repaired.zip");
    assert_export_is_the_mailbox_but(&sim, &upn, &zip, lost_message.as_deref());

    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");
    let zip = save(&sim, &sandbox, &upn, "healed.zip");
    assert_export_is_the_mailbox(&sim, &upn, &zip);
}

/// `atlas save -m upn -o <name>` of the newest snapshot, which must exit 0.
fn save(sim: &Sim, sandbox: &Sandbox, upn: &str, name: &str) -> std::path::PathBuf {
    let zip = sandbox.cwd().join(name);
    let out = sandbox
        .atlas_for(sim)
        .args(["save", "-m", upn, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "save: {}", output_text(&out));
    zip
}

/// Flip one byte in the middle of a message's blob; returns the message id.
fn flip_a_message_blob(sim: &Sim, sandbox: &Sandbox, upn: &str) -> String {
    let repo = open_repo(sim, sandbox);
    let (message, key, at) = sim.runtime.block_on(async {
        let snap = repo
            .latest_snapshot(&atlas_core::model::MailboxId::new(upn))
            .await
            .expect("list")
            .expect("a snapshot");
        for f in &snap.record.folders {
            if let Some(m) = repo
                .load_folder_items(&f.items)
                .await
                .expect("items")
                .first()
            {
                let loc = repo.locate(&m.mime).await.expect("indexed");
                let at = u64::from(loc.offset) + u64::from(loc.length) / 2;
                return (m.id.as_str().to_owned(), loc.pack.store_key(), at);
            }
        }
        panic!("no message");
    });
    let path = sandbox.repo().join(&key);
    let mut bytes = std::fs::read(&path).expect("pack");
    bytes[usize::try_from(at).expect("offset")] ^= 0x20;
    std::fs::write(&path, bytes).expect("write");
    message
}

#[test]
fn a_damaged_pack_is_healed_and_the_lost_message_comes_back_with_the_next_backup() {
    damage_then_heal(|sim, sandbox, upn| Some(flip_a_message_blob(sim, sandbox, upn)));
}

#[test]
fn a_damaged_index_is_rebuilt_from_the_packs() {
    damage_then_heal(|_, sandbox, _| {
        for entry in std::fs::read_dir(sandbox.repo().join("index")).expect("index dir") {
            let path = entry.expect("entry").path();
            let mut bytes = std::fs::read(&path).expect("index file");
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            std::fs::write(&path, bytes).expect("write");
        }
        None
    });
}

#[test]
fn a_damaged_snapshot_record_is_removed_and_the_next_backup_is_complete() {
    damage_then_heal(|_, sandbox, _| {
        let mut records = Vec::new();
        for dir in std::fs::read_dir(sandbox.repo().join("snapshots")).expect("snapshots") {
            for record in std::fs::read_dir(dir.expect("entry").path()).expect("mailbox dir") {
                records.push(record.expect("entry").path());
            }
        }
        records.sort();
        let newest = records.last().expect("a record");
        let mut bytes = std::fs::read(newest).expect("record");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(newest, bytes).expect("write");
        None
    });
}

#[test]
fn a_damaged_wrapped_key_is_written_back_from_its_spare() {
    damage_then_heal(|_, sandbox, _| {
        let path = sandbox.repo().join("_meta").join("dek.enc");
        let mut bytes = std::fs::read(&path).expect("key");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
        None
    });
}

#[test]
fn list_goes_on_past_damage_and_names_what_it_cannot_read() {
    let sim = small_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    for _ in 0..2 {
        let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
        assert_eq!(code, Some(0), "{text}");
    }
    let mut records = Vec::new();
    for dir in std::fs::read_dir(sandbox.repo().join("snapshots")).expect("snapshots") {
        for record in std::fs::read_dir(dir.expect("entry").path()).expect("mailbox dir") {
            records.push(record.expect("entry").path());
        }
    }
    records.sort();
    let (older, newest) = (records[0].clone(), records[1].clone());
    let older_id = older
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('_').nth(1))
        .expect("id")
        .to_owned();
    let mut bytes = std::fs::read(&newest).expect("record");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&newest, bytes).expect("write");

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "list"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("listMailboxes", &out);
    assert_eq!(doc["mailboxes"][0]["mailbox"], upn.to_lowercase(), "{doc}");
    assert_eq!(doc["unreadable"].as_array().map(Vec::len), Some(1), "{doc}");

    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "list", "-m", &upn])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("listSnapshots", &out);
    assert_eq!(doc["snapshots"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["snapshots"][0]["id"], older_id.as_str(), "{doc}");
    assert_eq!(doc["unreadable"].as_array().map(Vec::len), Some(1), "{doc}");

    // Damaged index files: the folder lists cannot be located; the listing still names
    // the snapshot and says which folders it could not read.
    for entry in std::fs::read_dir(sandbox.repo().join("index")).expect("index dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("index file");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
    }
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "list", "-s", &older_id])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("listItems", &out);
    assert!(
        doc["unreadable"].as_array().is_some_and(|u| !u.is_empty()),
        "{doc}"
    );
    let (code, text) = run(sandbox.atlas_for(&sim), &["list"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("Could not read") && text.contains("atlas repair"),
        "{text}"
    );
}

/// Regression: `save` of a snapshot with a damaged message exited 2 and said nothing about
/// what to do. It names the message and the next step (`atlas repair`), in text and in
/// `--json` (`nextStep`).
#[test]
fn save_of_a_damaged_message_says_to_run_repair() {
    let sim = small_sim();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let message = flip_a_message_blob(&sim, &sandbox, &upn);

    let zip = sandbox.cwd().join("damaged.zip");
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "save", "-m", &upn, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let doc = super::json_schemas::assert_schema("save", &out);
    assert_eq!(doc["failed"][0]["messageId"], message.as_str(), "{doc}");
    assert!(
        doc["nextStep"]
            .as_str()
            .is_some_and(|s| s.contains("atlas repair")),
        "{doc}"
    );

    let out = sandbox
        .atlas_for(&sim)
        .args(["save", "-y", "-m", &upn, "-o"])
        .arg(&zip)
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("Next step: run `atlas repair`"), "{text}");
}
