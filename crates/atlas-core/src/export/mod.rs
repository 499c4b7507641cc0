//! The standard file formats non-mail items are exported to, from the readable JSON a
//! backup keeps of each (Graph's `event`, `todoTask` and `contact` resources, mailbox
//! configuration): pure functions from [`serde_json::Value`] to bytes, no I/O.
//!
//! - [`ics`]: iCalendar (RFC 5545) — events with recurrence, exceptions, attendees, time
//!   zones, attachments and reminders; To Do tasks as VTODO.
//! - [`vcf`]: vCard 3.0 (RFC 2426) — contacts with their photos.
//! - [`json`]: any item, configuration included, as stable JSON.
//!
//! `service::export` writes archives of these; docs/EXPORT.md documents every mapping and
//! what each format cannot hold. Errors are [`Error::Convert`](crate::Error::Convert) and
//! never quote the item's content (subjects, names, bodies).

pub mod ics;
pub mod json;
mod line;
mod tz;
pub mod vcf;

pub use ics::{Calendar, event_to_ics, task_to_ics};
pub use json::to_json;
pub use vcf::{Cards, Photo, contact_to_vcf};

use serde_json::Value;

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
