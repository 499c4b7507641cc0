//! `save`: every exported message read back by Python's `email` package; zip and mbox
//! structure; bad input and failures leave no output behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use atlas_core::Error;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{
    ExportFormat, OutputKind, SaveOptions, export_name, plan_output, save_to_path, write_eml_zip,
};
use sha2::{Digest, Sha256};

use crate::services::common::{
    Att, Msg, backup_folders, mailbox, new_repo, raw_mime, sample_folders, sample_repo, t0,
};

/// Reads a zip with `zipfile` (testzip = CRC check of every entry) and parses every entry
/// with `email` (default policy); prints one JSON object per entry.
const PY_ZIP: &str = r#"
import email, email.policy, hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None, "bad CRC"
out = []
for info in z.infolist():
    raw = z.read(info)
    m = email.message_from_bytes(raw, policy=email.policy.default)
    text = m.get_body(("plain",))
    html = m.get_body(("html",))
    atts = []
    for a in m.iter_attachments():
        atts.append({"name": a.get_filename(), "type": a.get_content_type(),
                     "sha": hashlib.sha256(a.get_content() if isinstance(a.get_content(), bytes) else a.get_content().encode()).hexdigest(),
                     "raw_sha": hashlib.sha256(a.get_payload(decode=True)).hexdigest()})
    out.append({"entry": info.filename, "sha": hashlib.sha256(raw).hexdigest(),
                "subject": str(m["subject"]), "from": str(m["from"]), "mid": str(m["message-id"]),
                "text": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
                "atts": atts})
print(json.dumps(out))
"#;

fn python_zip(path: &std::path::Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_ZIP)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn opts(id: atlas_core::model::SnapshotId, format: ExportFormat) -> SaveOptions {
    SaveOptions {
        snapshot: SnapshotSelector::Id(id),
        folder: None,
        message: None,
        kind: None,
        format,
        skip_verify: false,
        reporter: std::sync::Arc::new(atlas_core::ports::NullReporter),
    }
}

#[tokio::test]
async fn eml_zip_is_read_back_identically_by_python_email() {
    let (_s, repo, id) = sample_repo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.zip");
    let sum = save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, false)
        .await
        .unwrap();
    assert!(sum.is_complete());
    assert_eq!((sum.messages, sum.folders), (6, 3));
    // Nothing but the finished archive is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.zip")]);
    let unzip = Command::new("unzip")
        .arg("-tq")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        unzip.status.success(),
        "{}",
        String::from_utf8_lossy(&unzip.stdout)
    );

    let entries = python_zip(&path);
    let by_entry: BTreeMap<String, serde_json::Value> = entries
        .into_iter()
        .map(|e| (e["entry"].as_str().unwrap().to_owned(), e))
        .collect();
    let expected_names = [
        "Inbox/2026-03-10_143022_Quarterly-report-Q12026.eml",
        "Inbox/2026-03-10_153022_Héllo-wörld-—-ünïcödé.eml",
        "Inbox/2026-03-10_163022_Same.eml",
        "Inbox/2026-03-10_163022_Same_1.eml",
        "Inbox/Projects/2026-04-19_143022_[31mEvil-subject.eml",
        "Sent Items/2026-03-11_143022_mbox-quoting.eml",
    ];
    assert_eq!(
        by_entry.keys().map(String::as_str).collect::<Vec<_>>(),
        expected_names.to_vec()
    );
    let mut all = Vec::new();
    for (path, msgs) in sample_folders() {
        for m in msgs {
            all.push((path.clone(), m));
        }
    }
    for (name, (_, m)) in expected_names.iter().zip(&all) {
        let e = &by_entry[*name];
        // Byte for byte.
        assert_eq!(
            e["sha"].as_str().unwrap(),
            hex::encode(Sha256::digest(raw_mime(m))),
            "{name}"
        );
        assert_eq!(e["subject"].as_str().unwrap(), m.subject, "{name}");
        assert_eq!(
            e["mid"].as_str().unwrap(),
            format!("<{}@contoso.com>", m.id)
        );
        if m.subject != "mbox quoting" {
            assert_eq!(e["from"].as_str().unwrap(), m.from, "{name}");
            let norm = |s: &str| s.replace("\r\n", "\n");
            assert_eq!(
                e["text"].as_str().map(norm),
                m.text.as_deref().map(norm),
                "{name}"
            );
            assert_eq!(
                e["html"].as_str().map(|s| s.trim_end().to_owned()),
                m.html.clone(),
                "{name}"
            );
        }
        let atts = e["atts"].as_array().unwrap();
        assert_eq!(atts.len(), m.attachments.len(), "{name}");
        for (got, want) in atts.iter().zip(&m.attachments) {
            assert_eq!(got["name"].as_str().unwrap(), want.name);
            assert_eq!(got["type"].as_str().unwrap(), want.content_type);
            assert_eq!(
                got["raw_sha"].as_str().unwrap(),
                hex::encode(Sha256::digest(&want.bytes))
            );
        }
    }
}

