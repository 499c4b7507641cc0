//! The README's exit-code table, one test per row: each row's every named case is run
//! through the binary and must exit with that row's code. When a row changes, its test
//! changes with it.

use atlas_sim::SimConfig;

use super::graph_e2e::Sim;
use super::{Sandbox, output_text};

/// Run and return (exit code, stdout + stderr).
fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> (Option<i32>, String) {
    let out = cmd.args(args).output().expect("runs");
    (out.status.code(), output_text(&out))
}

/// A sandbox with one complete backup of a simulated mailbox; returns its address and the
/// snapshot id.
fn backed_up(sim: &Sim, sandbox: &Sandbox) -> (String, String) {
    let upn = sim.licensed_users().remove(0);
    let (code, text) = run(sandbox.against(sim), &["init"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(sandbox.against(sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let out = sandbox
        .atlas_for(sim)
        .args(["--json", "list", "-m", &upn])
        .output()
        .expect("runs");
    let list = super::json(&out);
    let id = list["snapshots"][0]["id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    (upn, id)
}

#[test]
fn exit_0_success_when_everything_asked_for_was_done() {
    let sandbox = Sandbox::new();
    assert_eq!(run(sandbox.bare(), &["--help"]).0, Some(0));
    assert_eq!(run(sandbox.bare(), &["--version"]).0, Some(0));
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 5,
        ..SimConfig::default()
    });
    assert_eq!(run(sandbox.atlas_for(&sim), &["init"]).0, Some(0));
    let (_, id) = backed_up(&sim, &sandbox);
    assert_eq!(
        run(sandbox.atlas_for(&sim), &["verify", "-s", &id]).0,
        Some(0)
    );
}

#[test]
fn exit_1_failure_on_errors_damage_and_a_declined_confirmation() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 5,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (_, id) = backed_up(&sim, &sandbox);

    // An error: the wrong passphrase.
    let mut wrong = sandbox.atlas_for(&sim);
    wrong.env("ATLAS_ENCRYPTION_PASSPHRASE", "not the passphrase at all");
    let (code, text) = run(wrong, &["list"]);
    assert_eq!(code, Some(1), "{text}");

    // A confirmation answered "no" is not success: nothing was done. The prompt needs a
    // terminal, which `script` provides.
    let atlas = assert_cmd::cargo::cargo_bin("atlas");
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!("{} delete -s {id}", atlas.display()))
        .arg("/dev/null")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sandbox.home())
        .env("ATLAS_TENANT_ID", sim.handle.tenant_id())
        .env("ATLAS_ENCRYPTION_PASSPHRASE", super::PASSPHRASE)
        .env("ATLAS_REPOSITORY", sandbox.repo())
        .current_dir(sandbox.cwd())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().expect("stdin").write_all(b"n\n")?;
            child.wait_with_output()
        })
        .expect("script runs");
    let text = output_text(&out);
    assert!(text.contains("[y/N]"), "the prompt was shown: {text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    let (code, text) = run(sandbox.atlas_for(&sim), &["list", "-s", &id]);
    assert_eq!(code, Some(0), "the snapshot is still there: {text}");

    // Damage found by verify: one flipped byte in every pack.
    for dir in std::fs::read_dir(sandbox.repo().join("packs")).expect("packs") {
        for pack in std::fs::read_dir(dir.expect("entry").path()).expect("pack dir") {
            let path = pack.expect("entry").path();
            let mut bytes = std::fs::read(&path).expect("pack");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(&path, bytes).expect("write");
        }
    }
    let (code, text) = run(sandbox.atlas_for(&sim), &["verify", "--read-data"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DAMAGE"), "{text}");
}

#[test]
fn exit_2_partial_when_some_items_were_not_captured() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 5,
        ..SimConfig::default()
    });
    let upn = sim.licensed_users().remove(0);
    let bad = sim.handle.dump_mailbox(&upn).expect("dump").messages[1]
        .id
        .clone();
    sim.handle
        .set_mime_failure(&upn, &bad, true)
        .expect("fault");
    let sandbox = Sandbox::new();
    assert_eq!(run(sandbox.against(&sim), &["init"]).0, Some(0));
    let (code, text) = run(sandbox.against(&sim), &["backup", "-m", &upn]);
    assert_eq!(code, Some(2), "{text}");
    // `atlas report`: a mailbox with only a partial snapshot is not protected.
    let (code, text) = run(sandbox.atlas_for(&sim), &["report"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("partial only"), "{text}");
}

#[test]
fn exit_3_usage_for_bad_arguments_settings_and_unknown_names() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 5,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (upn, id) = backed_up(&sim, &sandbox);
    let nobody = "nobody@contoso.onmicrosoft.com";
    let cases: Vec<(assert_cmd::Command, Vec<&str>)> = vec![
        // clap: unknown flag, missing value.
        (sandbox.bare(), vec!["--no-such-flag"]),
        (sandbox.bare(), vec!["list", "-m"]),
        // Missing settings.
        (sandbox.bare(), vec!["list"]),
        // Unknown names: mailbox (tenant and repository), snapshot, message.
        (sandbox.against(&sim), vec!["backup", "-m", nobody]),
        (sandbox.atlas_for(&sim), vec!["list", "-m", nobody]),
        (sandbox.atlas_for(&sim), vec!["verify", "-m", nobody]),
        (sandbox.atlas_for(&sim), vec!["list", "-s", "ffffffff"]),
        (
            sandbox.atlas_for(&sim),
            vec!["read", "-s", &id, "--message", "no-such-message"],
        ),
        (
            sandbox.atlas_for(&sim),
            vec!["forget", "-m", nobody, "--keep-last", "1"],
        ),
        // An unknown restore target (the error comes through the restore's own error).
        (
            sandbox.against(&sim),
            vec!["restore", "-m", &upn, "-T", nobody],
        ),
        // A policy that would keep nothing.
        (
            sandbox.atlas_for(&sim),
            vec!["forget", "--prune", "--dry-run"],
        ),
        // Rules that keep nothing, without --allow-empty (they planned to forget every
        // snapshot, exit 0).
        (sandbox.atlas_for(&sim), vec!["forget", "--keep-last", "0"]),
        (
            sandbox.atlas_for(&sim),
            vec!["forget", "--keep-last", "0", "--keep-daily", "0", "--prune"],
        ),
        // Options that contradict each other.
        (
            sandbox.against(&sim),
            vec![
                "restore",
                "-m",
                &upn,
                "--start-date",
                "2024-02-01",
                "--end-date",
                "2024-01-01",
                "--dry-run",
            ],
        ),
    ];
    for (cmd, args) in cases {
        let (code, text) = run(cmd, &args);
        assert_eq!(code, Some(3), "atlas {}: {text}", args.join(" "));
        // User messages carry no internal prefixes.
        assert!(
            !text.contains("invalid input"),
            "atlas {}: {text}",
            args.join(" ")
        );
    }
    // The refused forget removed nothing; with --allow-empty it removes every snapshot.
    let snapshots = |sandbox: &Sandbox| {
        let out = sandbox
            .atlas_for(&sim)
            .args(["--json", "list", "-m", &upn])
            .output()
            .expect("runs");
        super::json(&out)["snapshots"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(snapshots(&sandbox), 1);
    let (code, text) = run(
        sandbox.atlas_for(&sim),
        &["forget", "--keep-last", "0", "--allow-empty"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshots(&sandbox), 0);
}
