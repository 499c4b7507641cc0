//! Scenario 1 (issue 2): write then verify message-sized items in a local repository.
//! Only repository work is timed; each run's items are generated before its clock starts.

use std::sync::Arc;

use atlas_core::model::{
    FlagStatus, FolderId, FolderRecord, FolderSnapshot, Importance, MailboxId, MessageId,
    MessageMeta, SnapshotRecord, SnapshotStatus,
};
use atlas_core::ports::{BlobStore, Clock, SystemClock};
use atlas_core::repo::{BlobKind, FORMAT_VERSION, Passphrase, Repository};
use bytes::Bytes;

use crate::error::BenchError;
use crate::harness::{BenchRepo, Meter, PASSPHRASE};
use crate::mimegen::{Rng, message};
use crate::report::Row;

/// Items per simulated mailbox run (one snapshot each).
const ITEMS_PER_RUN: usize = 500;

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
        flag_status: FlagStatus::NotFlagged,
        importance: Importance::Normal,
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
        kind: atlas_core::model::ItemKind::Mail,
        content: Vec::new(),
    }
}

fn inbox(count: u64, items: atlas_core::repo::StoredItems) -> FolderSnapshot {
    FolderSnapshot {
        folder: FolderRecord {
            id: FolderId::new("inbox"),
            parent_id: None,
            display_name: "Inbox".into(),
            path: vec!["Inbox".into()],
            well_known_name: Some("inbox".into()),
            total_item_count: Some(count),
            kind: atlas_core::model::ItemKind::Mail,
        },
        delta_link: None,
        item_delta_link: None,
        graph_item_count: Some(count),
        stored_item_count: count,
        items: items.id,
        item_pieces: items.pieces,
        errors: vec![],
    }
}

/// Writes `size_mib` MiB of items (about 5 % delivered to several mailboxes, for dedup),
/// then verifies every snapshot at once. Returns the write row and the verify row.
pub async fn run(size_mib: u64) -> Result<Vec<Row>, BenchError> {
    let tenant = "bench-tenant";
    let r = BenchRepo::local(tenant).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let target = size_mib << 20;
    let (mut planned, mut written, mut stored, mut items) = (0u64, 0u64, 0u64, 0usize);
    let mut recent: Vec<Bytes> = Vec::new();
    let mut snapshots = Vec::new();
    let mut write = Row::default();
    while written < target {
        let mut bodies = Vec::new();
        while bodies.len() < ITEMS_PER_RUN && planned < target {
            let body = if !recent.is_empty() && rng.below(20) == 0 {
                let i = usize::try_from(rng.below(recent.len() as u64)).unwrap_or(0);
                recent[i].clone()
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
        // One meter per run, summed: generation stays outside the measured time.
        let meter = Meter::start(None)?;
        let mb = MailboxId::new(&format!("user{}@contoso.com", snapshots.len()));
        let started = clock.now();
        let mut session = r
            .repo
            .begin_backup(&mb, "atlas-bench", clock.clone())
            .await?;
        let mut list = Vec::with_capacity(bodies.len());
        for body in bodies {
            written += body.len() as u64;
            let id = session.put_blob(BlobKind::Mime, body.clone()).await?.id;
            list.push(meta(items, id, &body));
            items += 1;
        }
        let count = list.len() as u64;
        let items_id = session.put_folder_items(list).await?;
        stored += session.stats().bytes_stored;
        let record = SnapshotRecord {
            mailbox: mb,
            started,
            finished: clock.now(),
            tool: "atlas-bench".into(),
            format_version: FORMAT_VERSION,
            status: SnapshotStatus::Complete,
            folder_bookmark: None,
            folders: vec![inbox(count, items_id)],
        };
        snapshots.push(session.commit(record).await?);
        let part = meter.finish("repo", "")?;
        write.wall_s += part.wall_s;
        write.atlas_cpu_s += part.atlas_cpu_s;
        write.atlas_peak_rss_mib = write.atlas_peak_rss_mib.max(part.atlas_peak_rss_mib);
        if snapshots.len() == 1 {
            write.atlas_start_rss_mib = part.atlas_start_rss_mib;
        }
    }
    let counts = r.store.take();
    write.scenario = "repo".into();
    write.step = format!("write {size_mib} MiB, local dir");
    write.messages = items as u64;
    write.mime_bytes = written;
    write.stored_bytes = Some(stored);
    write.objects_written = Some(counts.puts);
    write.store_requests = Some(counts.requests());
    write.note = format!(
        "{} snapshots of {ITEMS_PER_RUN} items; ~5% duplicates; compression+dedup ratio {:.2}",
        snapshots.len(),
        ratio(written, stored)
    );

    let store: Arc<dyn BlobStore> = r.store.clone();
    let reader = Repository::open(store, tenant, &Passphrase::new(PASSPHRASE)).await?;
    let meter = Meter::start(None)?;
    let mut checked = 0u64;
    for report in reader.verify_snapshots(&snapshots).await? {
        if !report.is_ok() {
            return Err(BenchError::Incomplete(format!(
                "repository verify found problems: {:?}",
                report.problems
            )));
        }
        checked += report.bytes_checked;
    }
    let mut verify = meter.finish("repo", "verify (all snapshots, one pass)")?;
    let counts = r.store.take();
    verify.messages = items as u64;
    verify.mime_bytes = checked;
    verify.store_requests = Some(counts.requests());
    verify.note = "verify MB/s counts stored (compressed, encrypted) bytes read and checked".into();
    Ok(vec![write, verify])
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}
