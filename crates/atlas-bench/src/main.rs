//! `atlas-bench`: measures Atlas against SPEC §9's targets on a simulated tenant.
//!
//! ```text
//! cargo run --release -p atlas-bench -- all --quick [--json]
//! cargo run --release -p atlas-bench -- repo --size-mib 1024
//! ```
//!
//! The simulator runs in a child process (this binary, `sim-child`), so Atlas's CPU and
//! peak RSS are read for Atlas alone and the simulator's are reported beside them.
//! Speed and memory are measured here, never asserted in tests.

mod counting;
mod error;
mod harness;
mod mimegen;
mod procstat;
mod report;
mod scenarios;
mod simproc;

use clap::{Parser, ValueEnum};

use crate::error::BenchError;
use crate::report::{Report, Row, RowJson};
use crate::scenarios::{Ctx, Sizes};

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Repository write and verify (issue 2).
    Repo,
    /// Full / incremental / unchanged backups, without and with latency (issue 4).
    Backup,
    /// Peak RSS with 4 workers while 40 MB messages are in flight (issue 4).
    Large,
    /// Full backup of SPEC §9's tenant size, 20 × 300 (skipped by `all --quick`).
    Spec,
    /// Full backup of two large mailboxes, 2 × 20,000 (quick: 2 × 3,000): peak RSS must
    /// not grow with the size of a mailbox (issue 13).
    Deep,
    /// Full backup of many small mailboxes, 200 × 50 (quick: 200 × 15): peak RSS and
    /// objects must not grow with the number of mailboxes (issue 13).
    Wide,
    /// Graph requests and items per kind of item: a full and an unchanged incremental
    /// backup of every kind, and mail with `--fidelity full` (issue 14).
    Kinds,
    /// Verify and save eml-zip (issue 5).
    Browse,
    /// The same backup, verify and save into a format-3 and a format-4 repository,
    /// alternately, in one run (issue 13; 20 × 300, quick: --users × --messages)
    Formats,
    /// Restore one mailbox (issue 6).
    Restore,
    /// Backup and verify to S3 (issue 7; needs ATLAS_TEST_S3_ENDPOINT).
    S3,
    /// Everything above.
    All,
    /// Internal: serve a simulator for the parent process.
    #[value(hide = true)]
    SimChild,
}

/// Atlas benchmarks against a simulated tenant.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Scenarios to run (several allowed)
    #[arg(value_enum, required = true)]
    scenarios: Vec<Scenario>,
    /// Small sizes: the whole `all` run takes under a minute on 2 cores
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Repository scenario: MiB of items to write [default: 1024, quick: 128]
    #[arg(long, value_name = "MIB")]
    size_mib: Option<u64>,
    /// Mailboxes of the benchmark tenant [default: 20, quick: 8]
    #[arg(long, value_name = "N")]
    users: Option<usize>,
    /// Messages per mailbox [default: 500, quick: 100]
    #[arg(long, value_name = "N")]
    messages: Option<usize>,
    /// Latency of the "with latency" steps in ms [default: 20]
    #[arg(long, value_name = "MS", default_value_t = 20)]
    latency_ms: u64,
    /// Size of the large attachments in MB [default: 40, quick: 20]
    #[arg(long, value_name = "MB")]
    large_mb: Option<usize>,
    /// `deep` and `wide`: Graph requests allowed per mailbox per 10 minutes, in the
    /// simulator and the client alike [default: 10000, Graph's documented limit]. Raising
    /// it measures memory apart from the pacing: at 10,000, `deep` (2 × 20,000) is paced
    /// over 10 minutes
    #[arg(long, value_name = "N")]
    mailbox_requests: Option<usize>,
    /// Threads of the async runtime's blocking pool [default: the `atlas` binary's,
    /// atlas_core::MAX_BLOCKING_THREADS]; fewer threads mean fewer malloc arenas
    #[arg(long, value_name = "N")]
    blocking_threads: Option<usize>,
}

fn sizes(a: &Args) -> Sizes {
    Sizes {
        size_mib: a.size_mib.unwrap_or(if a.quick { 128 } else { 1024 }),
        users: a.users.unwrap_or(if a.quick { 8 } else { 20 }),
        messages: a.messages.unwrap_or(if a.quick { 100 } else { 500 }),
        latency_ms: a.latency_ms,
        large_bytes: a.large_mb.unwrap_or(if a.quick { 20 } else { 40 }) * 1_000_000,
        spec_tenant: !a.quick,
        mailbox_requests: a.mailbox_requests,
        blocking_threads: a
            .blocking_threads
            .unwrap_or(atlas_core::MAX_BLOCKING_THREADS)
            .max(1),
    }
}

/// The scenarios selected, in run order (`all` expanded, duplicates dropped).
fn expand(list: &[Scenario], quick: bool) -> Vec<Scenario> {
    const ORDER: [Scenario; 11] = [
        Scenario::Repo,
        Scenario::Backup,
        Scenario::Large,
        Scenario::Spec,
        Scenario::Deep,
        Scenario::Wide,
        Scenario::Kinds,
        Scenario::Browse,
        Scenario::Formats,
        Scenario::Restore,
        Scenario::S3,
    ];
    let all = list.contains(&Scenario::All);
    ORDER
        .into_iter()
        .filter(|s| list.contains(s) || (all && !(quick && *s == Scenario::Spec)))
        .collect()
}

