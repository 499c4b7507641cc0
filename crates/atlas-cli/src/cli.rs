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
