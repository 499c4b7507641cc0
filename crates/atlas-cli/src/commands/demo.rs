//! `atlas demo`: the whole job end to end with no configuration — a simulated tenant
//! in-process, a throw-away local repository with a generated passphrase — so a first-time
//! user sees backup → change → incremental backup → status → verify → restore → export work
//! in under a minute, for the whole mailbox: the simulated app holds the permissions of
//! every kind, so the same runs keep calendars and contacts next to mail, and the story
//! ends by showing them and saving them as `.ics` and `.vcf`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atlas_core::model::{ItemKind, KindSet, MailboxId};
use atlas_core::ports::MailTarget;
use atlas_core::ports::{
    BlobStore, Clock, FolderOptions, MailSource, MailboxKind, Reporter, SystemClock,
};
use atlas_core::repo::{KdfChoice, Passphrase, Repository};
use atlas_core::service::catalog::{SnapshotSelector, stats_of_kind};
use atlas_core::service::export::{ExportFormat, SaveOptions, save_to_path};
use atlas_core::service::restore::{self, Destination, RestoreOptions};
use atlas_core::service::status::mailbox_status;
use atlas_core::service::{BackupOptions, Cancel, MailboxOutcome, backup_mailboxes};
use atlas_graph::{Credential, GraphClient, GraphConfig, GraphSource, GraphTarget, SecretString};
use atlas_sim::{MessageUpdate, NewMessage, SimConfig, Simulator, roles};
use atlas_store::LocalStore;
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use serde::Serialize;

use crate::cli::{DemoArgs, GlobalArgs};
use crate::console::note;
use crate::exit::{Exit, UsageError};
use crate::output::{self, Output, sanitize};
use crate::progress::{Mode, Progress};

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct RunFigures {
    mailboxes: usize,
    complete: usize,
    downloaded: u64,
    reused: u64,
    removed: u64,
    bytes_downloaded: u64,
    duration_ms: u64,
    /// Items in the new snapshots, by kind (`mail`, `calendar`, `contacts`, …).
    items_by_kind: std::collections::BTreeMap<&'static str, u64>,
}

/// One kind of one mailbox as the demo shows it: what `atlas stats --kind` reports of the
/// newest snapshot, and the file `atlas save --format ics|vcf` wrote.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KindShown {
    kind: &'static str,
    /// Folders of the kind (calendars, contact folders), by path.
    folders: Vec<String>,
    /// Items in them.
    items: u64,
    /// The export written (`.ics` or `.vcf` files in a zip).
    saved_to: String,
    /// Items written to it.
    saved_items: usize,
}

#[allow(clippy::struct_excessive_bools)] // A flat report of yes/no outcomes, for --json.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DemoReport {
    repository: String,
    kept: bool,
    /// With `--keep`: the `.env` file holding the repository's settings and passphrase.
    #[serde(skip_serializing_if = "Option::is_none")]
    settings_file: Option<String>,
    full_backup: RunFigures,
    changes: Vec<String>,
    pending_before_incremental: u64,
    incremental_backup: RunFigures,
    up_to_date_after: bool,
    snapshots_verified: usize,
    verify_problems: usize,
    repository_objects: usize,
    repository_bytes: u64,
    restored_messages: u64,
    restore_complete: bool,
    exported_messages: usize,
    /// The changed mailbox's calendars and contacts, shown and saved.
    kinds_shown: Vec<KindShown>,
    /// Where the exports were written (inside `--keep DIR`, or a temporary directory
    /// removed at the end).
    exports_dir: String,
    ok: bool,
}

fn figures(outcomes: &[MailboxOutcome], started: Instant) -> RunFigures {
    let mut f = RunFigures {
        mailboxes: outcomes.len(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..RunFigures::default()
    };
    let mut bytes = 0;
    for o in outcomes {
        if let Ok(s) = &o.result {
            f.complete += usize::from(s.complete);
            f.downloaded += s.downloaded;
            f.reused += s.reused;
            f.removed += s.removed;
            bytes += s.bytes_downloaded;
            for folder in &s.folders {
                *f.items_by_kind.entry(folder.kind.name()).or_default() += folder.stored;
            }
        }
    }
    f.bytes_downloaded = bytes;
    f
}

/// `--keep DIR`: a new directory, or an empty one; anything else is refused before
/// anything is written (the demo never mixes its files into, or replaces, someone's).
fn prepare_keep_dir(keep: &Path) -> anyhow::Result<&Path> {
    match std::fs::read_dir(keep) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(UsageError(format!(
                    "--keep {}: the directory is not empty; give a new or empty directory",
                    sanitize(&keep.display().to_string())
                ))
                .into());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(keep)
                .with_context(|| format!("creating {}", keep.display()))?;
        }
        Err(e) => {
            return Err(UsageError(format!(
                "--keep {}: {e}",
                sanitize(&keep.display().to_string())
            ))
            .into());
        }
    }
    Ok(keep)
}

