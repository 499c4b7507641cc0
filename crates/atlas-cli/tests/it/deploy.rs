//! The scheduling examples under deploy/ stay true: systemd's own checker accepts the
//! units, and every `atlas` command line in them (systemd ExecStart, cron) is one this
//! binary accepts.

use std::path::{Path, PathBuf};

use super::{Sandbox, output_text};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The `atlas …` command lines of a file: systemd's ExecStart (with `\` continuations) or
/// cron's `cd … && atlas …`, up to a shell operator.
fn atlas_command_lines(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // The program: ExecStart's first word, or the word after cron's `&&`.
            let start = if let Some(first) = words.first()?.strip_prefix("ExecStart=") {
                first.ends_with("/atlas").then_some(1)?
            } else {
                words.iter().position(|w| *w == "&&")? + 2
            };
            (words.get(start - 1)?.ends_with("atlas")).then_some(())?;
            Some(
                words[start..]
                    .iter()
                    .take_while(|w| !["|", "||", "&&", ";"].contains(w) && !w.starts_with('>'))
                    .map(|w| (*w).to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn every_atlas_command_line_of_the_examples_parses() {
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for file in [
        "systemd/atlas-backup.service",
        "systemd/atlas-verify.service",
        "cron/atlas",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).expect(file);
        let lines = atlas_command_lines(&text);
        assert!(!lines.is_empty(), "{file}: no atlas command found");
        for args in lines {
            // `--help` after valid arguments prints the help; after an unknown or
            // misspelled option clap reports that instead (exit 3).
            let out = sandbox
                .bare()
                .args(&args)
                .arg("--help")
                .output()
                .expect("runs");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{file}: {args:?}: {}",
                output_text(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn systemd_accepts_the_units() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED deploy::systemd_accepts_the_units: systemd-analyze is not installed\n",
        );
        return;
    };
    assert!(version.status.success());
    // Checked where the units say the binary is: here, the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = assert_cmd::cargo::cargo_bin("atlas");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(deploy_dir().join("systemd")).expect("deploy/systemd") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("unit");
        let text = text.replace("/usr/local/bin/atlas", &binary.display().to_string());
        std::fs::write(dir.path().join(&name), text).expect("copy");
        units.push(dir.path().join(name));
    }
    assert!(units.len() >= 4, "{units:?}");
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    // Unknown keys and bad values are only warnings for systemd: any output is a finding.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        output_text(&out)
    );
}
