//! The command line: clap definitions only. Parsing turns argv into these values; `main`
//! maps them to configuration and core calls.
//!
//! The doc comments of the argument structs are the `--help` text, written for a terminal:
//! placeholders such as `<snapshot>` are meant literally there, not as HTML.
#![allow(rustdoc::invalid_html_tags)]

use atlas_core::model::KindSet;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::KdfSetting;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (nothing or not everything could be done; see the error), damage
     found by verify, a confirmation answered no
  2  partial success (some items or mailboxes failed or were skipped; what was
     captured was committed)
  3  bad usage or configuration (invalid arguments, missing/invalid settings,
     unknown tenant, mailbox, snapshot or message)

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

    /// Print one machine-readable JSON document on stdout instead of text (also on
    /// failure; see docs/JSON.md)
    #[arg(long, global = true)]
    pub json: bool,

    /// Print more diagnostics on stderr, with timestamps (-v info, -vv debug, -vvv trace)
    #[arg(short = 'v', long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only errors on stderr (no progress, no warnings)
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

    /// Live list of the tenant's mailboxes from Microsoft Graph
    ///
    /// Address, display name, kind (licensed / shared / unlicensed / no mailbox), account
    /// enabled, created, and size and item count when Reports.Read.All is granted (the
    /// columns are omitted, without error, when it is not).
    Mailboxes(MailboxesArgs),

    /// Back up mailboxes (all of the tenant's unless -m is given), incrementally
    ///
    /// Exit 0 when every folder of every mailbox was captured completely, 2 when some
    /// items, folders or mailboxes were not (they are listed and retried next run), 1 when
    /// nothing could be backed up. Ctrl+C once finishes the items in flight and commits a
    /// partial snapshot; twice stops at once.
    Backup(BackupArgs),

    /// Show what the next backup would pick up: new, changed and deleted messages per
    /// folder since the last backup (writes nothing)
    ///
    /// Without -m, every mailbox a tenant-wide backup includes. Exit 2 when a mailbox
    /// could not be checked.
    Status(StatusArgs),

    /// List mailboxes in the repository, snapshots of a mailbox, or messages of a snapshot
    List(ListArgs),

    /// Show one message of a snapshot (headers, text body, attachments)
    Read(ReadArgs),

    /// Check that every object snapshots need exists, decrypts and matches its checksum
    ///
    /// Exit 1 when anything is damaged; each damaged item is named (mailbox, folder, message
    /// id, object — never the subject).
    Verify(VerifyArgs),

    /// Heal the damage verify names
    ///
    /// Restores damaged root objects from their spare copies, rebuilds the index from the
    /// packs without damaged or missing data, and replaces every affected snapshot with one
    /// that records which items are lost (a record that cannot be read at all is deleted).
    /// The next backup downloads again the lost items still in the mailbox. Exit 1 when
    /// something could not be repaired.
    Repair(RepairArgs),

    /// Export a snapshot (or a mailbox as of a date) to a zip of .eml files or to mbox
    Save(SaveArgs),

    /// Logical vs. stored size, dedup and compression, per folder and per month
    Stats(StatsArgs),

    /// Restore a snapshot, a folder or a message into a mailbox (the source's or another)
    ///
    /// Messages come back as received mail (not drafts) with their dates, flags and
    /// attachments, under a folder Restore-<snapshot time> unless --root or --in-place.
    /// Rerunning after an interruption completes the restore without duplicates. Exit 2 if
    /// anything is missing afterwards.
    Restore(RestoreArgs),

    /// Delete a snapshot, a mailbox's snapshots, or the whole repository (--purge)
    Delete(DeleteArgs),

    /// Apply a retention policy per mailbox, then optionally prune unreferenced data
    Forget(ForgetArgs),

    /// Remove leases and locks left by processes that are gone
    ///
    /// Backups and prunes take over a stale lease or prune lock by themselves: one that
    /// expired (holders renew theirs every quarter of its lifetime) or whose process is gone
    /// on this machine. This removes every stale one now. --remove-all also removes those
    /// that still look valid, for a holder on another machine that you know is dead; a
    /// holder that is in fact alive then loses its lease and cannot commit.
    Unlock(UnlockArgs),

    /// Copy a TypeScript Atlas 1.x repository into the configured repository
    ///
    /// Every v1 snapshot becomes a snapshot of the current format (re-encrypted,
    /// compressed, packed) with its original time and contents. Rerunning converts only
    /// what is missing, so an interrupted migration resumes; the v1 repository is only
    /// read. See docs/MIGRATING.md.
    Migrate(MigrateArgs),

    /// Check the S3 storage: reachable, bucket, versioning, Object Lock, conditional writes
    ///
    /// With --lock-mode, writes a small probe object under that mode and confirms it cannot
    /// be deleted. Prints READY or NOT READY with what to fix; exit 1 when not ready.
    /// Writes nothing else and never creates the bucket.
    StorageCheck(StorageCheckArgs),

    /// Copy snapshots, encrypted as they are, to a second store (a replica)
    ///
    /// Copies everything the chosen snapshots need, data before records, skipping what the
    /// target already has, and checks what it copied on the target. Refuses a target that
    /// holds another data key. Marks the target as a replica (backups into it are refused
    /// unless forced) and records, per snapshot and target, when it was replicated
    /// (--status lists those records).
    Replicate(ReplicateArgs),

    /// Copy snapshots back from a replica into the configured repository (disaster recovery)
    ///
    /// The reverse of replicate, into an empty or damaged primary; what the primary already
    /// has is kept. The next backup then continues from the rehydrated snapshots.
    Rehydrate(RehydrateArgs),

    /// Run the whole job against a built-in simulated tenant, with no configuration
    ///
    /// Starts a simulated Microsoft 365 tenant in-process, creates a temporary encrypted
    /// repository, and runs backup → change → incremental backup → status → verify →
    /// restore → export, for the whole mailbox: it ends by showing one mailbox's calendars
    /// and contacts and saving them as .ics and .vcf.
    Demo(DemoArgs),

    /// The built-in Microsoft Graph simulator
    #[command(subcommand)]
    Sim(SimCommand),

    /// Which mailboxes are protected: a complete snapshot within --max-age, only partial
    /// ones, stale, or none at all
    ///
    /// Reads the repository only (no Graph credentials), unless --compare-tenant also lists
    /// the tenant's mailboxes that were never backed up. Exit 2 when any mailbox is not
    /// protected, 0 when all are.
    Report(ReportArgs),

    /// Print a shell completion script on stdout
    ///
    /// bash: `atlas completions bash > /etc/bash_completion.d/atlas`; zsh: into a
    /// directory of $fpath as `_atlas`; fish: `~/.config/fish/completions/atlas.fish`;
    /// PowerShell: `atlas completions powershell | Out-String | Invoke-Expression` in
    /// $PROFILE.
    Completions(CompletionsArgs),

    /// Write the manual pages (atlas.1 and one page per command) into a directory
    ///
    /// The release archive ships them (scripts/release.sh); `man -l DIR/atlas-backup.1`
    /// reads one without installing.
    Man(ManArgs),
}

