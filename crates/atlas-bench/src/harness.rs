//! Shared setup for the scenarios: a metered step, a simulated tenant with a Graph client,
//! and a counted repository.

use std::sync::Arc;
use std::time::Instant;

use atlas_core::ports::{
    BlobStore, Clock, FolderOptions, MailSource, NullReporter, SourceMailbox, SystemClock,
};
use atlas_core::repo::{FORMAT_VERSION, KdfChoice, Passphrase, RepoSettings, Repository};
use atlas_core::service::Cancel;
use atlas_core::service::backup::{BackupOptions, backup_mailboxes};
use atlas_graph::{GraphClient, GraphSource, GraphStats, GraphTarget};
use atlas_sim::{RequestCounters, SimConfig};
use atlas_store::LocalStore;

use crate::counting::CountingStore;
use crate::error::BenchError;
use crate::procstat::{CpuMark, Pid};
use crate::report::{KindCost, Row};
use crate::simproc::SimProcess;

/// Passphrase of every benchmark repository (test data, not a secret).
pub const PASSPHRASE: &str = "atlas benchmark passphrase";

#[allow(clippy::cast_precision_loss)]
pub fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

/// Wall time, CPU and peak RSS of one step, for Atlas and (optionally) the simulator.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    cpu: CpuMark,
    sim: Option<u32>,
    start_rss: u64,
}

impl Meter {
    /// Resets both peaks and starts the clocks.
    pub fn start(sim: Option<u32>) -> Result<Self, BenchError> {
        Pid::Own.reset_peak()?;
        if let Some(p) = sim {
            Pid::Other(p).reset_peak()?;
        }
        Ok(Self {
            start_rss: Pid::Own.rss()?,
            cpu: CpuMark::now(sim)?,
            start: Instant::now(),
            sim,
        })
    }

    /// A row with the time, CPU and memory figures filled in.
    pub fn finish(
        &self,
        scenario: &'static str,
        step: impl Into<String>,
    ) -> Result<Row, BenchError> {
        let wall_s = self.start.elapsed().as_secs_f64();
        let (own, sim) = self.cpu.since(self.sim)?;
        Ok(Row {
            scenario: scenario.to_owned(),
            step: step.into(),
            atlas_start_rss_mib: mib(self.start_rss),
            wall_s,
            atlas_cpu_s: own.as_secs_f64(),
            sim_cpu_s: sim.map(|d| d.as_secs_f64()),
            atlas_peak_rss_mib: mib(Pid::Own.peak_rss()?),
            sim_peak_rss_mib: self
                .sim
                .map(|p| Pid::Other(p).peak_rss().map(mib))
                .transpose()?,
            ..Row::default()
        })
    }
}

/// A local-directory (or any) repository behind a counting wrapper.
#[derive(Debug)]
pub struct BenchRepo {
    /// The repository.
    pub repo: Repository,
    /// The counted store under it.
    pub store: Arc<CountingStore>,
    /// Keeps the temporary directory alive (removed on drop).
    dir: Option<tempfile::TempDir>,
}

