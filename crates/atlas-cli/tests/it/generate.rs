//! `atlas completions` and `atlas man`: generated from the command definitions, read back
//! by the programs that use them (bash parses the bash script; `man`'s formatter, when
//! present, renders the pages).

use super::json_schemas::assert_schema;
use super::{Sandbox, output_text};

#[test]
fn completions_cover_every_command_in_each_shell() {
    let sandbox = Sandbox::new();
    for (shell, marker) in [
        ("bash", "complete -F _atlas"),
        ("zsh", "#compdef atlas"),
        ("fish", "complete -c atlas"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[atlas]"),
    ] {
        let out = sandbox
            .bare()
            .args(["completions", shell])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", output_text(&out));
        let script = String::from_utf8(out.stdout).expect("UTF-8");
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for word in ["backup", "restore", "--retention-days", "completions"] {
            assert!(script.contains(word), "{shell}: {word} not completed");
        }
    }
    sandbox
        .bare()
        .args(["completions", "tcsh"])
        .assert()
        .code(3);
}

#[test]
fn the_bash_completion_script_is_valid_bash_and_completes_subcommands() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .bare()
        .args(["completions", "bash"])
        .output()
        .expect("runs");
    let file = sandbox.cwd().join("atlas.bash");
    std::fs::write(&file, &out.stdout).expect("write");
    // Source it and ask for the completions of `atlas ba<TAB>` and `atlas backup --ki<TAB>`.
    let probe = format!(
        "source {}\n\
         COMP_WORDS=(atlas ba); COMP_CWORD=1; _atlas atlas ba atlas; echo \"${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(atlas backup --ki); COMP_CWORD=2; _atlas atlas --ki backup; echo \"${{COMPREPLY[*]}}\"\n",
        file.display()
    );
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(probe)
        .output()
        .expect("bash runs");
    assert!(run.status.success(), "{}", output_text(&run));
    let lines: Vec<String> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("backup"),
        "{lines:?}"
    );
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("--kinds"),
        "{lines:?}"
    );
}

#[test]
fn man_writes_one_page_per_command_without_help_pages() {
    let sandbox = Sandbox::new();
    let dir = sandbox.cwd().join("man");
    let out = sandbox
        .bare()
        .args(["--json", "man"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = assert_schema("man", &out);
    let pages: Vec<&str> = doc["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| p.as_str().expect("name"))
        .collect();
    for expected in [
        "atlas.1",
        "atlas-backup.1",
        "atlas-key-passwd.1",
        "atlas-sim-serve.1",
    ] {
        assert!(pages.contains(&expected), "{expected} not in {pages:?}");
        assert!(dir.join(expected).is_file(), "{expected} not written");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    let backup = std::fs::read_to_string(dir.join("atlas-backup.1")).expect("page");
    assert!(
        backup.starts_with(".ie") || backup.contains(".TH ATLAS-BACKUP 1"),
        "{backup}"
    );
    assert!(backup.contains("retention\\-days"), "{backup}");
    // The main page carries the exit-code table of `--help`.
    let main = std::fs::read_to_string(dir.join("atlas.1")).expect("page");
    assert!(main.contains("Exit codes"), "{main}");
}

#[test]
fn completions_json_is_a_document_with_the_script() {
    let out = Sandbox::new()
        .bare()
        .args(["--json", "completions", "zsh"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let doc = assert_schema("completions", &out);
    assert_eq!(doc["shell"], "zsh");
    assert!(
        doc["script"]
            .as_str()
            .is_some_and(|s| s.starts_with("#compdef atlas"))
    );
}