/// `atlas completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `atlas man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing; existing pages of the same
    /// names are replaced)
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

/// Which kinds of mailbox a tenant-wide backup includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MailboxKindArg {
    /// Users with an Exchange Online licence.
    Licensed,
    /// Shared mailboxes (and room/equipment mailboxes).
    Shared,
    /// User mailboxes without a licence (e.g. leavers in their grace period).
    Unlicensed,
}

/// `atlas backup` options.
#[derive(Debug, Args)]
// Independent command-line switches, not a state machine.
#[allow(clippy::struct_excessive_bools)]
pub struct BackupArgs {
    /// Mailbox to back up (address, UPN or object id); repeat for several. Without it,
    /// every mailbox of the tenant of the kinds chosen by --mailbox-kinds.
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailboxes: Vec<String>,

    /// Only these folders (path like "Inbox/Projects" or a bare name), subfolders
    /// included; repeatable. Other folders keep their previous state in the snapshot.
    #[arg(short = 'f', long = "folder", value_name = "FOLDER")]
    pub folders: Vec<String>,

    /// Ignore saved delta state and enumerate every folder again
    #[arg(long)]
    pub full: bool,

    /// Mailboxes backed up in parallel
    #[arg(short = 'C', long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Messages downloaded at once per mailbox (Graph serves at most 4 concurrent
    /// requests per mailbox and app; more only queue)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub downloads: u16,

