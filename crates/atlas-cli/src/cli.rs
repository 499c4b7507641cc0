//! The command line: clap definitions only. Parsing turns argv into these values; `main`
//! maps them to configuration and core calls.

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::KdfSetting;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (nothing or not everything could be done; see the error)
  2  partial success (some items or mailboxes failed or were skipped; what was
     captured was committed)
  3  bad usage or configuration (missing/invalid settings, unknown tenant)

Configuration: ./atlas.config.json, ./.atlas/config.json or ~/.atlas/config.json,
then ./.env, then ATLAS_* environment variables (later wins). See
docs/CONFIGURATION.md.";

/// Back up, verify, export and restore Microsoft 365 mailboxes.
#[derive(Debug, Parser)]
#[command(name = "atlas", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Tenant to work on: a name under "tenants" in the config file, or the configured
    /// tenant id [env: ATLAS_TENANT]
    #[arg(short = 't', long, global = true, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Print machine-readable JSON on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Print more diagnostics on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short = 'v', long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only errors on stderr
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

/// The subcommands. Only commands that work are listed; more arrive as the core grows.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository for a tenant and its encryption key
    ///
    /// Needs the tenant id and the encryption passphrase. Running it on an existing
    /// repository changes nothing; it only checks that the passphrase opens it.
    Init(InitArgs),

    /// Manage the repository's encryption key
    #[command(subcommand)]
    Key(KeyCommand),

    /// The built-in Microsoft Graph simulator
    #[command(subcommand)]
    Sim(SimCommand),
}

/// `atlas init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub kdf: KdfArg,
}

/// Choice of key derivation for a new or re-wrapped data key.
#[derive(Debug, Args)]
pub struct KdfArg {
    /// Key derivation: scrypt (default; also readable by Atlas 1.x), argon2id, or
    /// scrypt-n14 (fast and weak, for tests only) [env: ATLAS_KDF]
    #[arg(long, value_name = "KDF")]
    pub kdf: Option<KdfSetting>,
}

/// `atlas key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Change the passphrase (re-wraps the data key; no data is re-encrypted)
    ///
    /// The new passphrase is read from ATLAS_NEW_ENCRYPTION_PASSPHRASE, or prompted for
    /// twice when stdin is a terminal. Afterwards the old passphrase no longer opens the
    /// repository.
    Passwd(KeyPasswdArgs),
}

/// `atlas key passwd` options.
#[derive(Debug, Args)]
pub struct KeyPasswdArgs {
    #[command(flatten)]
    pub kdf: KdfArg,
}

/// `atlas sim …`
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a generated tenant over HTTP on 127.0.0.1 until Ctrl+C
    ///
    /// Prints the base URL, tenant id, client id and client secret to connect with (the
    /// simulator's own test credentials). The same tenant is generated for the same seed
    /// and sizes.
    Serve(SimServeArgs),
}

/// `atlas sim serve` options. Unset values keep the simulator's defaults.
#[derive(Debug, Args)]
pub struct SimServeArgs {
    /// Port on 127.0.0.1 (0 picks a free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Number of licensed users with a mailbox [default: 6]
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,

    /// Number of shared mailboxes [default: 1]
    #[arg(long, value_name = "N")]
    pub shared_mailboxes: Option<usize>,

    /// Messages generated per mailbox [default: 40]
    #[arg(long, value_name = "N")]
    pub messages_per_user: Option<usize>,

    /// Seed of the generated tenant [default: 42]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Fault: delay added to every Graph request, in milliseconds
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,

    /// Fault: probability (0.0-1.0) that a Graph request fails with 429, 503 or 504
    #[arg(long, value_name = "P", value_parser = probability)]
    pub error_rate: Option<f64>,

    /// Fault: Retry-After seconds sent with injected 429/503 responses
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,

    /// Fault: probability (0.0-1.0) that a Graph request hangs
    #[arg(long, value_name = "P", value_parser = probability)]
    pub hang_rate: Option<f64>,

    /// Fault: how long a hung request waits before answering, in milliseconds (default:
    /// it never answers)
    #[arg(long, value_name = "MS")]
    pub hang_ms: Option<u64>,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("\"{s}\" is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("must be between 0.0 and 1.0".to_owned())
    }
}
