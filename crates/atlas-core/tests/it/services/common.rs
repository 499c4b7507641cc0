//! A small repository holding hand-built MIME messages, stored as a backup would.

use std::fmt::Write as _;
use std::sync::Arc;

use atlas_core::model::{
    EmailAddress, FolderId, FolderRecord, FolderSnapshot, MailboxId, MessageId, MessageMeta,
    SnapshotId, SnapshotRecord, SnapshotStatus,
};
use atlas_core::ports::{BlobStore, FixedClock};
use atlas_core::repo::{BlobKind, KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_store::MemoryStore;
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use sha2::{Digest, Sha256};

pub const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

pub fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple")
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 14, 30, 22).unwrap()
}

pub async fn new_repo() -> (Arc<dyn BlobStore>, Repository) {
    new_repo_at_format(atlas_core::repo::FORMAT_VERSION).await
}

/// [`new_repo`] at an earlier format this build still writes (format 4 for mailbox
/// records, which later formats do not have).
pub async fn new_repo_at_format(format: u32) -> (Arc<dyn BlobStore>, Repository) {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    let repo = Repository::init_at_format(
        store.clone(),
        TENANT,
        &passphrase(),
        KdfChoice::SCRYPT_MINIMUM,
        RepoSettings {
            pack_target_size: 4096,
            chunk_threshold: 64 * 1024,
            chunk_size: 16 * 1024,
            lease_seconds: 60,
        },
        format,
    )
    .await
    .unwrap();
    (store, repo)
}