    /// Delta page size (Prefer: odata.maxpagesize; Graph serves at most 200)
    #[arg(short = 'P', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,

    /// Kinds of mailbox a tenant-wide backup includes
    #[arg(
        long = "mailbox-kinds",
        value_enum,
        value_delimiter = ',',
        default_value = "licensed,shared,unlicensed"
    )]
    pub mailbox_kinds: Vec<MailboxKindArg>,

    /// Kinds of item to back up: mail, calendar, contacts, tasks, notes, config (comma
    /// separated, or all). Default: every kind the app's permissions allow (the others
    /// are skipped with one warning); a kind named here that the app may not read makes
    /// the run partial (exit 2), naming the permission. Kinds not backed up keep their
    /// previous state in the snapshot.
    #[arg(long, value_name = "KINDS")]
    pub kinds: Option<KindSet>,

    /// How much of each mail message to keep: mime (its raw MIME, the default) or full
    /// (also the mailbox export API's full-fidelity stream, from which Exchange recreates
    /// the message with every property; needs MailboxFolder.Read.All, MailboxItem.Read.All
    /// and MailboxItem.Export.All, checked before anything is read: without them the run
    /// backs up nothing, exit 2). Also `fidelity` / ATLAS_FIDELITY in the configuration.
    #[arg(long, value_name = "mime|full")]
    pub fidelity: Option<atlas_core::model::Fidelity>,

    /// Back up only shard I of N (0-based) of the selected mailboxes, so N workers
    /// together cover each exactly once (a fixed partition by a hash of the mailbox's
    /// directory id); `auto/N` takes I from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Include hidden folders
    #[arg(long)]
    pub include_hidden: bool,

    /// Include the Recoverable Items (Deletions) folder
    #[arg(long)]
    pub include_recoverable_items: bool,

    /// Keep everything this backup needs under Object Lock for N days (S3 only)
    #[arg(long, value_name = "DAYS", requires = "lock_mode")]
    pub retention_days: Option<u32>,

    /// Object Lock mode for --retention-days
    #[arg(long, value_enum, requires = "retention_days")]
    pub lock_mode: Option<LockModeArg>,

    /// Back up even into a repository marked as a replica (see atlas replicate)
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LockModeArg {
    /// Privileged users can still shorten or remove the retention.
    Governance,
    /// Nobody can delete the data before the retention ends.
    Compliance,
}

/// `atlas status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Mailbox (address, UPN or object id); repeat for several. Without it, every mailbox
    /// a tenant-wide backup includes (see backup --mailbox-kinds)
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailboxes: Vec<String>,

    /// Kinds of mailbox checked without -m
    #[arg(
        long = "mailbox-kinds",
        value_enum,
        value_delimiter = ',',
        default_value = "licensed,shared,unlicensed"
    )]
    pub mailbox_kinds: Vec<MailboxKindArg>,

    /// Include hidden folders
    #[arg(long)]
    pub include_hidden: bool,

    /// Include the Recoverable Items (Deletions) folder
    #[arg(long)]
    pub include_recoverable_items: bool,
}

/// `atlas mailboxes` options.
#[derive(Debug, Args)]
pub struct MailboxesArgs {
    /// Only users with an Exchange Online licence
    #[arg(long)]
    pub licensed_only: bool,
}

