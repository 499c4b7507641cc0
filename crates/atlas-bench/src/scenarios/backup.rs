//! Scenario 2 (issue 4, SPEC §9): full backup, incremental after a 2 % mutation, unchanged
//! incremental; without latency, then with latency and the 4-concurrent limit. Also the
//! `large` (peak RSS with a large message in flight) and `spec` (SPEC §9's tenant size)
//! scenarios.

use std::time::Duration;

use atlas_sim::FaultConfig;

use super::{Ctx, Sizes};
use crate::error::BenchError;
use crate::harness::{BenchRepo, Tenant, sim_config};
use crate::report::Row;

async fn series(
    t: &Tenant,
    r: &BenchRepo,
    label: &str,
    rows: &mut Vec<Row>,
) -> Result<(), BenchError> {
    let users: Vec<String> = t.mailboxes.iter().map(|m| m.address().to_owned()).collect();
    rows.push(t.backup(r, "backup", &format!("full, {label}")).await?);
    let changes = t.sim.mutate(&users, 2.0).await?;
    let mut row = t
        .backup(r, "backup", &format!("incremental 2% changed, {label}"))
        .await?;
    row.note = format!("{changes} changes made; {}", row.note);
    rows.push(row);
    let mut row = t
        .backup(r, "backup", &format!("incremental unchanged, {label}"))
        .await?;
    row.note = format!(
        "{:.2} Graph requests per folder ({} folders; by kind: {}); {}",
        row.requests_per_folder().unwrap_or(0.0),
        row.folders.unwrap_or(0),
        row.by_kind,
        row.note
    );
    rows.push(row);
    Ok(())
}

/// Runs the backup scenario; leaves the zero-latency tenant and its repository in `ctx`.
pub async fn run(sizes: &Sizes, ctx: &mut Ctx, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let t = Tenant::start(&sim_config(sizes.users, sizes.messages)).await?;
    let shape = format!("{}×{}", sizes.users, sizes.messages);
    let r0 = BenchRepo::local(&t.id).await?;
    series(&t, &r0, &format!("{shape}, 0 ms"), rows).await?;

    t.sim
        .set_faults(&FaultConfig {
            latency: Duration::from_millis(sizes.latency_ms),
            ..FaultConfig::default()
        })
        .await?;
    let r1 = BenchRepo::local(&t.id).await?;
    series(
        &t,
        &r1,
        &format!("{shape}, {} ms, 4 conc.", sizes.latency_ms),
        rows,
    )
    .await?;
    t.sim.set_faults(&FaultConfig::default()).await?;
    drop(r1);

    ctx.base = Some((t, r0));
    Ok(())
}

/// Peak RSS with 4 mailboxes (4 downloads each) while the largest messages (attachments
/// of `large_bytes`) are in flight. Its own scenario, so its own process: the peak is not
/// raised by memory earlier steps left with the allocator.
pub async fn large(sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let mut cfg = sim_config(4, 40);
    cfg.seed = 11;
    cfg.large_attachments = true;
    cfg.max_attachment_bytes = sizes.large_bytes;
    let big = Tenant::start(&cfg).await?;
    let mut largest = 0usize;
    for m in &big.mailboxes {
        let d = big.sim.dump(m.address()).await?;
        largest = largest.max(d.messages.iter().map(|x| x.mime_size).max().unwrap_or(0));
    }
    let rb = BenchRepo::local(&big.id).await?;
    let mut row = big
        .backup(&rb, "large", "full, 4×40 with large attachments, 0 ms")
        .await?;
    row.note = format!(
        "largest message {:.1} MiB of MIME; {}",
        crate::harness::mib(largest as u64),
        row.note
    );
    rows.push(row);
    Ok(())
}

/// SPEC §9's own tenant size, full backup without latency, in a fresh process.
pub async fn spec(rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let spec = Tenant::start(&sim_config(20, 300)).await?;
    let rs = BenchRepo::local(&spec.id).await?;
    let mut row = spec.backup(&rs, "spec", "full, SPEC 20×300, 0 ms").await?;
    row.note = format!(
        "SPEC §9 tenant size (simulator: ~25 % of messages with attachments, SPEC assumes ~10 %); {}",
        row.note
    );
    rows.push(row);
    Ok(())
}

/// A full backup of `users` × `messages` without latency, in a fresh process: with the
/// `spec` row, shows whether peak RSS grows with the size (`deep`, 2 × 20,000) or the
/// number (`wide`, 200 × 50) of mailboxes. `all --quick` runs them with fewer messages per
/// mailbox but the same shape (each `deep` mailbox still far larger than a pack, each
/// `wide` one far smaller).
pub async fn shape(
    users: usize,
    messages: usize,
    scenario: &'static str,
    sizes: &Sizes,
    rows: &mut Vec<Row>,
) -> Result<(), BenchError> {
    let mut cfg = sim_config(users, messages);
    cfg.seed = 17;
    if let Some(n) = sizes.mailbox_requests {
        cfg.limits.requests_per_window = n;
    }
    let t = Tenant::start(&cfg).await?;
    let r = BenchRepo::local(&t.id).await?;
    let budget = match sizes.mailbox_requests {
        Some(n) => format!(", {n} req/mailbox/10 min"),
        None => String::new(),
    };
    let mut row = t
        .backup(
            &r,
            scenario,
            &format!("full, {users}×{messages}, 0 ms{budget}"),
        )
        .await?;
    row.note = format!(
        "compare peak RSS with spec (20×300): it must not grow with mailbox size or count; {}",
        row.note
    );
    rows.push(row);
    Ok(())
}
