//! Scenario 5 (issue 7): backup and verify into an S3 server (moto via
//! `scripts/s3-server.sh`), with S3 requests and objects per 1,000 messages. Runs only when
//! `ATLAS_TEST_S3_ENDPOINT` is set.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use atlas_core::ports::BlobStore;
use atlas_core::service::verify::{ContentCheck, ReadData, VerifyOptions, VerifyScope, verify};
use atlas_store::s3::Credentials;
use atlas_store::{S3Config, S3Store};

use super::{Ctx, Sizes};
use crate::error::BenchError;
use crate::harness::{BenchRepo, Meter};
use crate::report::Row;

/// Runs the S3 scenario, or adds a "skipped" row.
pub async fn run(sizes: &Sizes, ctx: &mut Ctx, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let endpoint = match std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => {
            rows.push(Row {
                scenario: "s3".into(),
                step: "skipped".into(),
                note: "ATLAS_TEST_S3_ENDPOINT not set (eval \"$(scripts/s3-server.sh start)\")"
                    .into(),
                ..Row::default()
            });
            return Ok(());
        }
    };
    let (t, _) = ctx.base(sizes, rows).await?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let bucket = format!("atlas-bench-{stamp}");
    let cfg = S3Config::shared_bucket(
        &bucket,
        &t.id,
        "us-east-1",
        Credentials::new("test-access", "test-secret"),
    )
    .map_err(|e| BenchError::S3(e.to_string()))?
    .endpoint(endpoint)
    .path_style(true);
    let store = S3Store::new(cfg).map_err(|e| BenchError::S3(e.to_string()))?;
    store
        .ensure_bucket(false)
        .await
        .map_err(|e| BenchError::S3(e.to_string()))?;
    let inner: Arc<dyn BlobStore> = Arc::new(store);
    let r = BenchRepo::on(inner, &t.id).await?;
    let mut row = t
        .backup(
            &r,
            "s3",
            &format!("full to moto, {}×{}", sizes.users, sizes.messages),
        )
        .await?;
    row.note = format!(
        "{} S3 requests ({:.1} per 1,000 messages)",
        row.store_requests.unwrap_or(0),
        per_1000(row.store_requests.unwrap_or(0), row.messages)
    );
    rows.push(row);

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
    let mut row = meter.finish("s3", "verify --all from moto")?;
    if !v.is_ok() {
        return Err(BenchError::Incomplete(format!(
            "S3 verify found {} problems",
            v.damage.len()
        )));
    }
    let counts = r.store.take();
    row.messages = v.messages as u64;
    row.mime_bytes = v.bytes_read;
    row.store_requests = Some(counts.requests());
    row.note = format!(
        "{} S3 requests; MB/s of stored bytes read",
        counts.requests()
    );
    rows.push(row);
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn per_1000(a: u64, n: u64) -> f64 {
    a as f64 * 1000.0 / n.max(1) as f64
}
