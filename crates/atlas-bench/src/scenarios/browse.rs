//! Scenario 3 (issue 5): verify and save (eml-zip) throughput and peak RSS on the
//! benchmark tenant, and save's memory on a mailbox four times larger.

use atlas_core::model::MailboxId;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::export::{ExportFormat, SaveOptions, save_to_path};
use atlas_core::service::verify::{
    ContentCheck, ReadData, VerifyOptions, VerifyScope, VerifySummary, verify,
};

use super::{Ctx, Sizes};
use crate::error::BenchError;
use crate::harness::{BenchRepo, Meter, Tenant, sim_config};
use crate::report::Row;

/// Saves the newest snapshot of `upn` as an eml-zip, measured as `scenario`/`step`, with
/// the messages, their bytes and the store requests in the row. Shared with `formats`.
pub(super) async fn save_eml_zip(
    r: &BenchRepo,
    upn: &str,
    scenario: &'static str,
    step: String,
) -> Result<Row, BenchError> {
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
    let mut row = meter.finish(scenario, step)?;
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

/// Verifies every snapshot with every byte read, measured as `scenario`/`step`, with the
/// messages, the stored bytes read and the store requests in the row (an error when
/// verify finds damage). Shared with `formats`.
pub(super) async fn verify_read_all(
    r: &BenchRepo,
    scenario: &'static str,
    step: String,
) -> Result<(Row, VerifySummary), BenchError> {
    let _ = r.store.take();
    let meter = Meter::start(None)?;
    let v = verify(
        &r.repo,
        &VerifyOptions {
            scope: VerifyScope::All,
            content_check: ContentCheck::Decode,
            read_data: ReadData::ALL,
        },
    )
    .await?;
    let mut row = meter.finish(scenario, step)?;
    if !v.is_ok() {
        return Err(BenchError::Incomplete(format!(
            "verify found {} problems",
            v.damage.len()
        )));
    }
    row.messages = v.messages as u64;
    row.mime_bytes = v.bytes_read;
    row.store_requests = Some(r.store.take().requests());
    Ok((row, v))
}

/// Runs the verify/save scenario.
pub async fn run(sizes: &Sizes, ctx: &mut Ctx, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    ctx.base(sizes, rows).await?;
    // A mailbox four times the size, for a second save whose peak RSS should stay flat.
    // Both setup backups come before any measured step, so both saves start from the same
    // resident floor.
    let n = sizes.messages * 4;
    let mut cfg = sim_config(1, n);
    cfg.seed = 13;
    let big = Tenant::start(&cfg).await?;
    let rb = BenchRepo::local(&big.id).await?;
    let setup = big.backup(&rb, "browse", "setup backup").await?;
    let upn = big
        .mailboxes
        .first()
        .ok_or_else(|| BenchError::Incomplete("tenant has no mailbox".into()))?
        .address()
        .to_owned();
    let (t, r) = ctx.base(sizes, rows).await?;
    let (mut row, v) = verify_read_all(r, "browse", "verify --all --read-data 100%".into()).await?;
    row.note = format!(
        "{} snapshots, {} packs read; MB/s of stored bytes read",
        v.snapshots, v.packs_read
    );
    rows.push(row);

    let first = t
        .mailboxes
        .first()
        .ok_or_else(|| BenchError::Incomplete("tenant has no mailbox".into()))?
        .address()
        .to_owned();
    rows.push(
        save_eml_zip(
            r,
            &first,
            "browse",
            format!("save eml-zip, {}-msg mailbox", sizes.messages),
        )
        .await?,
    );

    let mut row = save_eml_zip(
        &rb,
        &upn,
        "browse",
        format!("save eml-zip, {n}-msg mailbox"),
    )
    .await?;
    row.note = format!(
        "compare peak RSS with the {}-msg save; ({} msgs backed up first)",
        sizes.messages, setup.messages
    );
    rows.push(row);
    Ok(())
}