/// A message that is mostly an already-compressed attachment is stored in the zip, not
/// deflated (deflate would spend its CPU to win back only base64's 25 %); text is still
/// deflated. Python's `zipfile` reads both back byte for byte.
#[tokio::test]
async fn eml_zip_stores_messages_of_compressed_attachments_and_deflates_text() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let text = "Line of the quarterly numbers, nothing compressed here.\r\n".repeat(2000);
    let msg = |id: &str, subject: &'static str, text: Option<String>, attachments: Vec<Att>| Msg {
        id: id.into(),
        subject,
        from: "alice@contoso.com",
        text,
        html: None,
        attachments,
        received: t0(),
    };
    let folders = vec![(
        vec!["Inbox"],
        vec![
            msg(
                "photo",
                "Photos",
                Some("See attached.\r\n".into()),
                vec![Att {
                    name: "photos.zip",
                    content_type: "application/zip",
                    bytes: noise,
                }],
            ),
            msg("text", "Numbers", Some(text), vec![]),
        ],
    )];
    let (_s, repo) = new_repo().await;
    let id = backup_folders(&repo, &mailbox(), t0(), &folders, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.zip");
    save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, false)
        .await
        .unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import hashlib, json, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.testzip() is None\n\
             print(json.dumps({i.filename: [i.compress_type, i.compress_size, i.file_size,\n\
               hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()}))",
        )
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: BTreeMap<String, (u32, u64, u64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let (photo, text) = (
        &entries["Inbox/2026-03-10_143022_Photos.eml"],
        &entries["Inbox/2026-03-10_143022_Numbers.eml"],
    );
    for (m, e) in folders[0].1.iter().zip([photo, text]) {
        assert_eq!(e.3, hex::encode(Sha256::digest(raw_mime(m))), "{}", m.id);
    }
    assert_eq!(photo.0, 0, "stored: {photo:?}");
    assert!(photo.1 <= photo.2, "{photo:?}");
    assert!(photo.2 > 300_000, "{photo:?}");
    assert_eq!(text.0, 8, "deflated: {text:?}");
    assert!(text.1 * 4 < text.2, "{text:?}");
}

/// mboxrd un-quoting, as a reader does it: split on `From ` lines, drop one `>` from
/// `>+From ` lines, drop the separator blank line.
fn split_mboxrd(data: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in data.split_inclusive('\n') {
        if line.starts_with("From ") {
            out.push(String::new());
            continue;
        }
        let cur = out.last_mut().expect("mbox starts with a From line");
        let stripped = line.trim_start_matches('>');
        if stripped.starts_with("From ") && line.starts_with('>') {
            cur.push_str(&line[1..]);
        } else {
            cur.push_str(line);
        }
    }
    for m in &mut out {
        assert!(m.ends_with("\n\n"), "message not followed by a blank line");
        m.pop();
    }
    out
}