/// `atlas list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Snapshots of this mailbox
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "snapshot"
    )]
    pub mailbox: Option<String>,

    /// Messages of this snapshot (id or unique prefix)
    #[arg(short = 's', long, value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,

    /// With -s: only this folder (path or name, subfolders included)
    #[arg(short = 'f', long, value_name = "FOLDER", requires = "snapshot")]
    pub folder: Option<String>,

    /// With -s: list every message (text default: the first 50; --json lists every
    /// message unless --limit is given)
    #[arg(long, requires = "snapshot", conflicts_with = "limit")]
    pub all: bool,

    /// With -s: list at most N messages (a page; see --offset)
    #[arg(long, value_name = "N", requires = "snapshot")]
    pub limit: Option<usize>,

    /// With -s: skip the first N messages (the next page starts at the previous
    /// page's nextOffset)
    #[arg(long, value_name = "N", requires = "snapshot", default_value_t = 0)]
    pub offset: usize,

    /// With -s: only items of this kind (mail, calendar, contacts, tasks, notes, config)
    #[arg(long, value_name = "KIND", requires = "snapshot")]
    pub kind: Option<atlas_core::model::ItemKind>,

    /// With -s: show subjects (hidden by default: they are sensitive)
    #[arg(short = 'S', long, requires = "snapshot")]
    pub show_subjects: bool,
}

/// `atlas read` options.
#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub source: SnapshotChoice,

    /// The message: Graph id, a unique prefix of it, or its internetMessageId
    #[arg(long, value_name = "REF")]
    pub message: String,

    /// Print the stored MIME exactly as backed up
    #[arg(long, conflicts_with = "eml")]
    pub raw: bool,

    /// Write the stored MIME to this .eml file (must not exist)
    #[arg(long, value_name = "PATH")]
    pub eml: Option<std::path::PathBuf>,
}

/// `atlas verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this snapshot
    #[arg(short = 's', long, value_name = "SNAPSHOT", conflicts_with_all = ["mailbox", "all"])]
    pub snapshot: Option<String>,

    /// Every snapshot of this mailbox
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "all"
    )]
    pub mailbox: Option<String>,

    /// Every snapshot in the repository (the default)
    #[arg(long)]
    pub all: bool,

    /// Also read, decrypt and hash the data of the packs: all of them, or PERCENT of them
    /// (`50%` or `50`), a different slice each day. Without it verify checks the structure:
    /// root objects, indexes, records, folder lists, and that every object is present
    #[arg(long, value_name = "PERCENT", num_args = 0..=1,
          default_missing_value = "100", value_parser = parse_percent)]
    pub read_data: Option<u8>,

    /// With --read-data: also recompute every blob's content id from its plaintext (a keyed
    /// SHA-256), which proves each was stored under the id of its content; by default a
    /// blob whose frame carries a checksum is checked by that checksum while it is decoded
    /// (about twice as fast)
    #[arg(long, requires = "read_data")]
    pub content_ids: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// `50%` or `50`: a percentage from 1 to 100 (the README writes `--read-data=50%`).
fn parse_percent(text: &str) -> Result<u8, String> {
    let digits = text.trim().strip_suffix('%').unwrap_or(text.trim());
    match digits.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!(
            "{text:?} is not a percentage from 1 to 100 (e.g. 50% or 50)"
        )),
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// A zip of .eml files, folders as directories, MIME byte for byte
    EmlZip,
    /// A directory with one mboxrd file per folder
    Mbox,
    /// A zip of iCalendar files (RFC 5545): calendars and tasks
    Ics,
    /// A zip of vCard 3.0 files: contacts, with photos
    Vcf,
    /// A zip of JSON files: every kind but mail, configuration included
    Json,
}