/// An attachment of a test message.
#[derive(Debug, Clone)]
pub struct Att {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// A test message: what it is built from is what an independent parser must find.
#[derive(Debug, Clone)]
pub struct Msg {
    pub id: String,
    pub subject: &'static str,
    pub from: &'static str,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Att>,
    pub received: DateTime<Utc>,
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn encoded_word(s: &str) -> String {
    if s.is_ascii() {
        s.to_owned()
    } else {
        format!("=?utf-8?B?{}?=", b64(s.as_bytes()).replace("\r\n", ""))
    }
}

impl Msg {
    /// RFC 5322 MIME with CRLF line ends.
    pub fn mime(&self) -> Bytes {
        let mut s = format!(
            "From: {}\r\nTo: bob@contoso.com\r\nSubject: {}\r\nMessage-ID: <{}@contoso.com>\r\nDate: {}\r\nMIME-Version: 1.0\r\n",
            self.from,
            encoded_word(self.subject),
            self.id,
            self.received.to_rfc2822(),
        );
        let text_part = |t: &str| {
            format!(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(t.as_bytes())
            )
        };
        let html_part = |h: &str| {
            format!(
                "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(h.as_bytes())
            )
        };
        let body = match (&self.text, &self.html) {
            (Some(t), Some(h)) => format!(
                "Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n--alt-b\r\n{}--alt-b\r\n{}--alt-b--\r\n",
                text_part(t),
                html_part(h)
            ),
            (Some(t), None) => text_part(t),
            (None, Some(h)) => html_part(h),
            (None, None) => text_part(""),
        };
        if self.attachments.is_empty() {
            s.push_str(&body);
        } else {
            s.push_str("Content-Type: multipart/mixed; boundary=\"mix-b\"\r\n\r\n--mix-b\r\n");
            s.push_str(&body);
            for a in &self.attachments {
                let name = if a.name.is_ascii() {
                    format!("filename=\"{}\"", a.name)
                } else {
                    let enc: String = a
                        .name
                        .bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b == b'.' {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                    format!("filename*=utf-8''{enc}")
                };
                let _ = write!(
                    s,
                    "--mix-b\r\nContent-Type: {}\r\nContent-Disposition: attachment; {name}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                    a.content_type,
                    b64(&a.bytes)
                );
            }
            s.push_str("--mix-b--\r\n");
        }
        Bytes::from(s)
    }
}

/// The standard test mailbox: multipart/mixed with attachments, multipart/alternative,
/// non-ASCII subjects, `From ` lines in a body, two messages whose names collide.
pub fn sample_folders() -> Vec<(Vec<&'static str>, Vec<Msg>)> {
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let inbox = vec![
        Msg {
            id: "AAMkAGI2-inbox-1".into(),
            subject: "Quarterly report: Q1/2026",
            from: "Alice Smith <alice@contoso.com>",
            text: Some("Hello Bob,\r\nthe numbers are attached.\r\n".into()),
            html: None,
            attachments: vec![
                Att {
                    name: "report.pdf",
                    content_type: "application/pdf",
                    bytes: pdf,
                },
                Att {
                    name: "Übersicht-ß.txt",
                    content_type: "text/plain",
                    bytes: "grüße\n".as_bytes().to_vec(),
                },
            ],
            received: t0(),
        },
        Msg {
            id: "AAMkAGI2-inbox-2".into(),
            subject: "Héllo wörld — ünïcödé",
            from: "Zoë <zoe@contoso.com>",
            text: Some("Plain part: ünïcödé\r\n".into()),
            html: Some("<html><body><p>HTML part: <b>ünïcödé</b></p></body></html>".into()),
            attachments: vec![],
            received: t0() + Duration::hours(1),
        },
        Msg {
            id: "AAMkAGI2-inbox-3".into(),
            subject: "Same",
            from: "carol@contoso.com",
            text: Some("first\r\n".into()),
            html: None,
            attachments: vec![],
            received: t0() + Duration::hours(2),
        },
        Msg {
            id: "AAMkAGI2-inbox-4".into(),
            subject: "Same",
            from: "carol@contoso.com",
            text: Some("second\r\n".into()),
            html: None,
            attachments: vec![],
            received: t0() + Duration::hours(2),
        },
    ];
    let projects = vec![Msg {
        id: "AAMkAGI2-proj-1".into(),
        subject: "\u{1b}[31mEvil\u{202e} subject",
        from: "mallory@example.com",
        text: None,
        html: Some(
            "<html><head><script>alert('x')</script></head><body>Only <i>HTML</i></body></html>"
                .into(),
        ),
        attachments: vec![],
        received: t0() + Duration::days(40),
    }];
    let sent = vec![Msg {
        id: "AAMkAGI2-sent-1".into(),
        subject: "mbox quoting",
        from: "bob@contoso.com",
        text: None,
        html: None,
        attachments: vec![],
        received: t0() + Duration::days(1),
    }];
    vec![
        (vec!["Inbox"], inbox),
        (vec!["Inbox", "Projects"], projects),
        (vec!["Sent Items"], sent),
    ]
}

/// The `Sent Items` message is written raw (8bit text with `From ` lines) to exercise mbox
/// quoting; everything else comes from [`Msg::mime`].
pub fn raw_mime(m: &Msg) -> Bytes {
    if m.subject == "mbox quoting" {
        return Bytes::from(
            "From: bob@contoso.com\r\nTo: alice@contoso.com\r\nSubject: mbox quoting\r\nMessage-ID: <AAMkAGI2-sent-1@contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nFrom the desk of Bob\r\n>From quoted once\r\n>>From quoted twice\r\nFromage is not a From line\r\n",
        );
    }
    m.mime()
}

pub fn mailbox() -> MailboxId {
    MailboxId::new("bob@contoso.com")
}

/// Store `folders` as one snapshot of `mailbox` started at `started`; every message's
/// folder list is in its own pack when `separate_lists` (so tests can remove just it).
pub async fn backup_folders(
    repo: &Repository,
    mailbox: &MailboxId,
    started: DateTime<Utc>,
    folders: &[(Vec<&'static str>, Vec<Msg>)],
    separate_lists: bool,
) -> SnapshotId {
    let clock = Arc::new(FixedClock::new(started));
    let mut session = repo
        .begin_backup(mailbox, "test-host:1", clock)
        .await
        .unwrap();
    let mut metas = Vec::new();
    for (path, msgs) in folders {
        let mut items = Vec::new();
        for m in msgs {
            let mime = raw_mime(m);
            let id = session
                .put_blob(BlobKind::Mime, mime.clone())
                .await
                .unwrap()
                .id;
            items.push(MessageMeta {
                id: MessageId::new(m.id.clone()),
                internet_message_id: Some(format!("<{}@contoso.com>", m.id)),
                conversation_id: None,
                subject: Some(m.subject.to_owned()),
                from: Some(EmailAddress {
                    name: String::new(),
                    address: m
                        .from
                        .rsplit('<')
                        .next()
                        .unwrap()
                        .trim_end_matches('>')
                        .to_owned(),
                }),
                received: Some(m.received),
                sent: Some(m.received),
                size: Some(mime.len() as u64),
                is_read: true,
                flag_status: atlas_core::model::FlagStatus::NotFlagged,
                importance: atlas_core::model::Importance::Normal,
                categories: Vec::new(),
                has_attachments: !m.attachments.is_empty(),
                attachment_count: m.attachments.len() as u32,
                is_draft: false,
                change_key: None,
                last_modified: None,
                parent_folder_id: FolderId::new(path.join("-")),
                mime: id,
                mime_size: mime.len() as u64,
                mime_sha256: hex::encode(Sha256::digest(&mime)),
                kind: atlas_core::model::ItemKind::Mail,
                content: Vec::new(),
            });
        }
        metas.push((path.clone(), items));
    }
    if separate_lists {
        session.flush().await.unwrap();
    }
    let mut snaps = Vec::new();
    for (path, items) in metas {
        let count = items.len() as u64;
        let items_id = session.put_folder_items(items).await.unwrap();
        snaps.push(FolderSnapshot {
            folder: FolderRecord {
                id: FolderId::new(path.join("-")),
                parent_id: None,
                display_name: (*path.last().unwrap()).to_owned(),
                path: path.iter().map(|s| (*s).to_owned()).collect(),
                well_known_name: None,
                total_item_count: Some(count),
                kind: atlas_core::model::ItemKind::Mail,
            },
            delta_link: None,
            item_delta_link: None,
            graph_item_count: Some(count),
            stored_item_count: count,
            items: items_id.id,
            item_pieces: items_id.pieces,
            errors: Vec::new(),
        });
    }
    session
        .commit(SnapshotRecord {
            mailbox: mailbox.clone(),
            started,
            finished: started + Duration::minutes(1),
            tool: "atlas-test".into(),
            format_version: 2,
            status: SnapshotStatus::Complete,
            folder_bookmark: None,
            folders: snaps,
        })
        .await
        .unwrap()
}

/// A repository with the sample mailbox backed up once.
pub async fn sample_repo() -> (Arc<dyn BlobStore>, Repository, SnapshotId) {
    let (store, repo) = new_repo().await;
    let id = backup_folders(&repo, &mailbox(), t0(), &sample_folders(), false).await;
    (store, repo, id)
}
