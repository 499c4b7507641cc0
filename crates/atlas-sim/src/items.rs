//! Items other than mail — events, contacts, tasks, sticky notes — and the mailbox's
//! configuration (inbox rules, master categories, mailbox settings).
//!
//! An item keeps its readable properties in Graph's own JSON names (`props`: the event,
//! contact or todoTask resource without the ids and timestamps the service computes), so
//! the classic endpoints render and patch them directly, and the export stream carries
//! them whole. Mail messages stay [`Message`](crate::model::Message)s: their MIME is the
//! canonical form.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde_json::{Map, Value, json};

use crate::model::{Attachment, Mailbox};

/// A property of a JSON object, `null` when absent (indexing a `Map` would panic).
pub(crate) fn prop<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    m.get(key).unwrap_or(&NULL)
}

/// Item classes (`mailboxItem.type`, PR_MESSAGE_CLASS).
pub(crate) mod item_class {
    pub const MESSAGE: &str = "IPM.Note";
    pub const EVENT: &str = "IPM.Appointment";
    pub const CONTACT: &str = "IPM.Contact";
    pub const TASK: &str = "IPM.Task";
    pub const NOTE: &str = "IPM.StickyNote";
}

/// A contact's photo.
#[derive(Debug, Clone)]
pub(crate) struct Photo {
    pub content_type: String,
    pub bytes: Arc<[u8]>,
    pub width: u32,
    pub height: u32,
}

/// A changed or cancelled occurrence of a recurring series (an exception).
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    /// Cancelled: the occurrence no longer exists (it is left out of `instances`).
    pub cancelled: bool,
    /// Properties that differ from the series (subject, start, end, location, body, …).
    pub props: Map<String, Value>,
}

/// A non-mail item.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub key: u64,
    pub folder: u64,
    /// Item class, e.g. `IPM.Appointment`.
    pub class: String,
    /// Incremented on every change; drives `changeKey`.
    pub version: u32,
    /// Change sequence of the last change.
    pub seq: u64,
    /// Change sequence at which the item arrived in its folder.
    pub added_seq: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub categories: Vec<String>,
    /// The readable properties, in Graph's names.
    pub props: Map<String, Value>,
    /// File attachments (events, and tasks through their attachments).
    pub attachments: Vec<Attachment>,
    pub photo: Option<Photo>,
    /// Exceptions of a recurring series, by original start (UTC, RFC 3339).
    pub occurrences: BTreeMap<String, Occurrence>,
}

/// An inbox rule (messageRule), its properties in Graph's names.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub key: u64,
    pub props: Map<String, Value>,
}

/// A master category (outlookCategory).
#[derive(Debug, Clone)]
pub(crate) struct Category {
    pub id: String,
    pub display_name: String,
    pub color: String,
}

/// What a mailbox holds beyond mail: its non-mail items and its configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pim {
    pub items: BTreeMap<u64, Item>,
    pub rules: Vec<Rule>,
    pub categories: Vec<Category>,
    /// `mailboxSettings` in Graph's names (`userPurpose` is derived, not stored).
    pub settings: Map<String, Value>,
}

impl Mailbox {
    /// REST id of an item (same form as a message's regular id; items never move).
    pub fn item_id(&self, key: u64) -> String {
        Self::encode_message_id(self.tag, key, 0, false)
    }

