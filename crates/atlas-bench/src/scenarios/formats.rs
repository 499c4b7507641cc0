//! Format 3 against format 4 (issue 13) in one run: the same tenant backed up into a
//! repository created at each format, then verified with every byte read and one mailbox
//! saved, alternately (3, 4, 3, 4), so both see the same machine load. Format 3 keeps a
//! plaintext SHA-256 of every blob (in the frame and in records); format 4 hashes each
//! piece of content once, with its content id (docs/FORMAT.md §4.3).

use atlas_core::model::MailboxId;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{ExportFormat, SaveOptions, save_to_path};
use atlas_core::service::verify::{ReadData, VerifyOptions, VerifyScope, verify};

use super::Sizes;
use crate::error::BenchError;
use crate::harness::{BenchRepo, Meter, Tenant, sim_config};
use crate::report::Row;

/// The formats compared: the last one before the single-hash format, and that one.
const FORMATS: [u32; 2] = [3, 4];
/// Rounds of the alternation.
const ROUNDS: usize = 2;

/// Runs the comparison on `users` × `messages` (SPEC's 20 × 300; `--quick` 8 × 100).
pub async fn run(sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let (users, messages) = if sizes.spec_tenant {
        (20, 300)
    } else {
        (sizes.users, sizes.messages)
    };
    let t = Tenant::start(&sim_config(users, messages)).await?;
    let first = t
        .mailboxes
        .first()
        .ok_or_else(|| BenchError::Incomplete("tenant has no mailbox".into()))?
        .address()
        .to_owned();
    for round in 1..=ROUNDS {
        for format in FORMATS {
            let r = BenchRepo::local_at_format(&t.id, format).await?;
            let tag = format!("format {format} (run {round})");
            let mut row = t
                .backup(&r, "formats", &format!("full {users}×{messages}, {tag}"))
                .await?;
            row.note = format!(
                "same tenant into a format-{format} repository; {}",
                row.note
            );
            rows.push(row);
            rows.push(verify_all(&r, &tag).await?);
            rows.push(save_one(&r, &first, &tag).await?);
        }
    }
    Ok(())
}

async fn verify_all(r: &BenchRepo, tag: &str) -> Result<Row, BenchError> {
    let _ = r.store.take();
    let meter = Meter::start(None)?;
    let v = verify(
        &r.repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            read_data: ReadData::ALL,
        },
    )
    .await?;
    let mut row = meter.finish("formats", format!("verify --read-data 100%, {tag}"))?;
    if !v.is_ok() {
        return Err(BenchError::Incomplete(format!(
            "verify found {} problems",
            v.damage.len()
        )));
    }
    row.messages = v.messages as u64;
    row.mime_bytes = v.bytes_read;
    row.store_requests = Some(r.store.take().requests());
    row.note = "MB/s of stored bytes read".into();
    Ok(row)
}

async fn save_one(r: &BenchRepo, upn: &str, tag: &str) -> Result<Row, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::io("tempdir", e))?;
    let opts = SaveOptions {
        snapshot: SnapshotSelector::Latest {
            mailbox: MailboxId::new(upn),
            as_of: None,
        },
        folder: None,
        message: None,
        kind: None,
        format: ExportFormat::EmlZip,
        skip_verify: false,
        reporter: std::sync::Arc::new(atlas_core::ports::NullReporter),
    };
    let _ = r.store.take();
    let meter = Meter::start(None)?;
    let s = save_to_path(&r.repo, &opts, &dir.path().join("out.zip"), false).await?;
    let mut row = meter.finish("formats", format!("save eml-zip, one mailbox, {tag}"))?;
    if !s.is_complete() {
        return Err(BenchError::Incomplete(format!(
            "save of {upn}: {} messages failed",
            s.failed.len()
        )));
    }
    row.messages = s.messages as u64;
    row.mime_bytes = s.bytes;
    row.store_requests = Some(r.store.take().requests());
    Ok(row)
}