fn name(s: Scenario) -> &'static str {
    match s {
        Scenario::Repo => "repo",
        Scenario::Backup => "backup",
        Scenario::Large => "large",
        Scenario::Spec => "spec",
        Scenario::Deep => "deep",
        Scenario::Wide => "wide",
        Scenario::Browse => "browse",
        Scenario::Formats => "formats",
        Scenario::Kinds => "kinds",
        Scenario::Restore => "restore",
        Scenario::S3 => "s3",
        Scenario::All => "all",
        Scenario::SimChild => "sim-child",
    }
}

/// Runs one scenario in this process.
async fn run_one(s: Scenario, sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    eprintln!("atlas-bench: {}", name(s));
    let mut ctx = Ctx::default();
    match s {
        Scenario::Repo => {
            rows.extend(scenarios::repo::run(sizes.size_mib).await?);
            Ok(())
        }
        Scenario::Backup => scenarios::backup::run(sizes, &mut ctx, rows).await,
        Scenario::Large => scenarios::backup::large(sizes, rows).await,
        Scenario::Spec => scenarios::backup::spec(rows).await,
        // `--quick` keeps the shapes (two mailboxes far larger than a pack; many mailboxes
        // smaller than one) at a fraction of the messages.
        Scenario::Deep => {
            let n = if sizes.spec_tenant { 20_000 } else { 3_000 };
            scenarios::backup::shape(2, n, "deep", sizes, rows).await
        }
        Scenario::Wide => {
            let n = if sizes.spec_tenant { 50 } else { 15 };
            scenarios::backup::shape(200, n, "wide", sizes, rows).await
        }
        Scenario::Browse => scenarios::browse::run(sizes, &mut ctx, rows).await,
        Scenario::Formats => scenarios::formats::run(sizes, rows).await,
        Scenario::Kinds => scenarios::kinds::run(sizes, rows).await,
        Scenario::Restore => scenarios::restore::run(sizes, &mut ctx, rows).await,
        Scenario::S3 => scenarios::s3::run(sizes, &mut ctx, rows).await,
        Scenario::All | Scenario::SimChild => Ok(()),
    }
}

#[derive(serde::Deserialize)]
struct ChildReport {
    rows: Vec<Row>,
}

/// Runs one scenario in a fresh process of this binary, so its peak RSS is not inflated by
/// memory an earlier scenario left with the allocator, and collects its rows.
fn run_child(s: Scenario, sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(name(s))
        .arg("--json")
        .args(["--size-mib", &sizes.size_mib.to_string()])
        .args(["--users", &sizes.users.to_string()])
        .args(["--messages", &sizes.messages.to_string()])
        .args(["--latency-ms", &sizes.latency_ms.to_string()])
        .args(["--large-mb", &(sizes.large_bytes / 1_000_000).to_string()])
        .args(["--blocking-threads", &sizes.blocking_threads.to_string()])
        .args(
            sizes
                .mailbox_requests
                .map(|n| ["--mailbox-requests".to_owned(), n.to_string()])
                .iter()
                .flatten(),
        )
        .stderr(std::process::Stdio::inherit());
    if !sizes.spec_tenant {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| BenchError::io("spawn scenario process", e))?;
    if let Ok(report) = serde_json::from_slice::<ChildReport>(&out.stdout) {
        rows.extend(report.rows);
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Incomplete(format!(
            "scenario {} failed ({})",
            name(s),
            out.status
        )))
    }
}

fn run(list: &[Scenario], sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let selected = expand(list, !sizes.spec_tenant);
    if let [one] = selected.as_slice() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .max_blocking_threads(sizes.blocking_threads)
            .enable_all()
            .build()
            .map_err(|e| BenchError::io("tokio runtime", e))?;
        return rt.block_on(run_one(*one, sizes, rows));
    }
    // Several scenarios: each in its own process; one failing does not stop the others.
    let mut first_error = None;
    for s in selected {
        if let Err(e) = run_child(s, sizes, rows) {
            eprintln!("atlas-bench: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.scenarios.contains(&Scenario::SimChild) {
        return match simproc::child_main() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("atlas-bench sim-child: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let sizes = sizes(&args);
    let mut rows = Vec::new();
    let result = run(&args.scenarios, &sizes, &mut rows);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if args.json {
        let report = Report {
            cpus,
            quick: args.quick,
            rows: rows.into_iter().map(RowJson::from).collect(),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("atlas-bench: {e}"),
        }
    } else {
        println!(
            "atlas-bench on {cpus} CPUs{}; MB = 10^6 bytes; cpu ms/m = Atlas CPU per message; \
             rss = peak RSS MiB (Atlas process; sim = simulator child); req/msg = Graph \
             requests seen by the simulator per message downloaded",
            if args.quick { ", --quick sizes" } else { "" }
        );
        print!("{}", report::table(&rows));
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atlas-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
