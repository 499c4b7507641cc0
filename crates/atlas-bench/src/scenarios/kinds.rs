//! The whole mailbox (issue 14): what each kind of item costs in Graph requests. A tenant
//! whose app may read every kind is backed up in full (MIME for mail; for calendars,
//! contacts, tasks and notes the export stream, fetched 20 per `exportItems` request, and
//! the readable JSON), then incrementally with nothing changed; then its mail alone with
//! `--fidelity full` into a fresh repository, for what the export stream adds per message.
//! Each row carries the client's requests and items per kind ([`Row::kinds`]).

use atlas_core::model::{Fidelity, KindSet};
use atlas_core::ports::FolderOptions;
use atlas_sim::roles;

use super::Sizes;
use crate::error::BenchError;
use crate::harness::{BenchRepo, Tenant, sim_config};
use crate::report::Row;

/// The application permissions that let a backup read every kind (README's table).
const EVERY_KIND: [&str; 9] = [
    roles::USER_READ_ALL,
    roles::MAIL_READ,
    roles::MAILBOX_FOLDER_READ_ALL,
    roles::MAILBOX_ITEM_READ_ALL,
    roles::MAILBOX_ITEM_EXPORT_ALL,
    roles::CALENDARS_READ,
    roles::CONTACTS_READ,
    roles::TASKS_READ_ALL,
    roles::MAILBOX_SETTINGS_READ,
];

/// Runs the scenario on `users` × `messages` (`--quick`: 8 × 100; the simulator adds the
/// same calendars, contacts, tasks, notes and configuration to every mailbox whatever the
/// mail size).
pub async fn run(sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let (users, messages) = (sizes.users, sizes.messages);
    let mut cfg = sim_config(users, messages);
    cfg.granted_roles = EVERY_KIND.iter().map(|r| (*r).to_owned()).collect();
    let t = Tenant::start(&cfg).await?;
    let shape = format!("{users}×{messages}");
    let every_kind = FolderOptions {
        kinds: KindSet::ALL,
        ..FolderOptions::default()
    };

    let r = BenchRepo::local(&t.id).await?;
    rows.push(
        t.backup_with(
            &r,
            "kinds",
            &format!("full, every kind, {shape}"),
            every_kind,
        )
        .await?,
    );
    rows.push(
        t.backup_with(
            &r,
            "kinds",
            &format!("incremental unchanged, every kind, {shape}"),
            every_kind,
        )
        .await?,
    );
    drop(r);

    // Mail alone, MIME and export stream: the stream's cost per message.
    let full = FolderOptions {
        kinds: KindSet::MAIL,
        fidelity: Fidelity::Full,
        ..FolderOptions::default()
    };
    let r = BenchRepo::local(&t.id).await?;
    let mut row = t
        .backup_with(
            &r,
            "kinds",
            &format!("full, mail, --fidelity full, {shape}"),
            full,
        )
        .await?;
    let exports = t.sim.counters().await?.kind("export_items").requests;
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let per_message = exports as f64 / row.messages.max(1) as f64;
    let figure = format!(
        "{exports} exportItems requests for {} messages: {per_message:.3} per message (at most 20 ids per request, one folder per request)",
        row.messages
    );
    row.note = if row.note.is_empty() {
        figure
    } else {
        format!("{figure}; {}", row.note)
    };
    rows.push(row);
    Ok(())
}
