//! What people see on the terminal (issue 11, "show progress and tell the truth"): every
//! long command reports progress — bars on a terminal, plain lines in a log, nothing with
//! `-q` or `--json` —, `-v` log lines carry timestamps, sizes and times read as people
//! read them, and `--as-of` takes a full timestamp as well as a day.

use std::process::Stdio;

use atlas_sim::SimConfig;

use super::graph_e2e::Sim;
use super::{Sandbox, json, output_text};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A sandbox with two snapshots of one mailbox; returns the mailbox and both snapshot ids
/// with their start times, oldest first.
fn two_snapshots(sim: &Sim, sandbox: &Sandbox) -> (String, Vec<(String, String)>) {
    let upn = sim.licensed_users().remove(0);
    let out = sandbox.atlas_for(sim).arg("init").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for n in 0..2 {
        if n == 1 {
            sim.handle
                .add_message(
                    &upn,
                    "inbox",
                    atlas_sim::NewMessage::text("second", "for the second snapshot"),
                )
                .expect("add");
        }
        let out = sandbox
            .against(sim)
            .args(["backup", "-m", &upn])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let out = sandbox
        .atlas_for(sim)
        .args(["--json", "list", "-m", &upn])
        .output()
        .expect("runs");
    let mut snaps: Vec<(String, String)> = json(&out)["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_owned(),
                s["started"].as_str().expect("started").to_owned(),
            )
        })
        .collect();
    snaps.reverse();
    (upn, snaps)
}

#[test]
fn long_commands_report_progress_in_plain_lines_without_a_terminal() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 12,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (upn, snaps) = two_snapshots(&sim, &sandbox);
    let repo = || sandbox.atlas_for(&sim);
    let run = |mut cmd: assert_cmd::Command, args: &[&str]| {
        let out = cmd.args(args).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            output_text(&out)
        );
        stderr_of(&out)
    };

    let verify = run(repo(), &["verify"]);
    assert!(
        verify.contains("reading snapshots: 2 snapshots"),
        "{verify}"
    );
    let verify = run(repo(), &["verify", "--read-data"]);
    assert!(verify.contains("verifying packs: "), "{verify}");
    assert!(
        verify.contains(" packs, ") && verify.contains(" in "),
        "{verify}"
    );
    let zip = sandbox.cwd().join("p.zip");
    let save = run(
        repo(),
        &["save", "-m", &upn, "-o", zip.to_str().expect("utf-8")],
    );
    assert!(save.contains("exporting: "), "{save}");
    let replica = sandbox.dir.path().join("replica");
    let copy = run(
        repo(),
        &[
            "replicate",
            "--all",
            "--target-repository",
            replica.to_str().expect("utf-8"),
        ],
    );
    assert!(copy.contains("copying"), "{copy}");
    let forget = run(repo(), &["forget", "--keep-last", "1", "--prune"]);
    assert!(forget.contains("finding unused data: "), "{forget}");
    let restore = run(
        sandbox.against(&sim),
        &["restore", "-s", &snaps[1].0, "-T", &upn, "-f", "Inbox"],
    );
    assert!(restore.contains(&format!("✓ {upn}")), "{restore}");

    // -q: nothing on stderr; --json: the document only, no progress either.
    for args in [&["-q", "verify"][..], &["--json", "verify"][..]] {
        let out = repo().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        assert_eq!(stderr_of(&out), "", "{args:?}");
    }

    // Last, as it removes the repository: delete --purge reports its deletions
    // (regression: it was silent for as long as it deleted).
    let purge = run(repo(), &["delete", "--purge", "-y"]);
    assert!(
        purge.contains("deleting: ") && purge.contains(" objects"),
        "{purge}"
    );
}

#[test]
fn restore_on_a_terminal_is_titled_restore_not_backup() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 8,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (upn, snaps) = two_snapshots(&sim, &sandbox);
    // `script` gives the command a terminal of 80 columns; its output is what a person
    // would have seen.
    let atlas = assert_cmd::cargo::cargo_bin("atlas");
    let command = format!(
        "stty cols 80 rows 24; {} restore -s {} -T {upn} -f Inbox",
        atlas.display(),
        snaps[0].0
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sandbox.home())
        .env("ATLAS_KDF", "scrypt-n14")
        .envs(sim.graph_env())
        .env("ATLAS_ENCRYPTION_PASSPHRASE", super::PASSPHRASE)
        .env("ATLAS_REPOSITORY", sandbox.repo())
        .current_dir(sandbox.cwd())
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("atlas restore"), "{text}");
    assert!(!text.contains("atlas backup"), "{text}");
}