    /// Resolves a REST item id to a non-mail item.
    pub fn resolve_item(&self, id: &str) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix("AAMkAGI2")?).ok()?;
        if raw.len() != 17 || raw[0] != b'R' || raw[1..5] != self.tag.to_be_bytes() {
            return None;
        }
        let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
        self.pim.items.contains_key(&key).then_some(key)
    }

    /// Resolves a REST item id to an item of one class (`item_class::EVENT`, …): what
    /// every classic endpoint of one kind does first, so an event's id sent to the
    /// contacts endpoint is "not found", as Graph answers.
    pub fn resolve_item_of(&self, id: &str, class: &str) -> Option<u64> {
        self.resolve_item(id)
            .filter(|k| self.pim.items[k].class == class)
    }

    pub fn item_change_key(&self, item: &Item) -> String {
        let mut raw = b"CQAAABYAAAC".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&item.key.to_be_bytes());
        raw.extend_from_slice(&item.version.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Id of one occurrence of a series: the master and the occurrence's original start.
    pub fn occurrence_id(&self, key: u64, original_start: DateTime<Utc>) -> String {
        let mut raw = b"O".to_vec();
        raw.extend_from_slice(&self.tag.to_be_bytes());
        raw.extend_from_slice(&key.to_be_bytes());
        raw.extend_from_slice(&original_start.timestamp().to_be_bytes());
        format!("AAMkAGI2{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Resolves an occurrence id to (master key, original start).
    pub fn resolve_occurrence(&self, id: &str) -> Option<(u64, DateTime<Utc>)> {
        let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix("AAMkAGI2")?).ok()?;
        if raw.len() != 21 || raw[0] != b'O' || raw[1..5] != self.tag.to_be_bytes() {
            return None;
        }
        let key = u64::from_be_bytes(raw[5..13].try_into().ok()?);
        let ts = i64::from_be_bytes(raw[13..21].try_into().ok()?);
        self.pim.items.contains_key(&key).then_some(())?;
        Some((key, DateTime::from_timestamp(ts, 0)?))
    }

    /// Adds an item; returns its key.
    pub fn add_item(&mut self, mut item: Item) -> u64 {
        let key = self.alloc_key();
        let seq = self.bump();
        item.key = key;
        item.seq = seq;
        item.added_seq = seq;
        self.pim.items.insert(key, item);
        key
    }

    /// Records an in-place change of an item.
    pub fn touch_item(&mut self, key: u64, now: DateTime<Utc>) {
        let seq = self.bump();
        if let Some(i) = self.pim.items.get_mut(&key) {
            i.version += 1;
            i.seq = seq;
            i.modified = now;
        }
    }

    /// Removes an item, leaving a tombstone for delta.
    pub fn remove_item(&mut self, key: u64) -> Option<Item> {
        let i = self.pim.items.remove(&key)?;
        let seq = self.bump();
        self.tombstones.push(crate::model::Tombstone {
            folder: i.folder,
            key,
            location_gen: 0,
            added_seq: i.added_seq,
            seq,
        });
        Some(i)
    }
}

/// Time zones the simulator converts without a time-zone database: Windows names (as
/// Graph uses them) with fixed offsets. Generated mailboxes use only zones without
/// daylight saving time, so every conversion here is exact for them; an unknown zone is
/// treated as UTC.
const ZONES: &[(&str, i32)] = &[
    ("UTC", 0),
    ("Etc/GMT", 0),
    ("Greenwich Standard Time", 0),
    ("Tokyo Standard Time", 9 * 60),
    ("India Standard Time", 5 * 60 + 30),
    ("SA Pacific Standard Time", -5 * 60),
    ("Arabian Standard Time", 4 * 60),
    ("Singapore Standard Time", 8 * 60),
    ("E. Africa Standard Time", 3 * 60),
    ("Hawaiian Standard Time", -10 * 60),
];

/// UTC offset of a zone in minutes (0 for UTC and unknown zones).
pub(crate) fn zone_offset(zone: &str) -> i32 {
    ZONES
        .iter()
        .find(|(z, _)| z.eq_ignore_ascii_case(zone))
        .map_or(0, |(_, o)| *o)
}

/// The zones generated mailboxes use.
pub(crate) const GENERATED_ZONES: &[&str] = &[
    "UTC",
    "Tokyo Standard Time",
    "India Standard Time",
    "SA Pacific Standard Time",
];

/// Graph's `dateTimeTimeZone.dateTime` format.
pub(crate) fn graph_local(t: NaiveDateTime) -> String {
    // Seven fractional digits, as Graph writes them (chrono has no `%.7f`).
    format!(
        "{}.{:07}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.and_utc().timestamp_subsec_nanos() / 100
    )
}

/// Parses `dateTimeTimeZone` (`{"dateTime", "timeZone"}`) to UTC.
pub(crate) fn parse_dttz(v: &Value) -> Option<DateTime<Utc>> {
    let local = parse_local(v["dateTime"].as_str()?)?;
    let zone = v["timeZone"].as_str().unwrap_or("UTC");
    Some((local - Duration::minutes(i64::from(zone_offset(zone)))).and_utc())
}

pub(crate) fn parse_local(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })
}

/// `dateTimeTimeZone` of a UTC instant in `zone`.
pub(crate) fn dttz(t: DateTime<Utc>, zone: &str) -> Value {
    let local = t.naive_utc() + Duration::minutes(i64::from(zone_offset(zone)));
    json!({"dateTime": graph_local(local), "timeZone": zone})
}

/// An event's start and end in UTC.
pub(crate) fn event_span(props: &Map<String, Value>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((
        parse_dttz(props.get("start")?)?,
        parse_dttz(props.get("end")?)?,
    ))
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "monday" => Weekday::Mon,
        "tuesday" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" => Weekday::Thu,
        "friday" => Weekday::Fri,
        "saturday" => Weekday::Sat,
        "sunday" => Weekday::Sun,
        _ => return None,
    })
}

