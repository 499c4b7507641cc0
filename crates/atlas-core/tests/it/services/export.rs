//! `save`: every exported message read back by Python's `email` package; zip and mbox
//! structure; bad input and failures leave no output behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use atlas_core::Error;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{ExportFormat, SaveOptions, save_to_path, write_eml_zip};
use sha2::{Digest, Sha256};

use crate::services::common::{mailbox, raw_mime, sample_folders, sample_repo};

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
        format,
        skip_verify: false,
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
    // Existing output without overwrite is refused and left alone; with overwrite replaced.
    std::fs::write(&path, b"precious").unwrap();
    assert!(matches!(
        save_to_path(&repo, &opts(id, ExportFormat::EmlZip), &path, false).await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
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

/// A sink that fails like a full disk after `room` bytes.
struct FullDisk {
    inner: std::io::Cursor<Vec<u8>>,
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.inner.get_ref().len() + buf.len() > self.room {
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
        self.inner.seek(pos)
    }
}

#[tokio::test]
async fn disk_full_while_saving_is_reported_as_storage_full() {
    let (_s, repo, id) = sample_repo().await;
    let sink = FullDisk {
        inner: std::io::Cursor::new(Vec::new()),
        room: 2000,
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