impl BenchRepo {
    /// A fresh repository in a temporary directory (under `$TMPDIR`).
    pub async fn local(tenant: &str) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir().map_err(|e| BenchError::io("tempdir", e))?;
        let inner: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
        let mut r = Self::on(inner, tenant).await?;
        r.dir = Some(dir);
        Ok(r)
    }

    /// A fresh repository in a temporary directory, created at `format` (an earlier one
    /// than this build's, to compare formats on the same data).
    pub async fn local_at_format(tenant: &str, format: u32) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir().map_err(|e| BenchError::io("tempdir", e))?;
        let inner: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
        let mut r = Self::on_at_format(inner, tenant, format).await?;
        r.dir = Some(dir);
        Ok(r)
    }

    /// A fresh repository on `inner`.
    pub async fn on(inner: Arc<dyn BlobStore>, tenant: &str) -> Result<Self, BenchError> {
        Self::on_at_format(inner, tenant, FORMAT_VERSION).await
    }

    async fn on_at_format(
        inner: Arc<dyn BlobStore>,
        tenant: &str,
        format: u32,
    ) -> Result<Self, BenchError> {
        let store = Arc::new(CountingStore::new(inner));
        let dyn_store: Arc<dyn BlobStore> = store.clone();
        // The KDF's minimum cost: the benchmark measures repository work, not key stretching.
        let repo = Repository::init_at_format(
            dyn_store,
            tenant,
            &Passphrase::new(PASSPHRASE),
            KdfChoice::SCRYPT_MINIMUM,
            RepoSettings::default(),
            format,
        )
        .await?;
        let _ = store.take();
        Ok(Self {
            repo,
            store,
            dir: None,
        })
    }
}

/// A simulated tenant in a child process, with Graph source and target over one client.
#[derive(Debug)]
pub struct Tenant {
    /// The simulator child.
    pub sim: SimProcess,
    /// The Graph client (its stats count requests).
    pub client: GraphClient,
    /// Backup source.
    pub source: Arc<GraphSource>,
    /// Restore target.
    pub target: Arc<GraphTarget>,
    /// Mailboxes to back up.
    pub mailboxes: Vec<SourceMailbox>,
    /// Tenant id.
    pub id: String,
}

/// The benchmark tenants: no accounts without a mailbox, so every mailbox listed is backed up.
pub fn sim_config(users: usize, messages: usize) -> SimConfig {
    SimConfig {
        users,
        shared_mailboxes: 0,
        accounts_without_mailbox: false,
        ..SimConfig::with_size(7, users, messages)
    }
}

impl Tenant {
    /// Starts the simulator child (generating the tenant) and signs in.
    pub async fn start(config: &SimConfig) -> Result<Self, BenchError> {
        let sim = SimProcess::spawn(config)?;
        let client = sim.graph_client(config.limits.requests_per_window).await?;
        client.check_sign_in().await?;
        let source = Arc::new(GraphSource::new(client.clone()));
        let target = Arc::new(GraphTarget::new(client.clone()));
        let mut mailboxes = Vec::new();
        for upn in sim.mailbox_users().await? {
            mailboxes.push(source.resolve_mailbox(&upn).await?);
        }
        let tenant_id = sim.tenant_id().await?;
        Ok(Self {
            sim,
            client,
            source,
            target,
            mailboxes,
            id: tenant_id,
        })
    }

    /// Counter readings before a step.
    pub async fn mark(&self) -> Result<GraphStats, BenchError> {
        self.sim.reset_counters().await?;
        Ok(self.client.stats())
    }

    /// Fills the Graph figures of `row` since `before`.
    pub async fn fill_graph(&self, row: &mut Row, before: GraphStats) -> Result<(), BenchError> {
        let c: RequestCounters = self.sim.counters().await?;
        let token = c.kind("token").requests;
        row.graph_requests = Some(c.total_requests().saturating_sub(token));
        let throttled = c.by_kind.values().map(|k| k.throttled).sum();
        row.throttled = Some(throttled);
        row.by_kind = c
            .by_kind
            .iter()
            .filter(|(k, _)| k.as_str() != "token")
            .map(|(k, v)| format!("{k}={}", v.requests))
            .collect::<Vec<_>>()
            .join(", ");
        if throttled > 0 {
            row.note = format!("{throttled} requests throttled (429/503); {}", row.note);
        }
        let now = self.client.stats();
        row.client_requests = Some(now.requests.saturating_sub(before.requests));
        let wait_count = now.throttle_waits.saturating_sub(before.throttle_waits);
        let waited_ms = now.throttle_wait_ms.saturating_sub(before.throttle_wait_ms);
        #[allow(clippy::cast_precision_loss)]
        let wait_s = waited_ms as f64 / 1000.0;
        row.client_wait_s = Some(wait_s);
        if wait_count > 0 {
            row.note = format!(
                "client limiter waited {wait_count} times, {wait_s:.1} s in all; {}",
                row.note
            );
        }
        Ok(())
    }