/// `atlas save` options.
#[derive(Debug, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub source: SnapshotChoice,

    /// Only this folder (path or name, subfolders included)
    #[arg(short = 'f', long, value_name = "FOLDER")]
    pub folder: Option<String>,

    /// Only this message (Graph id, unique prefix, or internetMessageId)
    #[arg(long, value_name = "REF")]
    pub message: Option<String>,

    /// Only items of this kind (mail, calendar, contacts, tasks, notes, config); each
    /// format takes only the kinds it holds and counts the others as skipped
    #[arg(long, value_name = "KIND")]
    pub kind: Option<atlas_core::model::ItemKind>,

    /// Output format: eml-zip and mbox hold mail, ics calendars and tasks, vcf contacts,
    /// json every kind but mail
    #[arg(long, value_enum, default_value = "eml-zip")]
    pub format: FormatArg,

    /// Output: a file path; an existing directory (or a path ending in /) to write
    /// atlas-<mailbox>-<snapshot>.zip (-ics.zip, -vcf.zip, -json.zip; -mbox) inside it;
    /// `-` for stdout. With --format mbox, a path ending in .mbox is one file, anything
    /// else a directory of one file per folder. Default: the current directory
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<std::path::PathBuf>,

    /// Do not check each message's checksum while exporting
    #[arg(long)]
    pub skip_verify: bool,

    /// Replace an earlier export at the output path without asking (Atlas never replaces
    /// anything that is not its own export)
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `atlas repair` options.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Only say what would be repaired; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `atlas unlock` options.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Also remove leases and locks that still look valid (asks first, unless -y)
    #[arg(long)]
    pub remove_all: bool,

    /// With --remove-all: do not ask
    #[arg(short = 'y', long, requires = "remove_all")]
    pub yes: bool,
}

/// `atlas stats` options.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this mailbox
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailbox: Option<String>,

    /// Only folders of this kind (mail, calendar, contacts, tasks, notes, config); sizes
    /// count every representation stored of an item (export stream and readable JSON)
    #[arg(long, value_name = "KIND")]
    pub kind: Option<atlas_core::model::ItemKind>,
}

/// `atlas demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Users with a mailbox in the simulated tenant
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub users: u16,

    /// Messages per mailbox
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub messages_per_user: u32,

    /// Keep the demo repository: DIR (new or empty) gets `repository/`, `exports/` (the
    /// .eml, .ics and .vcf zips) and `.env` (mode 0600) with the settings and random
    /// passphrase that open it, so `cd DIR && atlas list` works (default: a temporary
    /// repository and exports, removed at the end)
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

/// `atlas init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub kdf: KdfArg,

    /// S3 only: create a missing bucket with Object Lock (and versioning) enabled, so that
    /// backups can lock their snapshots (`backup --retention-days … --lock-mode …`)
    #[arg(long)]
    pub object_lock: bool,
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

/// `atlas restore` options.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // Independent command-line switches.
pub struct RestoreArgs {
    #[command(flatten)]
    pub source: SnapshotChoice,

    /// Target mailbox (default: the source mailbox); it must exist
    #[arg(short = 'T', long = "target", value_name = "MAILBOX")]
    pub target: Option<String>,

    /// Only these folders (path or name, subfolders included); repeatable
    #[arg(short = 'f', long = "folder", value_name = "FOLDER")]
    pub folders: Vec<String>,

    /// Only this message (Graph id, unique prefix, or internetMessageId)
    #[arg(long, value_name = "REF")]
    pub message: Option<String>,

    /// Only messages received on or after this day (YYYY-MM-DD, local), local time
    /// (2026-03-31T08:00) or RFC 3339 timestamp
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<String>,

    /// Only messages received on or before this day (the whole day counts), local time or
    /// RFC 3339 timestamp
    #[arg(long, value_name = "DATE")]
    pub end_date: Option<String>,

    /// Name of the folder to restore under (default: Restore-<snapshot time>)
    #[arg(long, value_name = "NAME", conflicts_with = "in_place")]
    pub root: Option<String>,

    /// Restore into the original folder paths (created when missing), skipping messages
    /// already there
    #[arg(long)]
    pub in_place: bool,

    /// Kinds of item to restore: mail, calendar, contacts, tasks, notes, config (comma
    /// separated, or all). Default: every kind in the snapshot but config. Calendars,
    /// contacts, tasks and notes are imported from their full-fidelity streams
    /// (MailboxItem.ImportExport.All) under a Restore-<time> folder of their own kind; no
    /// meeting invitation or update is sent. config adds the categories and inbox rules
    /// the target lacks (MailboxSettings.ReadWrite)
    #[arg(long, value_name = "KINDS")]
    pub kinds: Option<KindSet>,