/// Start instants (UTC) of a series' occurrences from its `recurrence`
/// (patternedRecurrence: `daily`, `weekly`, `absoluteMonthly`, `absoluteYearly`; ranges
/// `endDate`, `numbered`, `noEnd`), up to `until` and at most `cap` of them. The pattern
/// is evaluated in the event's start zone, as Outlook does.
pub(crate) fn occurrence_starts(
    props: &Map<String, Value>,
    until: DateTime<Utc>,
    cap: usize,
) -> Vec<DateTime<Utc>> {
    let Some(rec) = props.get("recurrence").filter(|r| r.is_object()) else {
        return Vec::new();
    };
    let Some(start_v) = props.get("start") else {
        return Vec::new();
    };
    let zone = start_v["timeZone"].as_str().unwrap_or("UTC").to_owned();
    let offset = Duration::minutes(i64::from(zone_offset(&zone)));
    let Some(first_local) = start_v["dateTime"].as_str().and_then(parse_local) else {
        return Vec::new();
    };
    let time = first_local.time();
    let pattern = &rec["pattern"];
    let range = &rec["range"];
    let interval = pattern["interval"].as_u64().unwrap_or(1).max(1);
    let range_start = range["startDate"]
        .as_str()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or(first_local.date());
    let end_date = match range["type"].as_str() {
        Some("endDate") => range["endDate"]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        _ => None,
    };
    let numbered = match range["type"].as_str() {
        Some("numbered") => {
            usize::try_from(range["numberOfOccurrences"].as_u64().unwrap_or(1)).unwrap_or(1)
        }
        _ => usize::MAX,
    };
    let days: Vec<Weekday> = pattern["daysOfWeek"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().and_then(weekday))
                .collect()
        })
        .unwrap_or_default();
    let kind = pattern["type"].as_str().unwrap_or("daily");
    let day_of_month = u32::try_from(pattern["dayOfMonth"].as_u64().unwrap_or(1)).unwrap_or(1);
    let month = u32::try_from(pattern["month"].as_u64().unwrap_or(1)).unwrap_or(1);
    let until_local = until.naive_utc() + offset;
    let mut out = Vec::new();
    let mut date = range_start;
    // Walk day by day: simple, and bounded by `until` and `cap`.
    let limit = cap.min(numbered);
    let mut guard = 0u32;
    while out.len() < limit && guard < 366 * 30 {
        guard += 1;
        if end_date.is_some_and(|e| date > e) || date.and_time(time) > until_local {
            break;
        }
        let since = (date - range_start).num_days();
        let hit = match kind {
            "daily" => since % i64::try_from(interval).unwrap_or(1) == 0,
            "weekly" => {
                let week = since.div_euclid(7);
                let wanted = if days.is_empty() {
                    vec![range_start.weekday()]
                } else {
                    days.clone()
                };
                week % i64::try_from(interval).unwrap_or(1) == 0 && wanted.contains(&date.weekday())
            }
            "absoluteMonthly" => {
                let months = i64::from(date.year() - range_start.year()) * 12
                    + i64::from(date.month())
                    - i64::from(range_start.month());
                date.day() == day_of_month && months % i64::try_from(interval).unwrap_or(1) == 0
            }
            "absoluteYearly" => date.day() == day_of_month && date.month() == month,
            _ => false,
        };
        if hit {
            out.push((date.and_time(time) - offset).and_utc());
        }
        date = match date.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    out
}

/// The mailbox owner's view of one occurrence of a series: the series' properties with
/// the occurrence's start and end, and the exception's own properties over them.
pub(crate) fn occurrence_props(
    master: &Item,
    original_start: DateTime<Utc>,
) -> Option<(Map<String, Value>, bool)> {
    let (start, end) = event_span(&master.props)?;
    let zone = prop(&master.props, "start")["timeZone"]
        .as_str()
        .unwrap_or("UTC")
        .to_owned();
    let end_zone = prop(&master.props, "end")["timeZone"]
        .as_str()
        .unwrap_or("UTC")
        .to_owned();
    let mut props = master.props.clone();
    props.remove("recurrence");
    props.insert("start".into(), dttz(original_start, &zone));
    props.insert(
        "end".into(),
        dttz(original_start + (end - start), &end_zone),
    );
    let key = ts_key(original_start);
    let exception = match master.occurrences.get(&key) {
        Some(o) if o.cancelled => return None,
        Some(o) => {
            for (k, v) in &o.props {
                props.insert(k.clone(), v.clone());
            }
            true
        }
        None => false,
    };
    Some((props, exception))
}

/// Key of an occurrence in [`Item::occurrences`].
pub(crate) fn ts_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rec: &Value) -> Map<String, Value> {
        let v = json!({
            "start": {"dateTime": "2025-03-03T09:00:00.0000000", "timeZone": "Tokyo Standard Time"},
            "end": {"dateTime": "2025-03-03T10:00:00.0000000", "timeZone": "Tokyo Standard Time"},
            "recurrence": rec,
        });
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn weekly_series_expand_in_their_own_zone() {
        let p = event(&json!({
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"]},
            "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 4},
        }));
        let until = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let starts: Vec<String> = occurrence_starts(&p, until, 100)
            .into_iter()
            .map(ts_key)
            .collect();
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            starts,
            [
                "2025-03-03T00:00:00Z",
                "2025-03-05T00:00:00Z",
                "2025-03-10T00:00:00Z",
                "2025-03-12T00:00:00Z"
            ]
        );
    }

    #[test]
    fn daily_and_monthly_series_stop_at_their_end_date() {
        let p = event(&json!({
            "pattern": {"type": "daily", "interval": 2},
            "range": {"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-03-08"},
        }));
        let until = Utc::now() + Duration::days(3650);
        assert_eq!(occurrence_starts(&p, until, 100).len(), 3);
        let p = event(&json!({
            "pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 3},
            "range": {"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-06-30"},
        }));
        assert_eq!(occurrence_starts(&p, until, 100).len(), 4);
    }
}
