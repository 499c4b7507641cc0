//! Repository throughput benchmark: writes then verifies message-sized items in a
//! local-directory repository and reports write and verify MB/s, objects per 1,000 items
//! and the compression ratio.
//!
//! ```text
//! cargo run --release -p atlas-core --example bench_repo -- --size-mib 1024 [--dir PATH]
//! ```
//!
//! Items are 20–200 KiB: multipart mail with a text and an HTML part made of varied words
//! (compressible like real mail) and, for about a third, a base64 attachment of random
//! bytes (incompressible beyond base64's 3/4). About 5% of items are the same message
//! delivered to several mailboxes (dedup). 500 items per mailbox run.

// A linear benchmark script: long `main`, lossy float conversions for MB/s, unwraps that
// abort the run on any failure.
#![allow(
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::too_many_lines
)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use atlas_core::model::{
    FolderId, FolderRecord, FolderSnapshot, MailboxId, MessageId, MessageMeta, SnapshotRecord,
    SnapshotStatus,
};
use atlas_core::ports::{BlobStore, Clock, SystemClock};
use atlas_core::repo::{BlobKind, KdfChoice, Passphrase, Repository};
use atlas_store::LocalStore;
use bytes::Bytes;

const WORDS: &[&str] = &[
    "quarterly",
    "report",
    "meeting",
    "the",
    "and",
    "budget",
    "review",
    "project",
    "customer",
    "please",
    "attached",
    "thanks",
    "regards",
    "schedule",
    "update",
    "invoice",
    "deadline",
    "team",
    "proposal",
    "contract",
    "for",
    "with",
    "next",
    "week",
    "Monday",
    "agenda",
    "numbers",
    "forecast",
    "delivery",
    "status",
    "issue",
    "resolved",
    "follow",
    "up",
    "call",
    "tomorrow",
    "office",
    "travel",
    "approval",
    "draft",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast and good enough for synthetic data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for j in 0..4 {
            let ch = if j <= c.len() {
                ALPHABET[(n >> (18 - 6 * j) & 63) as usize] as char
            } else {
                '='
            };
            out.push(ch);
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

fn message(rng: &mut Rng, n: usize) -> Vec<u8> {
    let target = 20 * 1024 + rng.below(180 * 1024) as usize;
    let mut m = String::with_capacity(target + 1024);
    let _ = write!(
        m,
        "Message-ID: <{n}.{}@contoso.com>\r\nFrom: User {} <user{}@contoso.com>\r\nTo: team@contoso.com\r\nSubject: {} {} {}\r\nDate: Mon, 2 Mar 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        rng.next(),
        rng.below(50),
        rng.below(50),
        WORDS[rng.below(40) as usize],
        WORDS[rng.below(40) as usize],
        n
    );
    let with_attachment = rng.below(3) == 0;
    let text_target = if with_attachment {
        target / 4
    } else {
        target / 2
    };
    let mut line = 0;
    while m.len() < text_target {
        m.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        m.push(' ');
        line += 1;
        if line % 12 == 0 {
            m.push_str("\r\n");
        }
    }
    m.push_str("\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    let html_target = if with_attachment { target / 2 } else { target };
    while m.len() < html_target {
        let _ = write!(
            m,
            "<p>{} <b>{}</b> {}</p>\r\n",
            WORDS[rng.below(40) as usize],
            WORDS[rng.below(40) as usize],
            WORDS[rng.below(40) as usize]
        );
    }
    m.push_str("</body></html>\r\n");
    if with_attachment {
        m.push_str("--b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let raw_len = (target.saturating_sub(m.len())) * 3 / 4;
        let raw: Vec<u8> = (0..raw_len).map(|_| rng.next() as u8).collect();
        m.push_str(&base64(&raw));
        m.push_str("\r\n");
    }
    m.push_str("--b1--\r\n");
    m.into_bytes()
}

fn meta(n: usize, id: atlas_core::model::ContentId, body: &[u8]) -> MessageMeta {
    MessageMeta {
        id: MessageId::new(format!("AAMk{n}")),
        internet_message_id: None,
        conversation_id: None,
        subject: None,
        from: None,
        received: None,
        sent: None,
        size: Some(body.len() as u64),
        is_read: false,
        flag_status: atlas_core::model::FlagStatus::NotFlagged,
        importance: atlas_core::model::Importance::Normal,
        categories: vec![],
        has_attachments: false,
        attachment_count: 0,
        is_draft: false,
        change_key: None,
        last_modified: None,
        parent_folder_id: FolderId::new("inbox"),
        mime: id,
        mime_size: body.len() as u64,
        mime_sha256: String::new(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut size_mib: u64 = 1024;
    let mut dir: Option<String> = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--size-mib" => {
                size_mib = args
                    .get(i + 1)
                    .and_then(|s| s.parse().ok())
                    .expect("--size-mib needs a number");
                i += 1;
            }
            "--dir" => {
                dir = args.get(i + 1).cloned();
                i += 1;
            }
            other => {
                panic!("unknown argument {other}; usage: bench_repo [--size-mib N] [--dir PATH]")
            }
        }
        i += 1;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = dir.map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(&root));
    let repo = Repository::init(
        store.clone(),
        "bench-tenant",
        &Passphrase::new("bench passphrase"),
        KdfChoice::default(),
    )
    .await
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let objects_before = store.list("").await.unwrap().len();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let target_bytes = size_mib << 20;
    let mut written_plain = 0u64;
    let mut stored = 0u64;
    let mut items = 0usize;
    let mut mailbox_n = 0;
    let mut snapshots = Vec::new();
    let mut recent: Vec<Bytes> = Vec::new();
    // Only repository work is timed: each run's messages are generated before its clock
    // starts (generating them took about a tenth of the old "write" time).
    let mut write_time = std::time::Duration::ZERO;
    let mut planned = 0u64;
    while written_plain < target_bytes {
        let mut bodies = Vec::new();
        while bodies.len() < 500 && planned < target_bytes {
            let body = if !recent.is_empty() && rng.below(20) == 0 {
                recent[rng.below(recent.len() as u64) as usize].clone()
            } else {
                let b = Bytes::from(message(&mut rng, items + bodies.len()));
                if recent.len() < 64 {
                    recent.push(b.clone());
                }
                b
            };
            planned += body.len() as u64;
            bodies.push(body);
        }
        let start = Instant::now();
        let mb = MailboxId::new(&format!("user{mailbox_n}@contoso.com"));
        mailbox_n += 1;
        let started = clock.now();
        let mut session = repo
            .begin_backup(&mb, "bench", clock.clone())
            .await
            .unwrap();
        let mut list = Vec::new();
        for body in bodies {
            written_plain += body.len() as u64;
            let id = session
                .put_blob(BlobKind::Mime, body.clone())
                .await
                .unwrap();
            list.push(meta(items, id, &body));
            items += 1;
        }
        let count = list.len() as u64;
        let items_id = session.put_folder_items(list).await.unwrap();
        let stats = session.stats();
        stored += stats.bytes_stored;
        let record = SnapshotRecord {
            mailbox: mb,
            started,
            finished: clock.now(),
            tool: "bench_repo".into(),
            format_version: atlas_core::repo::FORMAT_VERSION,
            status: SnapshotStatus::Complete,
            folders: vec![FolderSnapshot {
                folder: FolderRecord {
                    id: FolderId::new("inbox"),
                    parent_id: None,
                    display_name: "Inbox".into(),
                    path: vec!["Inbox".into()],
                    well_known_name: Some("inbox".into()),
                    total_item_count: Some(count),
                },
                delta_link: None,
                graph_item_count: Some(count),
                stored_item_count: count,
                items: items_id,
                errors: vec![],
            }],
        };
        snapshots.push(session.commit(record).await.unwrap());
        write_time += start.elapsed();
    }
    let write_secs = write_time.as_secs_f64();
    let objects = store.list("").await.unwrap().len() - objects_before;

    let reader = Repository::open(
        store.clone(),
        "bench-tenant",
        &Passphrase::new("bench passphrase"),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let mut verified_bytes = 0u64;
    // One multi-snapshot verify (as `atlas verify --all`): shared packs are read once.
    for report in reader.verify_snapshots(&snapshots).await.unwrap() {
        assert!(
            report.is_ok(),
            "verify found problems: {:?}",
            report.problems
        );
        verified_bytes += report.bytes_checked;
    }
    let verify_secs = start.elapsed().as_secs_f64();
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    println!("store: local directory {}", root.display());
    println!(
        "items: {items} in {} mailbox runs, {:.1} MiB plaintext (duplicates included)",
        snapshots.len(),
        mib(written_plain)
    );
    println!(
        "write: {:.1} s, {:.1} MiB/s (plaintext offered)",
        write_secs,
        mib(written_plain) / write_secs
    );
    println!(
        "verify: {:.1} s, {:.1} MiB/s (stored bytes read and checked, {:.1} MiB)",
        verify_secs,
        mib(verified_bytes) / verify_secs,
        mib(verified_bytes)
    );
    println!(
        "objects written: {objects} ({:.1} per 1,000 items)",
        objects as f64 * 1000.0 / items as f64
    );
    println!(
        "stored {:.1} MiB for {:.1} MiB written: compression+dedup ratio {:.2}",
        mib(stored),
        mib(written_plain),
        written_plain as f64 / stored as f64
    );
}
