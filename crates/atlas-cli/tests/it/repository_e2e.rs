//! Where repositories come from: only `atlas init` creates one (restic's rule), and `demo
//! --keep` leaves one its user can open.

use std::process::{Command, Stdio};

use atlas_sim::SimConfig;

use super::graph_e2e::Sim;
use super::{Sandbox, output_text};

/// `backup` against a location that holds no repository created one silently: a typo in
/// `ATLAS_REPOSITORY` gave a fresh full backup somewhere else. It is refused now, naming
/// the location and `atlas init`, and nothing is created there.
#[test]
fn backup_refuses_a_location_without_a_repository_until_init_creates_it() {
    let sim = Sim::start(SimConfig {
        users: 1,
        shared_mailboxes: 0,
        messages_per_user: 3,
        accounts_without_mailbox: false,
        ..SimConfig::default()
    });
    let upn = sim.licensed_users().remove(0);
    let sandbox = Sandbox::new();
    let out = sandbox.run(&sim, &["backup", "-m", &upn]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("no repository at") && text.contains("atlas init"),
        "{text}"
    );
    assert!(
        text.contains(&sandbox.repo().display().to_string()),
        "{text}"
    );
    assert!(!sandbox.repo().exists(), "nothing was created");

    let out = sandbox.run(&sim, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = sandbox.run(&sim, &["backup", "-m", &upn]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

/// The calendars and contacts `demo --keep DIR` saved are kept too, in `DIR/exports`, and
/// read back by independent parsers (Python's icalendar and vobject): one event per
/// calendar item (a changed occurrence is an extra VEVENT with a RECURRENCE-ID), one card
/// per contact.
fn read_back_kept_exports(report: &serde_json::Value, keep: &std::path::Path) {
    let exports = keep.join("exports");
    assert_eq!(
        report["exportsDir"].as_str(),
        Some(exports.display().to_string().as_str())
    );
    let shown = report["kindsShown"].as_array().expect("kindsShown");
    let saved = |kind: &str| {
        let k = shown
            .iter()
            .find(|k| k["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} in {report}"));
        let path = k["savedTo"].as_str().expect("savedTo").to_owned();
        assert!(path.starts_with(&exports.display().to_string()), "{path}");
        (path, k["savedItems"].as_u64().expect("savedItems"))
    };
    let (ics, events) = saved("calendar");
    let (vcf, contacts) = saved("contacts");
    let check = r#"
import sys, zipfile
try:
    import icalendar, vobject
except ImportError as e:
    sys.exit(f"Python's icalendar and vobject are needed ({e}): python3 -m pip install icalendar vobject")
ics, vcf = sys.argv[1], sys.argv[2]
events = sum(1 for n in zipfile.ZipFile(ics).namelist()
             for c in icalendar.Calendar.from_ical(zipfile.ZipFile(ics).read(n)).walk("VEVENT")
             if "RECURRENCE-ID" not in c)
cards = sum(1 for n in zipfile.ZipFile(vcf).namelist()
            for _ in vobject.readComponents(zipfile.ZipFile(vcf).read(n).decode("utf-8")))
print(events, cards)
"#;
    let out = Command::new("python3")
        .args(["-c", check, &ics, &vcf])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{events} {contacts}"),
        "VEVENTs and vCards read back"
    );
}

/// `demo --keep DIR` kept a repository nobody could open (its passphrase was random and
/// shown nowhere). DIR now holds the repository and a 0600 `.env` with what opens it, and
/// `cd DIR && atlas list` works.
#[test]
fn demo_keep_leaves_a_repository_its_user_can_open() {
    let sandbox = Sandbox::new();
    let keep = sandbox.cwd().join("kept");
    let demo = |dir: &std::path::Path| {
        Command::new(assert_cmd::cargo::cargo_bin("atlas"))
            .env_clear()
            .env("HOME", sandbox.home())
            .env("ATLAS_KDF", "scrypt-n14")
            .current_dir(sandbox.cwd())
            .args([
                "--json",
                "demo",
                "--users",
                "2",
                "--messages-per-user",
                "4",
                "--keep",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .expect("demo runs")
    };
    let out = demo(&keep);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let settings = keep.join(".env");
    assert_eq!(
        report["settingsFile"].as_str(),
        Some(settings.display().to_string().as_str()),
        "{report}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&settings)
            .expect("settings")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "only its owner can read the passphrase"
        );
    }
    let text = std::fs::read_to_string(&settings).expect("read");
    assert!(text.contains("ATLAS_ENCRYPTION_PASSPHRASE="), "{text}");
    read_back_kept_exports(&report, &keep);
    // The user's way in, as printed: cd DIR && atlas list.
    let list = Command::new(assert_cmd::cargo::cargo_bin("atlas"))
        .env_clear()
        .env("HOME", sandbox.home())
        .current_dir(&keep)
        .args(["--json", "list"])
        .output()
        .expect("list runs");
    assert_eq!(list.status.code(), Some(0), "{}", output_text(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert!(
        listed["mailboxes"].as_array().is_some_and(|m| m.len() >= 2),
        "{listed}"
    );

    // A directory that is not empty is refused before anything is written.
    let busy = sandbox.cwd().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("notes.txt"), b"mine").expect("write");
    let out = demo(&busy);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let mut names: Vec<_> = std::fs::read_dir(&busy)
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, [std::ffi::OsString::from("notes.txt")]);
}

/// `delete --purge` deleted every file under the repository directory, whatever it was: a
/// repository initialised in a directory that also holds the user's files took them along.
/// Only the repository goes; the user's files stay byte for byte.
#[test]
fn purge_never_removes_files_that_are_not_the_repository() {
    let sim = Sim::start(SimConfig {
        users: 1,
        shared_mailboxes: 0,
        messages_per_user: 3,
        accounts_without_mailbox: false,
        ..SimConfig::default()
    });
    let upn = sim.licensed_users().remove(0);
    let sandbox = Sandbox::new();
    let repo = sandbox.repo();
    std::fs::create_dir_all(repo.join("photos")).expect("mkdir");
    std::fs::write(repo.join("notes.txt"), b"mine").expect("write");
    std::fs::write(repo.join("photos").join("cat.jpg"), b"also mine").expect("write");
    for args in [vec!["init"], vec!["backup", "-m", &upn]] {
        let out = sandbox.run(&sim, &args);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    }
    let out = sandbox.run(&sim, &["delete", "--purge", "-y"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        std::fs::read(repo.join("notes.txt")).expect("kept"),
        b"mine"
    );
    assert_eq!(
        std::fs::read(repo.join("photos").join("cat.jpg")).expect("kept"),
        b"also mine"
    );
    // The repository itself is gone.
    let out = sandbox.run(&sim, &["list"]);
    assert_ne!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(!repo.join("config").exists() && !repo.join("packs").exists());
}