/// Write `DIR/.env` (mode 0600): the settings that open the kept repository, passphrase
/// included. The passphrase is random and shown nowhere else, so without this file the
/// kept repository could never be opened; `.env` in the working directory is read by
/// every atlas command, so `cd DIR && atlas list` just works.
fn write_settings(
    keep: &Path,
    repository: &Path,
    tenant: &str,
    passphrase: &str,
) -> anyhow::Result<PathBuf> {
    let file = keep.join(".env");
    let repository = std::path::absolute(repository)
        .with_context(|| format!("resolving {}", repository.display()))?;
    // dotenv: single quotes take the value literally; a value with a quote of its own goes
    // in double quotes with `\`, `"` and `$` (substitution) escaped.
    let quoted = |v: &str| {
        if v.contains('\'') {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$");
            format!("\"{escaped}\"")
        } else {
            format!("'{v}'")
        }
    };
    let text = format!(
        "# Written by `atlas demo --keep`: how to open the demo repository in this directory.\n\
         # The passphrase below is the only key to it; keep this file private.\n\
         ATLAS_REPOSITORY={}\n\
         ATLAS_TENANT_ID={}\n\
         ATLAS_ENCRYPTION_PASSPHRASE={}\n",
        quoted(&repository.display().to_string()),
        quoted(tenant),
        quoted(passphrase)
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

fn say(output: Output, text: &str) {
    if !output.is_json() {
        note!("{text}");
    }
}

/// `240 messages, 42 calendar items, …`: the items of a run by kind, in report order.
fn kinds_line(by_kind: &std::collections::BTreeMap<&'static str, u64>) -> String {
    let label = |kind: ItemKind| match kind {
        ItemKind::Mail => "messages",
        ItemKind::Calendar => "calendar items",
        ItemKind::Contact => "contacts",
        ItemKind::Task => "tasks",
        ItemKind::Note => "sticky notes",
        ItemKind::Config => "configuration items",
        _ => "other items",
    };
    let parts: Vec<String> = ItemKind::ALL
        .into_iter()
        .filter_map(|k| by_kind.get(k.name()).map(|n| format!("{n} {}", label(k))))
        .collect();
    parts.join(", ")
}

/// What `atlas stats --kind KIND -m MAILBOX` reports of the newest snapshot, then
/// `atlas save --format FORMAT --kind KIND` of it into `path`; and whether every item
/// was written.
async fn show_and_save(
    repo: &Repository,
    mailbox: &MailboxId,
    snapshot: &SnapshotSelector,
    kind: ItemKind,
    format: ExportFormat,
    path: &Path,
) -> anyhow::Result<(KindShown, bool)> {
    let stats = stats_of_kind(repo, Some(mailbox), Some(kind))
        .await
        .with_context(|| format!("reading the statistics of {kind}"))?;
    let saved = save_to_path(
        repo,
        &SaveOptions {
            snapshot: snapshot.clone(),
            folder: None,
            message: None,
            kind: Some(kind),
            format,
            skip_verify: false,
            reporter: Arc::new(atlas_core::ports::NullReporter),
        },
        path,
        false,
    )
    .await
    .with_context(|| format!("saving {kind} as {}", format.name()))?;
    Ok((
        KindShown {
            kind: kind.name(),
            items: stats.folders.iter().map(|f| f.messages).sum(),
            folders: stats.folders.into_iter().map(|f| f.folder).collect(),
            saved_to: saved
                .output
                .as_deref()
                .unwrap_or(path)
                .display()
                .to_string(),
            saved_items: saved.messages,
        },
        saved.is_complete(),
    ))
}

/// `atlas demo`.
#[allow(clippy::too_many_lines)] // A narrated script, step by step.
pub async fn demo(global: &GlobalArgs, args: &DemoArgs, output: Output) -> anyhow::Result<Exit> {
    let mut config = SimConfig {
        users: usize::from(args.users),
        messages_per_user: args.messages_per_user as usize,
        ..SimConfig::default()
    };
    // Every kind's read permissions (README's table), next to the mail ones the simulator
    // grants by default: the demo's backups then keep the whole mailbox.
    config.granted_roles.extend(
        [
            roles::MAILBOX_FOLDER_READ_ALL,
            roles::MAILBOX_ITEM_READ_ALL,
            roles::MAILBOX_ITEM_EXPORT_ALL,
            roles::CALENDARS_READ,
            roles::CONTACTS_READ,
            roles::TASKS_READ_ALL,
            roles::MAILBOX_SETTINGS_READ,
        ]
        .map(str::to_owned),
    );
    let sim = Simulator::start(config)
        .await
        .context("starting the simulated tenant")?;
    say(
        output,
        &format!(
            "1. Started a simulated Microsoft 365 tenant at {} ({} users × {} messages).",
            sim.base_url(),
            args.users,
            args.messages_per_user
        ),
    );

    // The repository: a temporary directory unless --keep names one, in which case the
    // repository and the settings to open it go into that (new or empty) directory.
    let tmp;
    let dir = if let Some(keep) = &args.keep {
        prepare_keep_dir(keep)?.join("repository")
    } else {
        tmp = tempfile::tempdir().context("creating a temporary directory")?;
        tmp.path().join("repository")
    };
    let passphrase: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.clone()));
    let repo = Repository::init(
        Arc::clone(&store),
        &sim.tenant_id(),
        &Passphrase::new(passphrase.clone()),
        KdfChoice::default(),
    )
    .await
    .context("creating the demo repository")?;
    crate::upkeep::track(&repo);
    let settings_file = match &args.keep {
        Some(keep) => Some(write_settings(keep, &dir, &sim.tenant_id(), &passphrase)?),
        None => None,
    };
    say(
        output,
        &format!(
            "2. Created an encrypted repository in {} (random passphrase, scrypt-wrapped key).",
            dir.display()
        ),
    );

    let client = GraphClient::new(
        GraphConfig::new(
            sim.tenant_id(),
            sim.client_id(),
            Credential::Secret(SecretString::new(sim.client_secret())),
        )
        .with_endpoints(sim.base_url(), sim.base_url()),
    )
    .context("setting up the Graph client")?;
    let source = Arc::new(GraphSource::new(client.clone()));
    let mailboxes: Vec<_> = source
        .list_mailboxes()
        .await
        .context("listing mailboxes")?
        .into_iter()
        .filter(|m| matches!(m.kind, MailboxKind::Licensed | MailboxKind::Shared))
        .collect();
    let mut opts = BackupOptions {
        lease_owner: "atlas demo".into(),
        tool: format!("atlas {}", env!("CARGO_PKG_VERSION")),
        ..BackupOptions::default()
    };
    opts.folder_options.kinds = KindSet::ALL;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cancel = Arc::new(Cancel::new());
    let mode = Mode::detect(output.is_json(), global.quiet);

    // Full backup of the tenant.
    say(
        output,
        &format!("3. Full backup of {} mailboxes…", mailboxes.len()),
    );
    let started = Instant::now();
    let progress = Arc::new(Progress::new(mode, Some(client.clone()), mailboxes.len()));
    let outcomes = backup_mailboxes(
        &repo,
        source.clone(),
        mailboxes.clone(),
        &opts,
        4,
        Arc::clone(&clock),
        Arc::clone(&progress) as Arc<dyn Reporter>,
        Arc::clone(&cancel),
    )
    .await;
    progress.finish();
    let full = figures(&outcomes, started);
    for o in &outcomes {
        if let Err(e) = &o.result {
            anyhow::bail!("backup of {} failed: {e}", sanitize(&o.mailbox));
        }
    }
    say(
        output,
        &format!(
            "   {} ({}) from {} mailboxes in {}; {} of {} snapshots complete.",
            kinds_line(&full.items_by_kind),
            output::size(full.bytes_downloaded),
            full.mailboxes,
            output::duration(Duration::from_millis(full.duration_ms)),
            full.complete,
            full.mailboxes
        ),
    );

    // Change the tenant the way users do.
    let user = mailboxes
        .iter()
        .find(|m| m.kind == MailboxKind::Licensed)
        .context("the demo tenant has no licensed mailbox")?
        .clone();
    let dump = sim.dump_mailbox(user.address())?;
    let mut changes = Vec::new();
    sim.add_message(
        user.address(),
        "inbox",
        NewMessage::text("Quarterly numbers (new)", "Here are the new figures."),
    )?;
    sim.add_message(
        user.address(),
        "inbox",
        NewMessage::text("Lunch on Friday?", "Shall we?"),
    )?;
    changes.push("2 new messages in Inbox".to_owned());
    if let Some(m) = dump.messages.first() {
        sim.update_message(
            user.address(),
            &m.id,
            &MessageUpdate {
                is_read: Some(!m.is_read),
                flag_status: Some("flagged".into()),
                categories: Some(vec!["Red category".into()]),
            },
        )?;
        changes.push("1 message flagged, categorised and its read state flipped".into());
    }
    if let Some(m) = dump.messages.get(1) {
        sim.move_message(user.address(), &m.id, "archive")?;
        changes.push("1 message moved to Archive".into());
    }
    if let Some(m) = dump.messages.get(2) {
        sim.delete_message(user.address(), &m.id)?;
        changes.push("1 message deleted".into());
    }
    say(
        output,
        &format!(
            "4. Changed mailbox {}: {}.",
            sanitize(user.address()),
            changes.join(", ")
        ),
    );

    let pending_report =
        mailbox_status(&repo, source.as_ref(), &user, FolderOptions::default(), 200).await?;
    let p = pending_report.pending;
    let pending = p.new + p.changed + p.deleted;
    say(
        output,
        &format!(
            "5. atlas status sees {} new, {} changed and {} deleted message(s) (without downloading or writing anything).",
            p.new, p.changed, p.deleted
        ),
    );

    say(output, "6. Incremental backup…");
    let started = Instant::now();
    let progress = Arc::new(Progress::new(mode, Some(client.clone()), mailboxes.len()));
    let outcomes = backup_mailboxes(
        &repo,
        source.clone(),
        mailboxes.clone(),
        &opts,
        4,
        clock,
        Arc::clone(&progress) as Arc<dyn Reporter>,
        cancel,
    )
    .await;
    progress.finish();
    let incr = figures(&outcomes, started);
    say(
        output,
        &format!(
            "   downloaded {} new item(s); {} item(s) already stored (changed or moved messages, configuration read again) updated without re-downloading; {} removal(s) recorded; {}.",
            incr.downloaded,
            incr.reused,
            incr.removed,
            output::duration(Duration::from_millis(incr.duration_ms))
        ),
    );
    let after =
        mailbox_status(&repo, source.as_ref(), &user, FolderOptions::default(), 200).await?;
    say(
        output,
        &format!(
            "7. atlas status: {}.",
            if after.is_up_to_date() {
                "every folder up to date"
            } else {
                "changes still pending"
            }
        ),
    );

    // Verify every mailbox's snapshots.
    let mut verified = 0;
    let mut problems = 0;
    for m in &mailboxes {
        for info in repo.list_snapshots(&m.id.clone()).await? {
            let report = repo.verify_snapshot(info.id).await?;
            verified += 1;
            problems += report.problems.len();
        }
    }
    let objects = store.list("").await?;
    let stored: u64 = objects.iter().map(|o| o.size).sum();
    say(
        output,
        &format!(
            "8. Verified {verified} snapshots: {}. The repository holds {} objects, {} (compressed, deduplicated, encrypted).",
            if problems == 0 {
                "every object decrypts and matches its checksum".to_owned()
            } else {
                format!("{problems} problem(s)")
            },
            objects.len(),
            output::size(stored)
        ),
    );

    // Restore the changed mailbox into another one, as received mail.
    let other = mailboxes
        .iter()
        .find(|m| m.address() != user.address())
        .context("the demo tenant needs a second mailbox")?
        .clone();
    let selector = SnapshotSelector::Latest {
        mailbox: user.id.clone(),
        as_of: None,
    };
    let mut restore_opts = RestoreOptions::new(selector.clone());
    restore_opts.target = Some(other.address().to_owned());
    restore_opts.destination = Destination::NamedRoot("Restored by atlas demo".into());
    // Mail, as received mail: the other kinds go through import sessions, which need a
    // permission the demo's app is not given (README, permissions).
    restore_opts.kinds = KindSet::MAIL;
    let restore_plan = restore::plan(&repo, &restore_opts).await?;
    let target: Arc<dyn MailTarget> = Arc::new(GraphTarget::new(client.clone()));
    let restored = restore::execute(
        &restore_plan,
        &repo,
        target,
        &atlas_core::ports::NullReporter,
        &Cancel::new(),
    )
    .await
    .context("restoring")?;
    say(
        output,
        &format!(
            "9. Restored {} into {} under \"Restored by atlas demo\": {} message(s) created as received mail, every folder verified{}.",
            sanitize(user.address()),
            sanitize(other.address()),
            restored.created,
            if restored.complete {
                ""
            } else {
                " (with shortfalls)"
            }
        ),
    );

    // Export the same mailbox to a zip of .eml files: into DIR/exports with --keep, else a
    // temporary directory removed at the end.
    let export_tmp;
    let export_dir = if let Some(keep) = &args.keep {
        let d = keep.join("exports");
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        d
    } else {
        export_tmp = tempfile::Builder::new()
            .prefix("atlas-demo-export-")
            .tempdir()
            .context("creating a directory for the export")?;
        export_tmp.path().to_path_buf()
    };
    let zip = export_dir.join("demo.zip");
    let saved = save_to_path(
        &repo,
        &SaveOptions {
            snapshot: selector.clone(),
            folder: None,
            message: None,
            kind: Some(ItemKind::Mail),
            format: ExportFormat::EmlZip,
            skip_verify: false,
            reporter: Arc::new(atlas_core::ports::NullReporter),
        },
        &zip,
        false,
    )
    .await
    .context("exporting")?;
    say(
        output,
        &format!(
            "10. Exported {} message(s) of {} to a zip of .eml files (stored MIME byte for byte, checksums verified).",
            saved.messages,
            sanitize(user.address())
        ),
    );

    // The same snapshot holds the mailbox's calendars and contacts: shown as `atlas stats
    // --kind` shows them, and saved as `atlas save --format ics|vcf` saves them.
    let mut kinds_shown = Vec::new();
    let mut kinds_saved = true;
    for (kind, format, file) in [
        (ItemKind::Calendar, ExportFormat::Ics, "calendar.zip"),
        (ItemKind::Contact, ExportFormat::Vcf, "contacts.zip"),
    ] {
        let (shown, complete) = show_and_save(
            &repo,
            &user.id,
            &selector,
            kind,
            format,
            &export_dir.join(file),
        )
        .await?;
        kinds_saved &= complete;
        kinds_shown.push(shown);
    }
    let summary: Vec<String> = kinds_shown
        .iter()
        .map(|k| {
            let (items, folders) = if k.kind == "calendar" {
                ("calendar items", "calendars")
            } else {
                ("contacts", "contact folders")
            };
            format!(
                "{} {items} in {} {folders} ({})",
                k.items,
                k.folders.len(),
                k.folders
                    .iter()
                    .map(|f| sanitize(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    say(
        output,
        &format!(
            "11. The same snapshot of {} holds its calendars and contacts (atlas stats --kind calendar, --kind contacts): {}.",
            sanitize(user.address()),
            summary.join("; ")
        ),
    );
    let files: Vec<String> = kinds_shown
        .iter()
        .map(|k| format!("{} item(s) to {}", k.saved_items, sanitize(&k.saved_to)))
        .collect();
    say(
        output,
        &format!(
            "12. Saved them as iCalendar and vCard files (atlas save --format ics, --format vcf): {}{}.",
            files.join(" and "),
            if args.keep.is_some() {
                ""
            } else {
                " (temporary: removed at the end; --keep DIR keeps them in DIR/exports)"
            }
        ),
    );

    let ok = problems == 0
        && kinds_saved
        && full.complete == full.mailboxes
        && incr.complete == incr.mailboxes
        && after.is_up_to_date()
        && restored.complete
        && saved.is_complete();
    let report = DemoReport {
        repository: dir.display().to_string(),
        kept: args.keep.is_some(),
        settings_file: settings_file.as_ref().map(|f| f.display().to_string()),
        full_backup: full,
        changes,
        pending_before_incremental: pending,
        incremental_backup: incr,
        up_to_date_after: after.is_up_to_date(),
        snapshots_verified: verified,
        verify_problems: problems,
        repository_objects: objects.len(),
        repository_bytes: stored,
        restored_messages: restored.created,
        restore_complete: restored.complete,
        exported_messages: saved.messages,
        kinds_shown,
        exports_dir: export_dir.display().to_string(),
        ok,
    };
    output.result(&report, || {
        let mut s = String::new();
        let _ = write!(
            s,
            "Demo {}.",
            if ok {
                "finished: backup, change, incremental backup, status, verify, restore and export all worked, for mail, calendars and contacts"
            } else {
                "finished with problems (see above)"
            }
        );
        if let (Some(keep), Some(file)) = (&args.keep, &report.settings_file) {
            let _ = write!(
                s,
                "\nThe repository was kept in {}. Its settings, passphrase included, are in {} \
                 (readable only by you; without the passphrase the repository cannot be read). \
                 To use it: cd {} && atlas list",
                sanitize(&report.repository),
                sanitize(file),
                sanitize(&keep.display().to_string())
            );
        }
        s
    })?;
    sim.shutdown();
    Ok(if ok { Exit::Success } else { Exit::Partial })
}
