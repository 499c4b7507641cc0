//! Scenario 4 (issue 6): restore one benchmark mailbox into another mailbox of the tenant,
//! without and with latency.

use std::time::Duration;

use atlas_core::model::MailboxId;
use atlas_core::ports::NullReporter;
use atlas_core::service::Cancel;
use atlas_core::service::catalog::SnapshotSelector;
use atlas_core::service::restore::{RestoreOptions, execute, plan};
use atlas_sim::FaultConfig;

use super::{Ctx, Sizes};
use crate::error::BenchError;
use crate::harness::{BenchRepo, Meter, Tenant};
use crate::report::Row;

async fn restore_into(
    t: &Tenant,
    r: &BenchRepo,
    source: &str,
    target: &str,
    step: String,
) -> Result<Row, BenchError> {
    let mut opts = RestoreOptions::new(SnapshotSelector::Latest {
        mailbox: MailboxId::new(source),
        as_of: None,
    });
    opts.target = Some(target.to_owned());
    let p = plan(&r.repo, &opts).await?;
    let before = t.mark().await?;
    let _ = r.store.take();
    let meter = Meter::start(Some(t.sim.pid()))?;
    let s = execute(&p, &r.repo, t.target.clone(), &NullReporter, &Cancel::new()).await?;
    let mut row = meter.finish("restore", step)?;
    if s.failed > 0 || !s.complete {
        return Err(BenchError::Incomplete(format!(
            "restore into {target}: {} failed, complete={}",
            s.failed, s.complete
        )));
    }
    row.messages = p.messages;
    row.mime_bytes = p.bytes;
    row.folders = Some(p.folders.len() as u64);
    row.store_requests = Some(r.store.take().requests());
    t.fill_graph(&mut row, before).await?;
    row.note = format!(
        "{}{} created, {} attachments ({:.1} MiB) uploaded; by kind: {}",
        row.note,
        s.created,
        s.attachments,
        crate::harness::mib(s.attachment_bytes),
        row.by_kind
    );
    Ok(row)
}

/// Runs the restore scenario on the benchmark tenant.
pub async fn run(sizes: &Sizes, ctx: &mut Ctx, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let (t, r) = ctx.base(sizes, rows).await?;
    let names: Vec<String> = t.mailboxes.iter().map(|m| m.address().to_owned()).collect();
    let [src, a, b, ..] = names.as_slice() else {
        return Err(BenchError::Incomplete(
            "restore needs at least 3 mailboxes (--users)".into(),
        ));
    };
    rows.push(restore_into(t, r, src, a, "one mailbox, 0 ms".into()).await?);
    t.sim
        .set_faults(&FaultConfig {
            latency: Duration::from_millis(sizes.latency_ms),
            ..FaultConfig::default()
        })
        .await?;
    let row = restore_into(
        t,
        r,
        src,
        b,
        format!("one mailbox, {} ms, 4 conc.", sizes.latency_ms),
    )
    .await;
    t.sim.set_faults(&FaultConfig::default()).await?;
    rows.push(row?);
    Ok(())
}