#[test]
fn verbose_log_lines_carry_a_timestamp_with_the_zone() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .atlas()
        .env("TZ", "XYZ-3")
        .args(["-v", "init"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let log = stderr_of(&out);
    let line = log
        .lines()
        .find(|l| l.contains("INFO"))
        .unwrap_or_else(|| panic!("an info line: {log}"));
    // 2026-03-31T20:00:00.123+03:00  INFO …
    let stamp = line.split_whitespace().next().expect("a first word");
    assert_eq!(stamp.len(), "2026-03-31T20:00:00.123+03:00".len(), "{line}");
    assert!(stamp.ends_with("+03:00"), "{line}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{line}"
    );
    // Without -v, warnings stay plain messages.
    let out = sandbox
        .atlas()
        .env("ATLAS_ENCRYPTION_PASSPHRASE", "short-pass")
        .arg("init")
        .output()
        .expect("runs");
    assert!(
        stderr_of(&out).trim_start().starts_with("WARN"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn as_of_takes_a_full_timestamp_and_times_show_the_local_zone() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 6,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (upn, snaps) = two_snapshots(&sim, &sandbox);
    let first = chrono::DateTime::parse_from_rfc3339(&snaps[0].1).expect("time");
    let second = chrono::DateTime::parse_from_rfc3339(&snaps[1].1).expect("time");
    assert!(first < second);
    // Just before the second snapshot started, as a full RFC 3339 timestamp in another
    // zone than UTC: the first snapshot.
    let between = (second - chrono::Duration::milliseconds(1))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    for (as_of, want) in [(&between, &snaps[0].0), (&snaps[1].1, &snaps[1].0)] {
        let zip = sandbox.cwd().join(format!("{want}.zip"));
        let out = sandbox
            .atlas_for(&sim)
            .args(["--json", "save", "-m", &upn, "--as-of", as_of, "-o"])
            .arg(&zip)
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "--as-of {as_of}: {}",
            output_text(&out)
        );
        assert_eq!(json(&out)["snapshot"], want.as_str(), "--as-of {as_of}");
    }

    // Text output shows times in the local zone, with the zone.
    let out = sandbox
        .atlas_for(&sim)
        .env("TZ", "XYZ-3")
        .args(["list", "-m", &upn])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let local = second
        .with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).expect("offset"))
        .format("%Y-%m-%d %H:%M:%S +03:00")
        .to_string();
    assert!(text.contains(&local), "{local} in {text}");
    // Sizes in human units.
    let out = sandbox.atlas_for(&sim).arg("list").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(" KiB") || text.contains(" MiB"), "{text}");
}

/// Issue 11: `read` showed a folded header with U+FFFD where the fold was, and left RFC
/// 2047 encoded words (`=?UTF-8?B?…?=`) encoded. The simulator's messages have both: folded
/// `Content-Type` headers and encoded non-ASCII subjects.
#[test]
fn read_unfolds_headers_and_decodes_encoded_words() {
    let sim = Sim::start(SimConfig {
        users: 3,
        messages_per_user: 12,
        ..SimConfig::default()
    });
    let sandbox = Sandbox::new();
    let (_, snaps) = two_snapshots(&sim, &sandbox);
    let snap = &snaps[1].0;
    let out = sandbox
        .atlas_for(&sim)
        .args(["--json", "list", "-s", snap])
        .output()
        .expect("runs");
    let items = json(&out);
    let mut encoded_seen = false;
    for item in items["items"].as_array().expect("items") {
        let id = item["messageId"].as_str().expect("id");
        let raw = sandbox
            .atlas_for(&sim)
            .args(["read", "-s", snap, "--message", id, "--raw"])
            .output()
            .expect("runs");
        let raw = String::from_utf8_lossy(&raw.stdout).into_owned();
        let raw_headers = raw.split("\r\n\r\n").next().unwrap_or_default();
        encoded_seen |= raw_headers.contains("=?");
        let out = sandbox
            .atlas_for(&sim)
            .args(["read", "-s", snap, "--message", id])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let headers = text.split("\n\n").next().unwrap_or_default();
        assert!(!headers.contains('\u{FFFD}'), "{headers}");
        assert!(!headers.contains("=?"), "{headers}");
        if raw_headers.contains("boundary=") {
            assert!(headers.contains("; boundary="), "{headers}");
        }
    }
    assert!(encoded_seen, "the tenant has encoded headers to decode");
}