    /// With config: also write the stored mailbox settings (automatic replies, working
    /// hours, time zone, language, date and time formats) over the target's
    #[arg(long)]
    pub overwrite_settings: bool,

    /// Create messages from their MIME even when they were backed up with --fidelity full
    /// (by default such messages are imported from their export stream, an exact copy;
    /// that needs MailboxItem.ImportExport.All, without which MIME is used)
    #[arg(long)]
    pub from_mime: bool,

    /// Show what would be restored and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `atlas delete` options.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Delete this snapshot
    #[arg(short = 's', long, value_name = "SNAPSHOT", conflicts_with_all = ["mailbox", "purge"])]
    pub snapshot: Option<String>,

    /// Delete every snapshot of this mailbox
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "purge"
    )]
    pub mailbox: Option<String>,

    /// Delete EVERYTHING, including the encryption key
    #[arg(long)]
    pub purge: bool,

    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Remove only the snapshot records; leave unreferenced data for a later prune
    #[arg(long)]
    pub no_prune: bool,
}

/// `atlas forget` options.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Only these mailboxes (default: every mailbox in the repository)
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailboxes: Vec<String>,

    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,

    /// Keep the newest snapshot of each of the last N days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,

    /// Keep the newest snapshot of each of the last N weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,

    /// Keep the newest snapshot of each of the last N months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,

    /// Keep the newest snapshot of each of the last N years
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,

    /// Keep every snapshot within this long before the newest (e.g. 30d, 8w, 6m, 1y)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,

    /// Accept rules that keep no snapshot at all (e.g. --keep-last 0): every snapshot of
    /// the selected mailboxes is forgotten. Without it such rules are refused (exit 3)
    #[arg(long)]
    pub allow_empty: bool,

    /// Then remove the data no remaining snapshot needs
    #[arg(long)]
    pub prune: bool,

    /// Show what would be removed and write nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// `atlas migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The source is a TypeScript Atlas 1.x repository (the only kind there is so far)
    #[arg(long, required = true)]
    pub from_v1: bool,

    /// Directory holding the v1 bucket's objects (`_meta/dek.enc`, `manifests/`, `data/`,
    /// `attachments/`), e.g. a copy made with `aws s3 sync s3://atlas-<tenant> DIR`
    #[arg(long, value_name = "DIR", required_unless_present = "from_s3_bucket")]
    pub from_dir: Option<std::path::PathBuf>,

    /// Or: the v1 bucket (usually atlas-<tenant>) on the S3 server of the configured
    /// target (same ATLAS_S3_* endpoint and credentials, another bucket)
    #[arg(long, value_name = "BUCKET", conflicts_with = "from_dir")]
    pub from_s3_bucket: Option<String>,

    /// Tenant id the v1 key was created for, when it differs from the configured tenant
    /// (Atlas 1.x mixes it into the key derivation; case-sensitive)
    #[arg(long, value_name = "TENANT")]
    pub from_tenant: Option<String>,

    /// Only this v1 mailbox; repeatable (default: all)
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailboxes: Vec<String>,
}

/// `atlas storage-check` options.
#[derive(Debug, Args)]
pub struct StorageCheckArgs {
    /// Check that this Object Lock mode really works (probe write)
    #[arg(long, value_enum)]
    pub lock_mode: Option<LockModeArg>,

    /// Retention the backups will ask for (reported; the probe itself is kept one minute)
    #[arg(long, value_name = "DAYS", requires = "lock_mode")]
    pub retention_days: Option<u32>,
}

/// `atlas replicate` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").args(["snapshot", "mailbox", "all", "status"]).required(true)))]
pub struct ReplicateArgs {
    /// Only this snapshot (id or unique prefix)
    #[arg(short = 's', long, value_name = "SNAPSHOT", conflicts_with_all = ["mailbox", "all"])]
    pub snapshot: Option<String>,

