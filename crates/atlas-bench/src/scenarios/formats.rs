//! Format 3 against format 4 (issue 13) in one run: the same tenant backed up into a
//! repository created at each format, then verified with every byte read and one mailbox
//! saved, alternately (3, 4, 3, 4), so both see the same machine load. Format 3 keeps a
//! plaintext SHA-256 of every blob (in the frame and in records); format 4 hashes each
//! piece of content once, with its content id (docs/FORMAT.md §4.3).

use super::Sizes;
use super::browse::{save_eml_zip, verify_read_all};
use crate::error::BenchError;
use crate::harness::{BenchRepo, Tenant, sim_config};
use crate::report::Row;

/// The formats compared: the last one before the single-hash format, and that one.
const FORMATS: [u32; 2] = [3, 4];
/// Rounds of the alternation.
const ROUNDS: usize = 2;

/// Runs the comparison on `users` × `messages` (SPEC's 20 × 300; `--quick` 8 × 100).
pub async fn run(sizes: &Sizes, rows: &mut Vec<Row>) -> Result<(), BenchError> {
    let (users, messages) = if sizes.spec_tenant {
        (20, 300)
    } else {
        (sizes.users, sizes.messages)
    };
    let t = Tenant::start(&sim_config(users, messages)).await?;
    let first = t
        .mailboxes
        .first()
        .ok_or_else(|| BenchError::Incomplete("tenant has no mailbox".into()))?
        .address()
        .to_owned();
    for round in 1..=ROUNDS {
        for format in FORMATS {
            let r = BenchRepo::local_at_format(&t.id, format).await?;
            let tag = format!("format {format} (run {round})");
            let mut row = t
                .backup(&r, "formats", &format!("full {users}×{messages}, {tag}"))
                .await?;
            row.note = format!(
                "same tenant into a format-{format} repository; {}",
                row.note
            );
            rows.push(row);
            let (mut verified, _) =
                verify_read_all(&r, "formats", format!("verify --read-data 100%, {tag}")).await?;
            verified.note = "MB/s of stored bytes read".into();
            rows.push(verified);
            rows.push(
                save_eml_zip(
                    &r,
                    &first,
                    "formats",
                    format!("save eml-zip, one mailbox, {tag}"),
                )
                .await?,
            );
        }
    }
    Ok(())
}
