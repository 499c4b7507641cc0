//! "Never destroy what is not Atlas's": where `save` writes, what it replaces (only its own
//! earlier exports), stdout output, Ctrl+C during a save, unknown folder filters.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::graph_e2e::Sim;
use super::{Sandbox, output_text};

fn backed_up(messages: usize) -> (Sim, String, Sandbox) {
    let (sim, upn) = Sim::one_user(messages);
    let sandbox = Sandbox::new();
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    (sim, upn, sandbox)
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Python's zipfile reads `path` (CRC of every entry checked) and prints the entry count.
fn python_zip_entries(path: &std::path::Path) -> usize {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(len(z.infolist()))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

/// `atlas save -m X -o DIR -y` deleted DIR and put the zip in its place; with a trailing
/// slash it deleted it and then failed. Now the export goes inside DIR, named after
/// mailbox and snapshot, and DIR's files stay.
#[test]
fn save_into_an_existing_directory_never_deletes_it() {
    let (sim, upn, sandbox) = backed_up(8);
    let dir = sandbox.cwd().join("exports");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("thesis.docx"), b"years of work").expect("write");
    for given in ["exports", "exports/"] {
        let out = sandbox.run(&sim, &["--json", "save", "-m", &upn, "-o", given, "-y"]);
        assert_eq!(out.status.code(), Some(0), "{given}: {}", output_text(&out));
        assert_eq!(
            std::fs::read(dir.join("thesis.docx")).expect("still there"),
            b"years of work"
        );
    }
    let names = names_in(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    let zip = names
        .iter()
        .find(|n| {
            n.starts_with("atlas-")
                && std::path::Path::new(n)
                    .extension()
                    .is_some_and(|e| e == "zip")
        })
        .expect("the export, named after mailbox and snapshot");
    assert!(zip.contains(upn.as_str()), "{zip}");
    assert_eq!(python_zip_entries(&dir.join(zip)), 8);
    // A file that is not an export is never replaced, -y or not.
    std::fs::write(sandbox.cwd().join("report.zip"), b"not an export").expect("write");
    let out = sandbox.run(&sim, &["save", "-m", &upn, "-o", "report.zip", "-y"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("not an Atlas export"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        std::fs::read(sandbox.cwd().join("report.zip")).expect("kept"),
        b"not an export"
    );
}

/// `-o -` created a file named `-`; `--format mbox -o x.mbox` created a directory.
#[test]
fn save_to_stdout_and_to_one_mbox_file() {
    let (sim, upn, sandbox) = backed_up(8);
    let out = sandbox.run(&sim, &["save", "-m", &upn, "-o", "-"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sandbox.cwd().join("-").exists(), "no file named -");
    let zip = sandbox.cwd().join("from-stdout.zip");
    std::fs::write(&zip, &out.stdout).expect("write");
    assert_eq!(python_zip_entries(&zip), 8);

    let out = sandbox.run(&sim, &["save", "-m", &upn, "--format", "mbox", "-o", "-"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.starts_with(b"From "), "an mbox stream");
    let mbox = sandbox.cwd().join("from-stdout.mbox");
    std::fs::write(&mbox, &out.stdout).expect("write");

    let out = sandbox.run(
        &sim,
        &["save", "-m", &upn, "--format", "mbox", "-o", "all.mbox"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let file = sandbox.cwd().join("all.mbox");
    assert!(file.is_file(), "one file, not a directory");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        std::fs::read(&mbox).expect("read")
    );
    let count = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.mbox(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "8");
}

/// `save -f Inbx` / `list -f Inbx` said "0 messages" and exited 0; `backup -f Inbx` exited
/// 0, said "every folder of every mailbox is fully captured" and wrote a snapshot.
#[test]
fn unknown_folder_is_a_usage_error_naming_near_matches() {
    let (sim, upn, sandbox) = backed_up(4);
    let snapshots = || {
        let out = sandbox.run(&sim, &["--json", "list", "-m", &upn]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["snapshots"].as_array().expect("snapshots").clone()
    };
    let snaps = snapshots();
    let snap = snaps[0]["id"].as_str().expect("id").to_owned();
    for args in [
        vec!["save", "-m", &upn, "-f", "Inbx", "-o", "x.zip"],
        vec!["list", "-s", &snap, "-f", "Inbx"],
        vec!["restore", "-m", &upn, "-f", "Inbx", "--dry-run"],
        vec!["backup", "-m", &upn, "-f", "Inbx"],
        vec!["backup", "-f", "Inbx"],
    ] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            output_text(&out)
        );
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Inbx") && text.contains("Inbox"),
            "{args:?}: {text}"
        );
    }
    assert!(!sandbox.cwd().join("x.zip").exists());
    assert_eq!(
        snapshots().len(),
        snaps.len(),
        "a refused backup wrote a snapshot"
    );
}

/// Ctrl+C during `save` was ignored. Here the save writes to a pipe nobody reads, so it is
/// blocked in a write when the signal comes: it must still stop, promptly, with exit 1,
/// and leave nothing behind.
#[test]
fn ctrl_c_during_save_is_honoured() {
    let (sim, upn, sandbox) = backed_up(120);
    for format in ["eml-zip", "mbox"] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let mut child = sandbox
            .spawnable(&sim)
            .args(["save", "-m", &upn, "--format", format, "-o", "-"])
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns");
        // Let it fill the pipe and block.
        std::thread::sleep(Duration::from_secs(3));
        assert!(child.try_wait().expect("poll").is_none(), "still writing");
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("poll") {
                break s;
            }
            assert!(Instant::now() < deadline, "{format}: Ctrl+C was ignored");
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(reader);
        assert_eq!(status.code(), Some(1), "{format}: {status}");
        assert!(sent.elapsed() < Duration::from_secs(15));
        assert_eq!(names_in(&sandbox.cwd()), Vec::<String>::new());
    }
}