    /// Every snapshot of this mailbox
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "all"
    )]
    pub mailbox: Option<String>,

    /// Every snapshot in the repository
    #[arg(long)]
    pub all: bool,

    /// List the replication status records instead of copying
    #[arg(long, conflicts_with_all = ["snapshot", "mailbox", "all"])]
    pub status: bool,

    #[command(flatten)]
    pub target: TargetStoreArgs,

    /// Objects copied at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,

    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// Where `atlas replicate` copies to.
#[derive(Debug, Args)]
pub struct TargetStoreArgs {
    /// JSON file with the target's storage settings: "repository" (a directory), or
    /// "s3_endpoint", "s3_access_key", "s3_secret_key", "s3_region", "s3_bucket",
    /// "s3_force_path_style"
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target_repository", "target_s3_endpoint"])]
    pub target_config: Option<std::path::PathBuf>,

    /// Target repository directory
    #[arg(long, value_name = "DIR", conflicts_with = "target_s3_endpoint")]
    pub target_repository: Option<std::path::PathBuf>,

    /// Target S3 endpoint URL (the secret key comes from ATLAS_TARGET_S3_SECRET_KEY)
    #[arg(long, value_name = "URL", requires_all = ["target_s3_bucket", "target_s3_access_key"])]
    pub target_s3_endpoint: Option<String>,

    /// Target S3 bucket
    #[arg(long, value_name = "BUCKET", requires = "target_s3_endpoint")]
    pub target_s3_bucket: Option<String>,

    /// Target S3 access key id
    #[arg(long, value_name = "KEY", requires = "target_s3_endpoint")]
    pub target_s3_access_key: Option<String>,

    /// Target S3 region
    #[arg(long, value_name = "REGION", requires = "target_s3_endpoint")]
    pub target_s3_region: Option<String>,

    /// Use path-style addressing for the target S3 endpoint
    #[arg(long, requires = "target_s3_endpoint")]
    pub target_s3_force_path_style: bool,
}

/// `atlas rehydrate` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selection").args(["snapshot", "mailbox", "all"]).required(true)))]
#[command(group(clap::ArgGroup::new("source").args(["source_config", "source_repository"]).required(true)))]
pub struct RehydrateArgs {
    /// Only this snapshot (id or unique prefix)
    #[arg(short = 's', long, value_name = "SNAPSHOT", conflicts_with_all = ["mailbox", "all"])]
    pub snapshot: Option<String>,

    /// Every snapshot of this mailbox
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "all"
    )]
    pub mailbox: Option<String>,

    /// Every snapshot of the replica
    #[arg(long)]
    pub all: bool,

    /// JSON file with the replica's storage settings (same keys as --target-config of
    /// replicate)
    #[arg(long, value_name = "FILE")]
    pub source_config: Option<std::path::PathBuf>,

    /// Replica repository directory
    #[arg(long, value_name = "DIR")]
    pub source_repository: Option<std::path::PathBuf>,

    /// Objects copied at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,
}

/// Which snapshot a read, save or restore works on: `-s SNAPSHOT`, or `-m MAILBOX` as of its
/// latest snapshot (or `--as-of DATE`). Shared so the three commands take it the same way.
#[derive(Debug, Args)]
pub struct SnapshotChoice {
    /// Snapshot id (or unique prefix)
    #[arg(
        short = 's',
        long,
        value_name = "SNAPSHOT",
        required_unless_present = "mailbox"
    )]
    pub snapshot: Option<String>,

    /// Or: the mailbox, as of its latest snapshot (or --as-of); it need not exist any more
    #[arg(
        short = 'm',
        long = "mailbox",
        value_name = "MAILBOX",
        conflicts_with = "snapshot"
    )]
    pub mailbox: Option<String>,

    /// With -m: the newest snapshot at or before this time: a day (YYYY-MM-DD, local; the
    /// whole day counts), a local time (2026-03-31T18:00) or an RFC 3339 timestamp
    /// (2026-03-31T18:00:00Z)
    #[arg(long, value_name = "DATE", requires = "mailbox")]
    pub as_of: Option<String>,
}

