//! The standard file formats non-mail items are exported to, from the readable JSON a
//! backup keeps of each (Graph's `event`, `todoTask` and `contact` resources, mailbox
//! configuration): pure functions from [`serde_json::Value`] to bytes, no I/O.
//!
//! - [`ics`]: iCalendar (RFC 5545) — events with recurrence, exceptions, attendees, time
//!   zones, attachments and reminders; To Do tasks as VTODO.
//! - [`vcf`]: vCard 3.0 (RFC 2426) — contacts with their photos.
//! - [`json`]: any item, configuration included, as stable JSON.
//! - [`item_file`]: one item of a kind in an [`ItemFormat`] — what `atlas save` calls per
//!   item.
//!
//! `service::export` writes archives of these; docs/EXPORT.md documents every mapping and
//! what each format cannot hold. Errors are [`Error::Convert`](crate::Error::Convert) and
//! never quote the item's content (subjects, names, bodies).

pub mod ics;
pub mod json;
mod line;
pub mod recur;
mod tz;
pub mod vcf;

pub use ics::{Calendar, event_to_ics, task_to_ics};
pub use json::to_json;
pub use recur::{cancelled_occurrences, occurrences};
pub use vcf::{Cards, Photo, contact_to_vcf};

use serde_json::Value;

use crate::error::Result;
use crate::model::ItemKind;

/// A standard format a non-mail item can be exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFormat {
    /// iCalendar: calendar items and tasks.
    Ics,
    /// vCard: contacts.
    Vcf,
    /// Stable JSON: every kind but mail (whose export is its MIME).
    Json,
}

impl ItemFormat {
    /// The file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ics => "ics",
            Self::Vcf => "vcf",
            Self::Json => "json",
        }
    }

    /// Whether items of `kind` have a form in this format (an export skips the others).
    pub fn holds(self, kind: ItemKind) -> bool {
        match self {
            Self::Ics => matches!(kind, ItemKind::Calendar | ItemKind::Task),
            Self::Vcf => kind == ItemKind::Contact,
            Self::Json => !kind.is_mail(),
        }
    }
}

/// One item's file in `format`, from its readable JSON; `None` when its kind has no form
/// in that format (see [`ItemFormat::holds`]). A contact's photo is taken from the JSON
/// (`photo.contentBytes`), where the backup keeps it.
pub fn item_file(kind: ItemKind, format: ItemFormat, json: &Value) -> Result<Option<Vec<u8>>> {
    if !format.holds(kind) {
        return Ok(None);
    }
    Ok(Some(match (format, kind) {
        (ItemFormat::Ics, ItemKind::Task) => task_to_ics(json)?,
        (ItemFormat::Ics, _) => event_to_ics(json)?,
        (ItemFormat::Vcf, _) => contact_to_vcf(json, None)?,
        (ItemFormat::Json, _) => to_json(json)?,
    }))
}

/// The Windows time zone names the iCalendar export converts (zone name, IANA id);
/// other zones are written as floating local time (docs/EXPORT.md, "Time zones").
pub fn known_time_zones() -> impl Iterator<Item = (&'static str, &'static str)> {
    tz::known()
}

/// A string at `field` (a plain key, or a JSON pointer when it starts with `/`).
fn str_at<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    if field.starts_with('/') {
        v.pointer(field)
    } else {
        v.get(field)
    }
    .and_then(Value::as_str)
}

fn convert_error(format: &'static str, reason: impl Into<String>) -> crate::Error {
    crate::Error::Convert {
        format,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_kind_goes_to_the_formats_that_hold_it() {
        let event = json!({"id": "e", "subject": "s", "start": {"dateTime": "2025-01-01T09:00:00", "timeZone": "UTC"}});
        let ics = item_file(ItemKind::Calendar, ItemFormat::Ics, &event)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8(ics).unwrap().contains("BEGIN:VEVENT"));
        let task = json!({"id": "t", "title": "x"});
        let ics = item_file(ItemKind::Task, ItemFormat::Ics, &task)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8(ics).unwrap().contains("BEGIN:VTODO"));
        let contact = json!({"id": "c", "displayName": "A", "photo": {"@odata.mediaContentType": "image/png", "contentBytes": "AQID"}});
        let vcf = item_file(ItemKind::Contact, ItemFormat::Vcf, &contact)
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8(vcf)
                .unwrap()
                .contains("PHOTO;ENCODING=b;TYPE=PNG:AQID")
        );
        assert!(
            item_file(ItemKind::Contact, ItemFormat::Ics, &contact)
                .unwrap()
                .is_none()
        );
        assert!(
            item_file(ItemKind::Note, ItemFormat::Vcf, &contact)
                .unwrap()
                .is_none()
        );
        assert!(
            item_file(ItemKind::Mail, ItemFormat::Json, &contact)
                .unwrap()
                .is_none()
        );
        for kind in [
            ItemKind::Calendar,
            ItemKind::Contact,
            ItemKind::Task,
            ItemKind::Note,
            ItemKind::Config,
        ] {
            assert!(
                item_file(kind, ItemFormat::Json, &contact)
                    .unwrap()
                    .is_some(),
                "{kind}"
            );
        }
        assert_eq!(ItemFormat::Vcf.extension(), "vcf");
    }
}