#[tokio::test]
async fn mbox_files_split_back_into_the_same_messages() {
    let (_s, repo, id) = sample_repo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    let sum = save_to_path(&repo, &opts(id, ExportFormat::Mbox), &path, false)
        .await
        .unwrap();
    assert_eq!(sum.messages, 6);
    for (folder, msgs) in sample_folders() {
        let file = path.join(format!("{}.mbox", folder.join("/")));
        let data = std::fs::read_to_string(&file).unwrap();
        let split = split_mboxrd(&data);
        let want: Vec<String> = msgs
            .iter()
            .map(|m| {
                String::from_utf8(raw_mime(m).to_vec())
                    .unwrap()
                    .replace("\r\n", "\n")
            })
            .collect();
        assert_eq!(split, want, "{}", file.display());
        if folder == ["Sent Items"] {
            assert!(data.contains("\n>From the desk"));
            assert!(data.contains("\n>>From quoted once"));
            assert!(data.contains("\n>>>From quoted twice"));
            assert!(data.contains("\nFromage"));
        }
    }
    // Python's mailbox module reads the same number of messages per file.
    let out = Command::new("python3")
        .arg("-c")
        .arg("import mailbox,sys; print(len(mailbox.mbox(sys.argv[1])))")
        .arg(path.join("Inbox.mbox"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4");
}

#[tokio::test]
async fn folder_and_message_filters_and_mailbox_mode_select_the_right_messages() {
    let (_s, repo, id) = sample_repo().await;
    let mut o = opts(id, ExportFormat::EmlZip);
    o.folder = Some("projects".into());
    let (sum, cur) = write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem")
        .await
        .unwrap();
    assert_eq!(sum.messages, 1);
    let zip = zip::ZipArchive::new(cur).unwrap();
    assert_eq!(zip.len(), 1);

    let mut o = opts(id, ExportFormat::EmlZip);
    o.snapshot = SnapshotSelector::Latest {
        mailbox: mailbox(),
        as_of: None,
    };
    o.message = Some("<AAMkAGI2-inbox-2@contoso.com>".into());
    let (sum, _) = write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem")
        .await
        .unwrap();
    assert_eq!(sum.messages, 1);
    o.message = Some("AAMkAGI2-sent".into());
    let (sum, _) = write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem")
        .await
        .unwrap();
    assert_eq!(sum.messages, 1);
    // Ambiguous prefix and unknown reference.
    o.message = Some("AAMkAGI2-inbox".into());
    assert!(matches!(
        write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem").await,
        Err(Error::InvalidInput { .. })
    ));
    o.message = Some("nope-nope".into());
    assert!(matches!(
        write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem").await,
        Err(Error::InvalidInput { .. })
    ));
    // as-of before the first snapshot.
    o.message = None;
    o.snapshot = SnapshotSelector::Latest {
        mailbox: mailbox(),
        as_of: Some(crate::services::common::t0() - chrono::Duration::days(1)),
    };
    assert!(matches!(
        write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem").await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn bad_input_and_failures_leave_no_output() {
    let (store, repo, id) = sample_repo().await;
    let dir = tempfile::tempdir().unwrap();
    // Unknown snapshot.
    let unknown = atlas_core::model::SnapshotId::random();
    let path = dir.path().join("a.zip");
    assert!(matches!(
        save_to_path(&repo, &opts(unknown, ExportFormat::EmlZip), &path, false).await,
        Err(Error::SnapshotNotFound { .. })
    ));
    // Unknown mailbox.
    let mut o = opts(id, ExportFormat::EmlZip);
    o.snapshot = SnapshotSelector::Latest {
        mailbox: atlas_core::model::MailboxId::new("nobody@contoso.com"),
        as_of: None,
    };
    assert!(matches!(
        save_to_path(&repo, &o, &path, false).await,
        Err(Error::InvalidInput { .. })
    ));
    // Unwritable output path.
    let bad = dir.path().join("no/such/dir/out.zip");
    assert!(matches!(
        save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &bad, false).await,
        Err(Error::Store(_))
    ));
    // An existing file that is not an export is never replaced, not even with overwrite.
    std::fs::write(&path, b"precious").unwrap();
    for overwrite in [false, true] {
        assert!(matches!(
            save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, overwrite).await,
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }
    // An earlier export is replaced only with overwrite.
    std::fs::remove_file(&path).unwrap();
    save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, false)
        .await
        .unwrap();
    assert!(matches!(
        save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, false).await,
        Err(Error::OutputExists { .. })
    ));
    save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, true)
        .await
        .unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(b"PK"));
    // A failure midway (a folder list's pack vanished) leaves neither the output nor a
    // temporary file.
    let out = dir.path().join("broken.zip");
    for m in store.list("packs/").await.unwrap() {
        store.delete(&m.key).await.unwrap();
    }
    let fresh = atlas_core::repo::Repository::open(
        store.clone(),
        crate::services::common::TENANT,
        &crate::services::common::passphrase(),
    )
    .await
    .unwrap();
    assert!(
        save_to_path(&fresh, &opts(id, ExportFormat::EmlZip), &out, false)
            .await
            .is_err()
    );
    assert!(
        save_to_path(&fresh, &opts(id, ExportFormat::Mbox), &out, false)
            .await
            .is_err()
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("a.zip")]);
}

