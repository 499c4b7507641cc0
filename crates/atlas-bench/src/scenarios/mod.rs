//! The benchmark scenarios. `Ctx` carries the benchmark tenant and its first repository
//! between the steps of one scenario (each scenario of `all` runs in its own process, so
//! browse and restore each make their own setup backup).

pub mod backup;
pub mod browse;
pub mod formats;
pub mod kinds;
pub mod repo;
pub mod restore;
pub mod s3;

use crate::error::BenchError;
use crate::harness::{BenchRepo, Tenant, sim_config};
use crate::report::Row;

/// Sizes of a run (`--quick` scales them down).
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Repository scenario: MiB of items.
    pub size_mib: u64,
    /// Mailboxes of the benchmark tenant.
    pub users: usize,
    /// Messages per mailbox.
    pub messages: usize,
    /// Latency for the "with latency" steps, ms.
    pub latency_ms: u64,
    /// Size of the large attachment, bytes.
    pub large_bytes: usize,
    /// Full sizes (not `--quick`): `all` includes the `spec` scenario.
    pub spec_tenant: bool,
    /// `deep` and `wide`: Graph requests per mailbox per 10 minutes, for the simulator and
    /// the client alike (`None`: Graph's documented 10,000).
    pub mailbox_requests: Option<usize>,
    /// Threads of the runtime's blocking pool (the `atlas` binary's by default).
    pub blocking_threads: usize,
}

/// State shared between scenarios of one run.
#[derive(Debug, Default)]
pub struct Ctx {
    /// The benchmark tenant (latency off) and a repository holding its full backup.
    pub base: Option<(Tenant, BenchRepo)>,
}

impl Ctx {
    /// The benchmark tenant with one full backup, made now (and reported) if no earlier
    /// scenario made it.
    pub async fn base(
        &mut self,
        sizes: &Sizes,
        rows: &mut Vec<Row>,
    ) -> Result<&(Tenant, BenchRepo), BenchError> {
        if self.base.is_none() {
            let t = Tenant::start(&sim_config(sizes.users, sizes.messages)).await?;
            let r = BenchRepo::local(&t.id).await?;
            let row = t
                .backup(
                    &r,
                    "backup",
                    &format!("full (setup), {}×{}", sizes.users, sizes.messages),
                )
                .await?;
            rows.push(row);
            self.base = Some((t, r));
        }
        self.base
            .as_ref()
            .ok_or_else(|| BenchError::Incomplete("benchmark tenant missing".into()))
    }
}