    /// Backs up every mailbox (4 at a time, 4 downloads in flight each, as the CLI does) and
    /// measures it as one step.
    pub async fn backup(
        &self,
        repo: &BenchRepo,
        scenario: &'static str,
        step: &str,
    ) -> Result<Row, BenchError> {
        self.backup_with(repo, scenario, step, FolderOptions::default())
            .await
    }

    /// [`Tenant::backup`] with these folder options (which kinds, which fidelity); the
    /// row also gets the Graph client's requests and items per kind of the step
    /// ([`Row::kinds`]).
    pub async fn backup_with(
        &self,
        repo: &BenchRepo,
        scenario: &'static str,
        step: &str,
        folder_options: FolderOptions,
    ) -> Result<Row, BenchError> {
        let opts = BackupOptions {
            lease_owner: "atlas-bench".into(),
            tool: "atlas-bench".into(),
            folder_options,
            ..BackupOptions::default()
        };
        let costs_before = self.client.request_costs();
        let before = self.mark().await?;
        let _ = repo.store.take();
        let meter = Meter::start(Some(self.sim.pid()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let source: Arc<dyn MailSource> = self.source.clone();
        let outcomes = backup_mailboxes(
            &repo.repo,
            source,
            self.mailboxes.clone(),
            &opts,
            4,
            clock,
            Arc::new(NullReporter),
            Arc::new(Cancel::new()),
        )
        .await;
        let mut row = meter.finish(scenario, step)?;
        let (mut downloaded, mut reused, mut bytes, mut stored, mut folders) = (0, 0, 0, 0, 0);
        for o in outcomes {
            let s = o.result.map_err(|e| {
                BenchError::Incomplete(format!("backup of {} failed: {e}", o.mailbox))
            })?;
            if !s.complete {
                return Err(BenchError::Incomplete(format!(
                    "backup of {} was partial",
                    o.mailbox
                )));
            }
            downloaded += s.downloaded;
            reused += s.reused;
            bytes += s.bytes_downloaded;
            stored += s.bytes_stored;
            folders += s.folders.iter().filter(|f| f.visited).count() as u64;
        }
        row.messages = downloaded;
        row.mime_bytes = bytes;
        row.stored_bytes = Some(stored);
        row.folders = Some(folders);
        let counts = repo.store.take();
        row.objects_written = Some(counts.puts);
        row.store_requests = Some(counts.requests());
        row.note = format!("objects written: {}", counts.put_kinds);
        if reused > 0 {
            row.note = format!("{reused} messages carried over unchanged; {}", row.note);
        }
        self.fill_graph(&mut row, before).await?;
        row.kinds = kind_costs_since(&costs_before, self.client.request_costs());
        Ok(row)
    }
}

/// What each kind of item cost in Graph requests between two readings of the client's
/// counters ([`GraphClient::request_costs`], cumulative): kinds with no request and no
/// item in between are left out; requests of no kind are `other`.
pub fn kind_costs_since(
    before: &[atlas_graph::RequestCost],
    after: Vec<atlas_graph::RequestCost>,
) -> Vec<KindCost> {
    after
        .into_iter()
        .filter_map(|now| {
            let (requests, items) = before
                .iter()
                .find(|b| b.kind == now.kind)
                .map_or((0, 0), |b| (b.requests, b.items));
            let requests = now.requests.saturating_sub(requests);
            let items = now.items.saturating_sub(items);
            (requests > 0 || items > 0).then(|| KindCost {
                kind: now
                    .kind
                    .map_or_else(|| "other".to_owned(), |k| k.name().to_owned()),
                requests,
                items,
            })
        })
        .collect()
}
