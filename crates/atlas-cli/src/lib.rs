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
//! - [`exit`]: the exit-code contract (0 ok, 1 failure, 2 partial, 3 usage/config).
//!
//! The commands (private) call `atlas-core` with the settings; [`main`] ties it together.

// Printing macros panic when stdout or stderr is closed; see `console`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
mod commands;
pub mod config;
mod console;
pub mod exit;
pub mod output;
pub mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::{Output, sanitize_multiline};

/// Run `atlas` with the process arguments and return its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err),
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let output = Output::new(cli.global.json);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            console::note!("error: cannot start the async runtime: {err}");
            return Exit::Failure.into();
        }
    };
    let quiet = cli.global.quiet;
    let result = runtime.block_on(async move {
        signals::install(quiet);
        signals::run(commands::run(cli, output)).await
    });
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            let exit = Exit::for_error(&err);
            // `{:#}` prints the whole context chain on one line; error texts may embed
            // untrusted strings (paths, server messages), hence the sanitizing.
            console::note!("error: {}", sanitize_multiline(&format!("{err:#}")));
            exit.into()
        }
    }
}

/// clap's own exit code for usage errors is 2, which Atlas reserves for partial success;
/// usage errors exit 3. Help and version requests are not errors.
fn clap_exit(err: &clap::Error) -> ExitCode {
    let exit = match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Success,
        _ => Exit::Usage,
    };
    // clap prints help/version on stdout and errors on stderr.
    if err.print().is_err() {
        return Exit::Failure.into();
    }
    exit.into()
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(verbose >= 2)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its default reports a failed log write with `eprintln!`, which panics when
        // stderr is closed (see `console`): a log line nobody can read is dropped.
        .log_internal_errors(false)
        .without_time()
        .init();
}