/// A sink that fails like a full disk after `room` bytes, and counts the writes and seeks
/// it is asked for once it has refused one.
struct FullDisk {
    inner: std::io::Cursor<Vec<u8>>,
    room: usize,
    after_full: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FullDisk {
    fn is_full(&self) -> bool {
        self.after_full.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    fn touched(&self) {
        if self.is_full() {
            self.after_full
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.touched();
        if self.inner.get_ref().len() + buf.len() > self.room {
            if !self.is_full() {
                self.after_full
                    .store(1, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for FullDisk {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.touched();
        self.inner.seek(pos)
    }
}

/// Also: once the disk is full nothing more is written. The zip writer, dropped
/// unfinished, used to finish itself into the full sink and print "ZipWriter drop failed"
/// on stderr beside Atlas's own error.
#[tokio::test]
async fn disk_full_while_saving_is_reported_as_storage_full() {
    let (_s, repo, id) = sample_repo().await;
    let after_full = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sink = FullDisk {
        inner: std::io::Cursor::new(Vec::new()),
        room: 2000,
        after_full: after_full.clone(),
    };
    let r = write_eml_zip(&repo, &opts(id, ExportFormat::EmlZip), sink, "disk").await;
    assert!(
        matches!(
            r,
            Err(Error::Store(
                atlas_core::ports::StoreError::StorageFull { .. }
            ))
        ),
        "{:?}",
        r.err()
    );
    assert_eq!(
        after_full.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the sink was written or moved in after it was full"
    );
}

#[tokio::test]
async fn wrong_passphrase_is_refused() {
    let (store, _repo, _id) = sample_repo().await;
    let r = atlas_core::repo::Repository::open(
        store,
        crate::services::common::TENANT,
        &atlas_core::repo::Passphrase::new("wrong horse"),
    )
    .await;
    assert!(matches!(r, Err(Error::WrongPassphrase { .. })));
}

/// `save -o DIR -y` on an existing directory deleted the whole directory and put the zip in
/// its place; with a trailing slash it deleted it and then failed, losing both. A directory
/// means "write the export inside it", named after mailbox and snapshot.
#[tokio::test]
async fn save_into_an_existing_directory_writes_inside_it_and_never_removes_it() {
    let (_s, repo, id) = sample_repo().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"mine").unwrap();
    let zip_name = export_name(mailbox().address(), id, OutputKind::ZipFile);
    assert!(
        zip_name.starts_with("atlas-")
            && std::path::Path::new(&zip_name)
                .extension()
                .is_some_and(|e| e == "zip"),
        "{zip_name}"
    );
    for given in [dir.clone(), root.path().join("exports/")] {
        for overwrite in [false, true] {
            if overwrite {
                // The second save replaces the first export (an Atlas export), nothing else.
                let sum = save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &given, true)
                    .await
                    .unwrap();
                assert_eq!(sum.output.as_deref(), Some(dir.join(&zip_name).as_path()));
            } else {
                let _ = std::fs::remove_file(dir.join(&zip_name));
                save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &given, false)
                    .await
                    .unwrap();
            }
            assert_eq!(std::fs::read(dir.join("keep.txt")).unwrap(), b"mine");
            assert_eq!(python_zip(&dir.join(&zip_name)).len(), 6);
        }
    }
    // mbox into the directory: a per-folder directory inside it.
    let sum = save_to_path(&repo, &opts(id, ExportFormat::Mbox), &dir, true)
        .await
        .unwrap();
    let mbox_dir = dir.join(export_name(
        mailbox().address(),
        id,
        OutputKind::MboxDirectory,
    ));
    assert_eq!(sum.output.as_deref(), Some(mbox_dir.as_path()));
    assert!(mbox_dir.join("Inbox.mbox").is_file());
    // That directory is never replaced, not even with overwrite.
    let again = save_to_path(&repo, &opts(id, ExportFormat::Mbox), &dir, true).await;
    assert!(
        matches!(again, Err(Error::InvalidInput { .. })),
        "{again:?}"
    );
    assert!(mbox_dir.join("Inbox.mbox").is_file());
    // A trailing slash on a directory that does not exist yet creates it.
    let fresh = root.path().join("new/");
    let sum = save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &fresh, false)
        .await
        .unwrap();
    assert_eq!(
        sum.output.as_deref(),
        Some(root.path().join("new").join(&zip_name).as_path())
    );
    // Nothing but the exports and the user's file is left behind (no partials).
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec![
        "keep.txt".to_owned(),
        zip_name.clone(),
        export_name(mailbox().address(), id, OutputKind::MboxDirectory),
    ];
    want.sort();
    assert_eq!(names, want);
    // The plan says what would happen before anything is written.
    let plan = plan_output(&repo, &opts(id, ExportFormat::EmlZip), Some(&dir))
        .await
        .unwrap();
    assert_eq!(plan.path, dir.join(&zip_name));
    assert!(plan.replaces);
}

/// `--format mbox -o x.mbox` wrote a directory named `x.mbox`: it is one mbox file now.
#[tokio::test]
async fn mbox_to_a_dot_mbox_path_is_one_file() {
    let (_s, repo, id) = sample_repo().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.mbox");
    let sum = save_to_path(&repo, &opts(id, ExportFormat::Mbox), &path, false)
        .await
        .unwrap();
    assert_eq!(sum.messages, 6);
    assert!(path.is_file());
    let out = Command::new("python3")
        .arg("-c")
        .arg("import mailbox,sys; print(len(mailbox.mbox(sys.argv[1])))")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    // An mbox export is replaced with overwrite; another file of that name is not.
    save_to_path(&repo, &opts(id, ExportFormat::Mbox), &path, true)
        .await
        .unwrap();
    let other = dir.path().join("notes.mbox");
    std::fs::write(&other, b"my notes").unwrap();
    assert!(matches!(
        save_to_path(&repo, &opts(id, ExportFormat::Mbox), &other, true).await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(std::fs::read(&other).unwrap(), b"my notes");
}

/// `save -f Inbx` said "0 messages" and exited 0: an unknown folder is refused, naming
/// the near matches.
#[tokio::test]
async fn unknown_folder_filter_is_refused_naming_near_matches() {
    let (_s, repo, id) = sample_repo().await;
    let mut o = opts(id, ExportFormat::EmlZip);
    o.folder = Some("Inbx".into());
    match write_eml_zip(&repo, &o, std::io::Cursor::new(Vec::new()), "mem").await {
        Err(Error::InvalidInput { reason }) => {
            assert!(
                reason.contains("Inbx") && reason.contains("Inbox"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.0)),
    }
}

/// A killed save left a hidden `.partial-*` file that later saves never removed. Later saves
/// remove their own kind's leftovers whose writer is gone; a partial being written (locked),
/// files of another shape and names that only look alike stay.
#[cfg(unix)]
#[tokio::test]
async fn killed_save_partials_are_removed_by_the_next_save_and_nothing_else_is() {
    let (_s, repo, id) = sample_repo().await;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p(".out.zip.partial-0123456789ab"), b"PK\x03\x04half a zip").unwrap();
    std::fs::write(p(".out.zip.partial-00000000000f"), b"").unwrap();
    std::fs::write(p(".out.zip.partial-0123456789ac"), b"not a zip at all").unwrap();
    std::fs::write(p(".out.zip.partial-notours"), b"PK\x03\x04").unwrap();
    std::fs::write(p(".other.zip.partial-0123456789ab"), b"PK\x03\x04").unwrap();
    std::fs::write(p(".out.zip.partial-aaaaaaaaaaaa"), b"PK\x03\x04busy").unwrap();
    let busy = std::fs::File::open(p(".out.zip.partial-aaaaaaaaaaaa")).unwrap();
    rustix::fs::flock(&busy, rustix::fs::FlockOperation::LockExclusive).unwrap();
    save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &p("out.zip"), false)
        .await
        .unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".other.zip.partial-0123456789ab",
            ".out.zip.partial-0123456789ac",
            ".out.zip.partial-aaaaaaaaaaaa",
            ".out.zip.partial-notours",
            "out.zip",
        ]
    );
    drop(busy);
    // A killed mbox directory export: removed only with its lock file inside.
    let stale = p(".box.partial-0123456789ab");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(".atlas-partial"), b"").unwrap();
    std::fs::write(stale.join("Inbox.mbox"), b"From x").unwrap();
    let foreign = p(".box.partial-0123456789ac");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("mine.txt"), b"not Atlas's").unwrap();
    save_to_path(&repo, &opts(id, ExportFormat::Mbox), &p("box"), false)
        .await
        .unwrap();
    assert!(!stale.exists());
    assert!(foreign.join("mine.txt").is_file());
    assert!(p("box").join("Inbox.mbox").is_file());
    assert!(!p("box").join(".atlas-partial").exists());
}

/// Ctrl+C during `save` stops it at an await point (the CLI drops the future): the
/// temporary output goes with it, nothing is left posing as an export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_save_leaves_nothing_behind() {
    let (store, _repo, id) = sample_repo().await;
    let stalled: std::sync::Arc<dyn atlas_core::ports::BlobStore> =
        // Pack reads never answer: the save starts (the partial output exists) and then
        // waits forever, until it is cancelled.
        std::sync::Arc::new(crate::common::SlowPacks {
            inner: store,
            put_delay: std::time::Duration::ZERO,
            reads_stall: true,
        });
    let repo = atlas_core::repo::Repository::open(
        stalled,
        crate::services::common::TENANT,
        &crate::services::common::passphrase(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (format, name) in [(ExportFormat::EmlZip, "a.zip"), (ExportFormat::Mbox, "b")] {
        let path = dir.path().join(name);
        let task = {
            let repo = repo.clone();
            let path = path.clone();
            tokio::spawn(async move { save_to_path(&repo, &opts(id, format), &path, false).await })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::read_dir(dir.path()).unwrap().next().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the save never started"
            );
            tokio::task::yield_now().await;
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