/// What an unattended run leaves behind besides stdout (docs/OPERATIONS.md). Taken by the
/// commands a schedule runs: backup, verify, forget, replicate.
#[derive(Debug, Clone, Default, Args)]
pub struct MonitorArgs {
    /// Also write the run's JSON summary (the --json document, also on failure) to FILE,
    /// atomically
    #[arg(long = "report", value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    /// Write Prometheus metrics of the run to FILE, atomically (text format, for
    /// node_exporter's textfile collector); last-success times survive failed runs
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,

    /// POST the run's JSON summary to URL when done (retried a few times; a failed
    /// notification is a warning and never changes the exit code)
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<url::Url>,
}

impl MonitorArgs {
    /// Whether anything was asked for.
    pub fn any(&self) -> bool {
        self.report.is_some() || self.metrics_file.is_some() || self.notify_url.is_some()
    }
}

impl Command {
    /// The command's name as the metrics spell it, and its monitoring options, for the
    /// commands that take them.
    pub fn monitor(&self) -> Option<(&'static str, &MonitorArgs)> {
        match self {
            Command::Backup(a) => Some(("backup", &a.monitor)),
            Command::Verify(a) => Some(("verify", &a.monitor)),
            Command::Forget(a) => Some(("forget", &a.monitor)),
            Command::Replicate(a) => Some(("replicate", &a.monitor)),
            _ => None,
        }
    }
}

/// `atlas report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Protected means a complete snapshot started at most this long ago: a number and s,
    /// min, h, d or w (36h, 2d, 1w)
    #[arg(long, value_name = "AGE", default_value = "36h")]
    pub max_age: Age,

    /// Also list the tenant's mailboxes (of --kinds) that have no snapshot at all, and mark
    /// those the tenant no longer has (needs Graph credentials)
    #[arg(long)]
    pub compare_tenant: bool,

    /// With --compare-tenant: the kinds of mailbox a tenant-wide backup includes
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "licensed,shared,unlicensed",
        requires = "compare_tenant"
    )]
    pub kinds: Vec<MailboxKindArg>,

    /// Only these mailboxes; repeatable
    #[arg(short = 'm', long = "mailbox", value_name = "MAILBOX")]
    pub mailboxes: Vec<String>,
}

/// A maximum age as typed (`36h`) and its value.
#[derive(Debug, Clone)]
pub struct Age {
    /// As typed.
    pub text: String,
    /// Its value.
    pub duration: chrono::Duration,
}

/// A whole number and a unit — `s`, `min`, `h`, `d` or `w`; `m` is refused as ambiguous
/// between minutes and months.
impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        use chrono::Duration;
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} has no unit (s, min, h, d or w), e.g. 36h"))?;
        let (number, unit) = text.split_at(split);
        let n: i64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a whole number"))?;
        let duration = match unit.trim() {
            "s" => Duration::try_seconds(n),
            "min" => Duration::try_minutes(n),
            "h" => Duration::try_hours(n),
            "d" => Duration::try_days(n),
            "w" => Duration::try_weeks(n),
            "m" => {
                return Err(format!(
                    "{text:?}: write min for minutes (m could be months)"
                ));
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (s, min, h, d or w)"
                ));
            }
        }
        .ok_or_else(|| format!("{text:?} is too long"))?;
        Ok(Self {
            text: text.to_owned(),
            duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Age;

    #[test]
    fn ages_take_a_whole_number_and_a_unit() {
        let age = |t: &str| t.parse::<Age>().map(|a| a.duration);
        assert_eq!(age("36h"), Ok(chrono::Duration::hours(36)));
        assert_eq!(age("2d"), Ok(chrono::Duration::days(2)));
        assert_eq!(age("1w"), Ok(chrono::Duration::weeks(1)));
        assert_eq!(age("90min"), Ok(chrono::Duration::minutes(90)));
        assert_eq!(age("0s"), Ok(chrono::Duration::zero()));
        for bad in ["36", "h", "3m", "1y", "-1h", "1.5h"] {
            assert!(age(bad).is_err(), "{bad}");
        }
    }
}
