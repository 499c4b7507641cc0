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
