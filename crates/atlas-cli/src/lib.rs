//! # atlas-cli
//!
//! The `atlas` command-line front end, as a library so that its parts can be tested and
//! reused (by integration tests and, later, `atlas demo`):
//!
//! - [`cli`]: clap definitions — argv to values;
//! - [`config`]: config file, `.env` and environment to explicit, validated settings —
//!   the only place that reads the environment;
//!   credentials travel as [`atlas_core::SecretString`] (redacted, zeroizing);
//! - [`output`]: human tables or `--json` on stdout, with untrusted strings sanitized;
//! - [`exit`]: the exit-code contract (0 ok, 1 failure, 2 partial, 3 usage/config);
//! - [`progress`]: the core's progress events rendered as bars, plain lines or nothing;
//! - [`monitor`]: `--report`, `--metrics-file` and `--notify-url` of unattended runs.
//!
//! The commands (private) call `atlas-core` with the settings; [`main`] ties it together.

// Printing macros panic when stdout or stderr is closed; see `console`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
mod commands;
pub mod config;
mod console;
pub mod exit;
pub mod monitor;
pub mod output;
mod processes;
pub mod progress;
mod signals;
mod upkeep;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::{ErrorReport, Output, sanitize_multiline};

/// Run `atlas` with the process arguments and return its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err, json_requested(std::env::args_os())),
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let mut output = Output::new(cli.global.json);
    let monitor = cli.command.monitor().and_then(|(command, args)| {
        monitor::Monitor::new(command, args, cli.global.tenant.as_deref())
    });
    if let Some(monitor) = &monitor {
        if let Err(err) = monitor.preflight() {
            return report_error(output, &err.to_string(), None, Exit::Usage).into();
        }
        output = output.with_tap(&DOCUMENT);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(atlas_core::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let message = format!("cannot start the async runtime: {err}");
            return report_error(output, &message, None, Exit::Failure).into();
        }
    };
    let quiet = cli.global.quiet;
    let result = runtime.block_on(async move {
        signals::install(quiet);
        upkeep::start_heartbeat();
        let result = signals::run(commands::run(cli, output)).await;
        // Every exit path, a stop by a signal included, releases what the process holds.
        upkeep::release_all().await;
        result
    });
    let mut exit = match result {
        Ok(exit) => exit,
        Err(err) => {
            // The store names a problem by meaning; which setting to change is ours to say.
            let hint = config::hints::for_error(&err);
            // `{:#}` prints the whole context chain on one line.
            report_error(output, &format!("{err:#}"), hint, Exit::for_error(&err))
        }
    };
    if let Some(monitor) = monitor {
        exit = runtime.block_on(monitor.finish(DOCUMENT.take(), exit));
    }
    // A command stopped by a signal may leave a blocking task stuck in a write (to a pipe
    // nobody reads); waiting for it would make the stop hang.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    exit.into()
}

/// The run's document, for `monitor` (see [`output::Tap`]).
static DOCUMENT: output::Tap = output::Tap::new();

/// A failed run: the message on stderr, and with `--json` also as the error document on
/// stdout, so a script reading stdout always gets one JSON document.
fn report_error(output: Output, message: &str, hint: Option<String>, exit: Exit) -> Exit {
    // Error texts may embed untrusted strings (paths, server messages), hence the
    // sanitizing; the JSON document keeps them raw (serde escapes control characters).
    console::note!("error: {}", sanitize_multiline(message));
    if let Some(hint) = &hint {
        console::note!("hint: {hint}");
    }
    let report = ErrorReport {
        message: message.to_owned(),
        kind: if exit == Exit::Usage {
            "usage"
        } else {
            "failure"
        },
        exit_code: exit.code(),
        hint,
    };
    // stdout may be closed; the exit code still tells.
    let _ = output.error(&report);
    exit
}

/// Whether `--json` is among the arguments (before a `--`), for errors found while parsing
/// them, when there is no parsed command line to ask.
fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// clap's own exit code for usage errors is 2, which Atlas reserves for partial success;
/// usage errors exit 3. Help and version requests are not errors.
fn clap_exit(err: &clap::Error, json: bool) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // clap prints help/version on stdout.
            if err.print().is_err() {
                return Exit::Failure.into();
            }
            Exit::Success.into()
        }
        _ if json => {
            // The same text clap would print, first line: "error: …" without the prefix.
            let text = err.render().to_string();
            let message = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            let _ = err.print();
            let report = ErrorReport {
                message,
                kind: "usage",
                exit_code: Exit::Usage.code(),
                hint: None,
            };
            let _ = Output::new(true).error(&report);
            Exit::Usage.into()
        }
        _ => {
            // clap prints errors on stderr.
            if err.print().is_err() {
                return Exit::Failure.into();
            }
            Exit::Usage.into()
        }
    }
}

/// Diagnostics go to stderr so stdout stays clean for results and `--json`. Our crates log
/// at the chosen level; dependencies only from `warn` up, unless `-vv` or more.
fn init_logging(verbose: u8, quiet: bool) {
    let ours = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let others = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0 | 1) => "warn",
        (false, 2) => "info",
        (false, _) => "debug",
    };
    let directive = format!(
        "{others},atlas={ours},atlas_cli={ours},atlas_core={ours},atlas_store={ours},atlas_graph={ours},atlas_sim={ours}"
    );
    let filter = tracing_subscriber::EnvFilter::try_new(directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(verbose >= 2)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its default reports a failed log write with `eprintln!`, which panics when
        // stderr is closed (see `console`): a log line nobody can read is dropped.
        .log_internal_errors(false);
    // With -v the log is a record of the run: each line says when. Plain warnings
    // (without -v) read as messages, without a time.
    if verbose > 0 && !quiet {
        builder.with_timer(LocalTime).init();
    } else {
        builder.without_time().init();
    }
}

/// Log timestamps in the local zone with its offset (`2026-03-31T20:00:00.123+02:00`): a
/// log is read next to other logs of the same machine.
struct LocalTime;

impl tracing_subscriber::fmt::time::FormatTime for LocalTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        )
    }
}
