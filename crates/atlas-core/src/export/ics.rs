//! iCalendar (RFC 5545) from Graph's readable JSON: events (`event` resource) become
//! VEVENTs, To Do tasks (`todoTask`) VTODOs, in one VCALENDAR with a VTIMEZONE for every
//! zone used. docs/EXPORT.md lists the mapping property by property.
//!
//! Beside the resource's own properties an event's document may carry what Graph serves
//! on other requests, under Graph's names: `attachments` (file attachments with
//! `contentBytes`), `instances` or `exceptionOccurrences` (the series' changed
//! occurrences, `type: exception`, each with `originalStart`) and `cancelledOccurrences`
//! (the original starts of deleted occurrences: an RFC 3339 instant, or Graph's
//! `OID.<series id>.<yyyy-mm-dd>`). Changed occurrences become VEVENTs with the series' UID
//! and a RECURRENCE-ID, deleted ones EXDATEs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::Value;

use super::line::{Lines, escape_text};
use super::tz::{Tz, Zone, lookup, weekday_code};
use super::{convert_error, str_at};
use crate::error::Result;

const FORMAT: &str = "iCalendar";

/// A calendar being written: add events and tasks, then [`Calendar::finish`].
#[derive(Debug)]
pub struct Calendar {
    name: Option<String>,
    body: Lines,
    zones: BTreeMap<&'static str, &'static Zone>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Calendar {
    /// An empty calendar; `name` becomes `X-WR-CALNAME`, the name calendar applications
    /// show for an imported file.
    pub fn new(name: Option<&str>) -> Self {
        Self {
            name: name.map(str::to_owned),
            body: Lines::new(),
            zones: BTreeMap::new(),
        }
    }

    /// Adds a single event or a series (with its exceptions and cancelled occurrences).
    /// On error nothing of the event is added.
    pub fn add_event(&mut self, event: &Value) -> Result<()> {
        let mut l = Lines::new();
        let mut zones = BTreeMap::new();
        write_event(&mut l, &mut zones, event)?;
        self.body.append(&l);
        self.zones.extend(zones);
        Ok(())
    }

    /// Adds a To Do task. On error nothing of the task is added.
    pub fn add_task(&mut self, task: &Value) -> Result<()> {
        let mut l = Lines::new();
        let mut zones = BTreeMap::new();
        write_task(&mut l, &mut zones, task)?;
        self.body.append(&l);
        self.zones.extend(zones);
        Ok(())
    }

    /// The calendar's bytes (UTF-8, CRLF line ends).
    pub fn finish(self) -> Vec<u8> {
        let mut l = Lines::new();
        l.begin("VCALENDAR");
        l.raw("VERSION", &[], "2.0");
        l.raw(
            "PRODID",
            &[],
            concat!("-//Atlas//Atlas ", env!("CARGO_PKG_VERSION"), "//EN"),
        );
        l.raw("CALSCALE", &[], "GREGORIAN");
        if let Some(name) = &self.name {
            l.text("X-WR-CALNAME", &[], name);
        }
        for zone in self.zones.values() {
            zone.write_vtimezone(&mut l);
        }
        l.append(&self.body);
        l.end("VCALENDAR");
        l.finish()
    }
}

/// One event (with its exceptions) as a whole calendar file.
pub fn event_to_ics(event: &Value) -> Result<Vec<u8>> {
    let mut c = Calendar::new(None);
    c.add_event(event)?;
    Ok(c.finish())
}

/// One task as a whole calendar file.
pub fn task_to_ics(task: &Value) -> Result<Vec<u8>> {
    let mut c = Calendar::new(None);
    c.add_task(task)?;
    Ok(c.finish())
}

fn err(reason: impl Into<String>) -> crate::Error {
    convert_error(FORMAT, reason)
}

type Zones = BTreeMap<&'static str, &'static Zone>;

/// A date or time as iCalendar writes it.
#[derive(Debug, Clone, Copy)]
enum When {
    /// `VALUE=DATE` (all-day events, day-only tasks).
    Date(NaiveDate),
    /// UTC, `…Z`.
    Utc(NaiveDateTime),
    /// Wall clock in a known zone: `TZID=<IANA>`.
    Local(&'static Zone, NaiveDateTime),
    /// Wall clock in a zone this build does not know: floating time, exactly as Graph gave
    /// it.
    Floating(NaiveDateTime),
}

fn stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

impl When {
    fn write(self, l: &mut Lines, zones: &mut Zones, name: &str) {
        match self {
            When::Date(d) => l.raw(name, &[("VALUE", "DATE")], &d.format("%Y%m%d").to_string()),
            When::Utc(t) => l.raw(name, &[], &format!("{}Z", stamp(t))),
            When::Local(z, t) => {
                zones.insert(z.iana, z);
                l.raw(name, &[("TZID", z.iana)], &stamp(t));
            }
            When::Floating(t) => l.raw(name, &[], &stamp(t)),
        }
    }

    /// The same kind of value for another instant (an occurrence of a series starting at
    /// `self`): same zone, or the date in that zone.
    fn like(self, utc: NaiveDateTime, zone: Option<Tz>) -> When {
        match self {
            When::Date(_) => When::Date(match zone {
                Some(Tz::Zone(z)) => z.wall_clock(utc).date(),
                _ => utc.date(),
            }),
            When::Local(z, _) => When::Local(z, z.wall_clock(utc)),
            When::Utc(_) | When::Floating(_) => When::Utc(utc),
        }
    }

    /// An occurrence on `date` at this value's wall-clock time.
    fn on(self, date: NaiveDate) -> When {
        match self {
            When::Date(_) => When::Date(date),
            When::Utc(t) => When::Utc(date.and_time(t.time())),
            When::Local(z, t) => When::Local(z, date.and_time(t.time())),
            When::Floating(t) => When::Floating(date.and_time(t.time())),
        }
    }
}

/// Graph's `dateTimeTimeZone.dateTime` (`2025-03-03T09:00:00.0000000`), or a bare date.
fn parse_local(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })
}

/// An RFC 3339 timestamp (`createdDateTime`, `originalStart` …) as a UTC wall clock.
fn parse_instant(s: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.naive_utc())
}

fn to_utc(tz: Tz, local: NaiveDateTime) -> NaiveDateTime {
    match tz {
        Tz::Utc => local,
        Tz::Zone(z) => z.to_utc(local),
    }
}

fn in_zone(tz: Tz, utc: NaiveDateTime) -> When {
    match tz {
        Tz::Utc => When::Utc(utc),
        Tz::Zone(z) => When::Local(z, z.wall_clock(utc)),
    }
}

/// A `dateTimeTimeZone` as iCalendar writes it: a date when `date_only`, else the instant
/// in `display` (or in its own zone), floating when its zone is unknown. `None` when
/// absent.
fn when(v: &Value, display: Option<Tz>, date_only: bool, what: &str) -> Result<Option<When>> {
    let Some(s) = v.get("dateTime").and_then(Value::as_str) else {
        return Ok(None);
    };
    let local = parse_local(s).ok_or_else(|| err(format!("{what} is not a date and time")))?;
    if date_only {
        return Ok(Some(When::Date(local.date())));
    }
    let zone = v.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
    Ok(Some(match lookup(zone) {
        None => When::Floating(local),
        Some(src) => in_zone(display.unwrap_or(src), to_utc(src, local)),
    }))
}

/// The first zone of `names` this build knows.
fn first_zone<'a>(names: impl IntoIterator<Item = Option<&'a str>>) -> Option<Tz> {
    names.into_iter().flatten().find_map(lookup)
}

fn utc_stamp(t: NaiveDateTime) -> String {
    format!("{}Z", stamp(t))
}

/// A timestamp property (CREATED, LAST-MODIFIED …) from an RFC 3339 field.
fn timestamp(l: &mut Lines, name: &str, v: &Value, field: &str) {
    if let Some(t) = str_at(v, field).and_then(parse_instant) {
        l.raw(name, &[], &utc_stamp(t));
    }
}

fn dtstamp(l: &mut Lines, v: &Value, fallback: Option<NaiveDateTime>) {
    // DTSTAMP is required; the item's own last change keeps the output a pure function
    // of the item (no wall clock).
    let t = str_at(v, "lastModifiedDateTime")
        .and_then(parse_instant)
        .or_else(|| str_at(v, "createdDateTime").and_then(parse_instant))
        .or(fallback)
        .unwrap_or_default();
    l.raw("DTSTAMP", &[], &utc_stamp(t));
}

/// DESCRIPTION from an `itemBody`: plain text as is; HTML as text, with the HTML itself
/// in X-ALT-DESC (the property Outlook reads back).
fn body(l: &mut Lines, v: &Value) {
    let Some(content) = str_at(v, "/body/content").filter(|c| !c.trim().is_empty()) else {
        return;
    };
    if str_at(v, "/body/contentType").is_some_and(|t| t.eq_ignore_ascii_case("html")) {
        let text = crate::service::read::html_to_text(content);
        l.text("DESCRIPTION", &[], text.trim_end());
        l.text("X-ALT-DESC", &[("FMTTYPE", "text/html")], content);
    } else {
        l.text("DESCRIPTION", &[], content);
    }
}

fn categories(l: &mut Lines, v: &Value) {
    let cats: Vec<String> = v
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(escape_text)
        .collect();
    if !cats.is_empty() {
        l.raw("CATEGORIES", &[], &cats.join(","));
    }
}

fn priority(l: &mut Lines, v: &Value) {
    let p = match str_at(v, "importance") {
        Some("high") => "1",
        Some("low") => "9",
        Some(_) => "5",
        None => return,
    };
    l.raw("PRIORITY", &[], p);
}

/// `-PT15M`, `-P1DT2H`, `-PT18H` … for a reminder `minutes` before the start.
fn trigger(minutes: i64) -> String {
    let sign = if minutes >= 0 { "-" } else { "" };
    let m = minutes.unsigned_abs();
    let (d, h, min) = (m / 1440, m % 1440 / 60, m % 60);
    let mut s = format!("{sign}P");
    if d > 0 {
        let _ = write!(s, "{d}D");
    }
    if h > 0 || min > 0 || d == 0 {
        s.push('T');
        if h > 0 {
            let _ = write!(s, "{h}H");
        }
        if min > 0 || h == 0 {
            let _ = write!(s, "{min}M");
        }
    }
    s
}

fn alarm(l: &mut Lines, trigger: (&[(&str, &str)], &str)) {
    l.begin("VALARM");
    l.raw("ACTION", &[], "DISPLAY");
    // The subject is in SUMMARY already; the alarm's text says what it is.
    l.text("DESCRIPTION", &[], "Reminder");
    l.raw("TRIGGER", trigger.0, trigger.1);
    l.end("VALARM");
}

/// RRULE of a `patternedRecurrence`, for a series starting at `start`; `zone` is the
/// series' zone (for UNTIL, which must be UTC when DTSTART has a TZID).
// One arm per Graph pattern and range type, side by side with the rule each becomes.
#[allow(clippy::too_many_lines)]
fn rrule(rec: &Value, start: When, zone: Option<Tz>) -> Result<Option<String>> {
    if !rec.is_object() {
        return Ok(None);
    }
    let pattern = &rec["pattern"];
    let range = &rec["range"];
    let kind = str_at(pattern, "type").ok_or_else(|| err("recurrence has no pattern type"))?;
    let interval = pattern["interval"].as_u64().unwrap_or(1).max(1);
    let days = || -> Result<String> {
        let codes: Vec<&str> = pattern["daysOfWeek"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|d| weekday_code(d).ok_or_else(|| err(format!("unknown day of week {d:?}"))))
            .collect::<Result<_>>()?;
        if codes.is_empty() {
            return Err(err(format!("a {kind} recurrence needs daysOfWeek")));
        }
        Ok(codes.join(","))
    };
    let setpos = || -> Result<&'static str> {
        Ok(match str_at(pattern, "index").unwrap_or("first") {
            "first" => "1",
            "second" => "2",
            "third" => "3",
            "fourth" => "4",
            "last" => "-1",
            other => return Err(err(format!("unknown week index {other:?}"))),
        })
    };
    let day_of_month = || -> Result<u64> {
        pattern["dayOfMonth"]
            .as_u64()
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| err(format!("a {kind} recurrence needs dayOfMonth 1..31")))
    };
    let month = || -> Result<u64> {
        pattern["month"]
            .as_u64()
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(|| err(format!("a {kind} recurrence needs month 1..12")))
    };
    let mut parts = match kind {
        "daily" => vec!["FREQ=DAILY".to_owned()],
        "weekly" => {
            let mut p = vec!["FREQ=WEEKLY".to_owned(), format!("BYDAY={}", days()?)];
            if let Some(wkst) = str_at(pattern, "firstDayOfWeek").and_then(weekday_code) {
                p.push(format!("WKST={wkst}"));
            }
            p
        }
        "absoluteMonthly" => vec![
            "FREQ=MONTHLY".to_owned(),
            format!("BYMONTHDAY={}", day_of_month()?),
        ],
        "relativeMonthly" => vec![
            "FREQ=MONTHLY".to_owned(),
            format!("BYDAY={}", days()?),
            format!("BYSETPOS={}", setpos()?),
        ],
        "absoluteYearly" => vec![
            "FREQ=YEARLY".to_owned(),
            format!("BYMONTH={}", month()?),
            format!("BYMONTHDAY={}", day_of_month()?),
        ],
        "relativeYearly" => vec![
            "FREQ=YEARLY".to_owned(),
            format!("BYMONTH={}", month()?),
            format!("BYDAY={}", days()?),
            format!("BYSETPOS={}", setpos()?),
        ],
        other => return Err(err(format!("unknown recurrence pattern {other:?}"))),
    };
    if interval > 1 {
        parts.insert(1, format!("INTERVAL={interval}"));
    }
    match str_at(range, "type").unwrap_or("noEnd") {
        "numbered" => {
            let n = range["numberOfOccurrences"]
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| err("a numbered recurrence needs numberOfOccurrences"))?;
            parts.push(format!("COUNT={n}"));
        }
        "endDate" => {
            let end = str_at(range, "endDate")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .ok_or_else(|| err("an endDate recurrence needs endDate"))?;
            // The end date is the last day an occurrence may fall on, in the series' zone;
            // UNTIL is inclusive, so the last second of that day.
            let last = end.and_hms_opt(23, 59, 59).unwrap_or_default();
            let until = match start {
                When::Date(_) => end.format("%Y%m%d").to_string(),
                When::Floating(_) => stamp(last),
                When::Utc(_) | When::Local(..) => utc_stamp(match zone {
                    Some(tz) => to_utc(tz, last),
                    None => last,
                }),
            };
            parts.push(format!("UNTIL={until}"));
        }
        "noEnd" => {}
        other => return Err(err(format!("unknown recurrence range {other:?}"))),
    }
    Ok(Some(parts.join(";")))
}

fn email(v: &Value) -> Option<(&str, &str)> {
    let address = str_at(v, "/emailAddress/address").filter(|a| !a.is_empty())?;
    Some((str_at(v, "/emailAddress/name").unwrap_or(""), address))
}

fn attendees(l: &mut Lines, ev: &Value) {
    let rsvp = ev["responseRequested"].as_bool().unwrap_or(true);
    for a in ev["attendees"].as_array().into_iter().flatten() {
        let Some((name, address)) = email(a) else {
            continue;
        };
        let kind = str_at(a, "type").unwrap_or("required");
        let partstat = match str_at(a, "/status/response").unwrap_or("none") {
            "accepted" | "organizer" => "ACCEPTED",
            "tentativelyAccepted" => "TENTATIVE",
            "declined" => "DECLINED",
            _ => "NEEDS-ACTION",
        };
        let mut params: Vec<(&str, &str)> = Vec::new();
        match kind {
            "resource" => params.extend([("CUTYPE", "RESOURCE"), ("ROLE", "NON-PARTICIPANT")]),
            "optional" => params.extend([("CUTYPE", "INDIVIDUAL"), ("ROLE", "OPT-PARTICIPANT")]),
            _ => params.extend([("CUTYPE", "INDIVIDUAL"), ("ROLE", "REQ-PARTICIPANT")]),
        }
        params.push(("PARTSTAT", partstat));
        if rsvp && partstat == "NEEDS-ACTION" {
            params.push(("RSVP", "TRUE"));
        }
        if !name.is_empty() {
            params.push(("CN", name));
        }
        l.raw("ATTENDEE", &params, &format!("mailto:{address}"));
    }
    if let Some((name, address)) = email(&ev["organizer"]) {
        let params: Vec<(&str, &str)> = if name.is_empty() {
            Vec::new()
        } else {
            vec![("CN", name)]
        };
        l.raw("ORGANIZER", &params, &format!("mailto:{address}"));
    }
}

/// File attachments inline (ATTACH;ENCODING=BASE64;VALUE=BINARY, with the media type in
/// FMTTYPE and the name in X-FILENAME, as Outlook and Apple Calendar read it); reference
/// attachments as their URL. Item attachments (a message or event inside the event) have
/// no iCalendar form and are left to the JSON export, as are attachments listed without
/// their bytes.
fn attachments(l: &mut Lines, ev: &Value) -> Result<()> {
    for (i, a) in ev["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = str_at(a, "name").unwrap_or("");
        let media = str_at(a, "contentType")
            .or_else(|| str_at(a, "@odata.mediaContentType"))
            .unwrap_or("application/octet-stream");
        if let Some(b64) = str_at(a, "contentBytes") {
            let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| err(format!("attachment {} has invalid contentBytes", i + 1)))?;
            let mut params = vec![
                ("FMTTYPE", media),
                ("ENCODING", "BASE64"),
                ("VALUE", "BINARY"),
            ];
            if !name.is_empty() {
                params.push(("X-FILENAME", name));
            }
            l.raw("ATTACH", &params, &STANDARD.encode(bytes));
        } else if let Some(url) = str_at(a, "sourceUrl") {
            let mut params = vec![("FMTTYPE", media)];
            if !name.is_empty() {
                params.push(("X-FILENAME", name));
            }
            l.raw("ATTACH", &params, url);
        }
    }
    Ok(())
}

/// Zone and start of a series, for its exceptions and cancelled occurrences.
#[derive(Clone, Copy)]
struct Series {
    start: When,
    zone: Option<Tz>,
}

impl Series {
    /// The occurrence that originally started at `original` (RFC 3339, or Graph's
    /// `OID.<id>.<yyyy-mm-dd>`, or a bare date).
    fn occurrence(self, original: &str) -> Option<When> {
        if let Some(utc) = parse_instant(original) {
            return Some(self.start.like(utc, self.zone));
        }
        let tail = original.rsplit('.').next().unwrap_or(original);
        let date = NaiveDate::parse_from_str(tail.trim(), "%Y-%m-%d").ok()?;
        Some(self.start.on(date))
    }
}

fn write_event(l: &mut Lines, zones: &mut Zones, ev: &Value) -> Result<()> {
    if !ev.is_object() {
        return Err(err("an event is not a JSON object"));
    }
    let uid = str_at(ev, "iCalUId")
        .or_else(|| str_at(ev, "id"))
        .ok_or_else(|| err("an event has neither iCalUId nor id"))?
        .to_owned();
    let series = write_vevent(l, zones, ev, &uid, None, None)?;
    let exceptions = ev
        .get("exceptionOccurrences")
        .or_else(|| ev.get("instances"))
        .and_then(Value::as_array);
    for exc in exceptions.into_iter().flatten() {
        let is_exception = match str_at(exc, "type") {
            Some(t) => t == "exception",
            None => exc.get("originalStart").is_some(),
        };
        if !is_exception {
            continue;
        }
        let original =
            str_at(exc, "originalStart").ok_or_else(|| err("an exception has no originalStart"))?;
        let rid = series
            .occurrence(original)
            .ok_or_else(|| err("an exception's originalStart is not a timestamp"))?;
        write_vevent(l, zones, exc, &uid, Some(rid), series.zone)?;
    }
    Ok(())
}

/// One VEVENT: the event itself, or (with `recurrence_id`) one changed occurrence of a
/// series whose zone is `series_zone`.
// One property after another in the order docs/EXPORT.md lists them; split up, the
// mapping would be harder to check against that table.
#[allow(clippy::too_many_lines)]
fn write_vevent(
    l: &mut Lines,
    zones: &mut Zones,
    ev: &Value,
    uid: &str,
    recurrence_id: Option<When>,
    series_zone: Option<Tz>,
) -> Result<Series> {
    let all_day = ev["isAllDay"].as_bool().unwrap_or(false);
    let recurrence = ev.get("recurrence").filter(|r| r.is_object());
    // Graph returns times in UTC unless asked otherwise; the zone the event was made in
    // (the series' zone first) is where its wall clock and recurrence make sense.
    let zone = first_zone([
        recurrence.and_then(|r| str_at(r, "/range/recurrenceTimeZone")),
        str_at(ev, "originalStartTimeZone"),
    ])
    .or(series_zone)
    .or_else(|| first_zone([str_at(ev, "/start/timeZone")]));
    let end_zone = first_zone([str_at(ev, "originalEndTimeZone")]).or(zone);
    let start =
        when(&ev["start"], zone, all_day, "start")?.ok_or_else(|| err("an event has no start"))?;
    let end = when(&ev["end"], end_zone, all_day, "end")?;

    l.begin("VEVENT");
    l.text("UID", &[], uid);
    let start_utc = match start {
        When::Utc(t) => Some(t),
        When::Local(z, t) => Some(z.to_utc(t)),
        _ => None,
    };
    dtstamp(l, ev, start_utc);
    if let Some(rid) = recurrence_id {
        rid.write(l, zones, "RECURRENCE-ID");
    }
    start.write(l, zones, "DTSTART");
    if let Some(end) = end {
        end.write(l, zones, "DTEND");
    }
    let series = Series { start, zone };
    if recurrence_id.is_none()
        && let Some(rule) = recurrence
            .map(|r| rrule(r, start, zone))
            .transpose()?
            .flatten()
    {
        l.raw("RRULE", &[], &rule);
        for c in ev["cancelledOccurrences"].as_array().into_iter().flatten() {
            let when = c
                .as_str()
                .and_then(|s| series.occurrence(s))
                .ok_or_else(|| err("a cancelled occurrence is not a date"))?;
            when.write(l, zones, "EXDATE");
        }
    }
    if let Some(s) = str_at(ev, "subject") {
        l.text("SUMMARY", &[], s);
    }
    body(l, ev);
    if let Some(place) = str_at(ev, "/location/displayName").filter(|p| !p.is_empty()) {
        l.text("LOCATION", &[], place);
    }
    if let (Some(lat), Some(lon)) = (
        ev.pointer("/location/coordinates/latitude")
            .and_then(Value::as_f64),
        ev.pointer("/location/coordinates/longitude")
            .and_then(Value::as_f64),
    ) {
        l.raw("GEO", &[], &format!("{lat};{lon}"));
    }
    categories(l, ev);
    if let Some(s) = str_at(ev, "sensitivity") {
        let class = match s {
            "private" | "personal" => "PRIVATE",
            "confidential" => "CONFIDENTIAL",
            _ => "PUBLIC",
        };
        l.raw("CLASS", &[], class);
    }
    priority(l, ev);
    let show_as = str_at(ev, "showAs");
    let cancelled = ev["isCancelled"].as_bool().unwrap_or(false);
    l.raw(
        "STATUS",
        &[],
        if cancelled {
            "CANCELLED"
        } else if show_as == Some("tentative") {
            "TENTATIVE"
        } else {
            "CONFIRMED"
        },
    );
    if let Some(show_as) = show_as {
        l.raw(
            "TRANSP",
            &[],
            if show_as == "free" {
                "TRANSPARENT"
            } else {
                "OPAQUE"
            },
        );
        let busy = match show_as {
            "free" => Some("FREE"),
            "tentative" => Some("TENTATIVE"),
            "busy" => Some("BUSY"),
            "oof" => Some("OOF"),
            "workingElsewhere" => Some("WORKINGELSEWHERE"),
            _ => None,
        };
        if let Some(busy) = busy {
            l.raw("X-MICROSOFT-CDO-BUSYSTATUS", &[], busy);
        }
    }
    l.raw(
        "X-MICROSOFT-CDO-ALLDAYEVENT",
        &[],
        if all_day { "TRUE" } else { "FALSE" },
    );
    if let Some(url) = str_at(ev, "/onlineMeeting/joinUrl").filter(|u| !u.is_empty()) {
        l.text("URL", &[], url);
    }
    attendees(l, ev);
    attachments(l, ev)?;
    timestamp(l, "CREATED", ev, "createdDateTime");
    timestamp(l, "LAST-MODIFIED", ev, "lastModifiedDateTime");
    if ev["isReminderOn"].as_bool().unwrap_or(false) {
        let minutes = ev["reminderMinutesBeforeStart"].as_i64().unwrap_or(15);
        alarm(l, (&[], &trigger(minutes)));
    }
    l.end("VEVENT");
    Ok(series)
}

fn is_midnight(v: &Value) -> bool {
    v.get("dateTime")
        .and_then(Value::as_str)
        .and_then(parse_local)
        .is_none_or(|t| t.num_seconds_from_midnight() == 0)
}

fn write_task(l: &mut Lines, zones: &mut Zones, task: &Value) -> Result<()> {
    if !task.is_object() {
        return Err(err("a task is not a JSON object"));
    }
    let uid = str_at(task, "id").ok_or_else(|| err("a task has no id"))?;
    // To Do's due and start dates are days (midnight in the list's zone): written as
    // DATE values, unless one of them has a time of day.
    let date_only = is_midnight(&task["dueDateTime"]) && is_midnight(&task["startDateTime"]);
    let zone = first_zone([
        str_at(task, "/recurrence/range/recurrenceTimeZone"),
        str_at(task, "/dueDateTime/timeZone"),
    ]);
    let due = when(&task["dueDateTime"], zone, date_only, "dueDateTime")?;
    let start = when(&task["startDateTime"], zone, date_only, "startDateTime")?;
    let recurrence = task.get("recurrence").filter(|r| r.is_object());
    // A recurring VTODO needs DTSTART (RFC 5545 §3.8.5.3); the due date is where To Do
    // anchors the series.
    let start = start.or(if recurrence.is_some() { due } else { None });

    l.begin("VTODO");
    l.text("UID", &[], uid);
    dtstamp(l, task, None);
    if let Some(s) = start {
        s.write(l, zones, "DTSTART");
    }
    if let Some(d) = due {
        d.write(l, zones, "DUE");
    }
    if let (Some(rec), Some(s)) = (recurrence, start)
        && let Some(rule) = rrule(rec, s, zone)?
    {
        l.raw("RRULE", &[], &rule);
    }
    if let Some(s) = str_at(task, "title") {
        l.text("SUMMARY", &[], s);
    }
    body(l, task);
    let status = str_at(task, "status").unwrap_or("notStarted");
    l.raw(
        "STATUS",
        &[],
        match status {
            "completed" => "COMPLETED",
            "inProgress" => "IN-PROCESS",
            _ => "NEEDS-ACTION",
        },
    );
    if status == "completed" {
        l.raw("PERCENT-COMPLETE", &[], "100");
    }
    let completed = task.get("completedDateTime").filter(|c| c.is_object());
    if let Some(c) = completed {
        // COMPLETED is always UTC (RFC 5545 §3.8.2.1); a zone this build does not know is
        // taken as UTC.
        if let Some(When::Utc(t) | When::Floating(t)) =
            when(c, Some(Tz::Utc), false, "completedDateTime")?
        {
            l.raw("COMPLETED", &[], &utc_stamp(t));
        }
    }
    priority(l, task);
    categories(l, task);
    timestamp(l, "CREATED", task, "createdDateTime");
    timestamp(l, "LAST-MODIFIED", task, "lastModifiedDateTime");
    if task["isReminderOn"].as_bool().unwrap_or(false)
        && let Some(When::Utc(t)) = when(
            &task["reminderDateTime"],
            Some(Tz::Utc),
            false,
            "reminderDateTime",
        )?
    {
        alarm(l, (&[("VALUE", "DATE-TIME")], &utc_stamp(t)));
    }
    l.end("VTODO");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ics(event: &Value) -> String {
        String::from_utf8(event_to_ics(event).unwrap())
            .unwrap()
            .replace("\r\n ", "")
    }

    fn rule(pattern: &Value, range: &Value) -> String {
        let start = When::Local(
            match lookup("Tokyo Standard Time") {
                Some(Tz::Zone(z)) => z,
                _ => unreachable!(),
            },
            parse_local("2025-03-03T09:00:00.0000000").unwrap(),
        );
        rrule(
            &json!({"pattern": pattern, "range": range}),
            start,
            lookup("Tokyo Standard Time"),
        )
        .unwrap()
        .unwrap()
    }

    fn no_end() -> Value {
        json!({"type": "noEnd", "startDate": "2025-03-03", "endDate": "0001-01-01", "numberOfOccurrences": 0})
    }

    #[test]
    fn every_graph_pattern_becomes_its_rrule() {
        assert_eq!(
            rule(&json!({"type": "daily", "interval": 1}), &no_end()),
            "FREQ=DAILY"
        );
        assert_eq!(
            rule(&json!({"type": "daily", "interval": 3}), &no_end()),
            "FREQ=DAILY;INTERVAL=3"
        );
        assert_eq!(
            rule(
                &json!({"type": "weekly", "interval": 2, "daysOfWeek": ["monday", "wednesday", "friday"], "firstDayOfWeek": "sunday"}),
                &no_end()
            ),
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR;WKST=SU"
        );
        assert_eq!(
            rule(
                &json!({"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15}),
                &no_end()
            ),
            "FREQ=MONTHLY;BYMONTHDAY=15"
        );
        assert_eq!(
            rule(
                &json!({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["thursday"], "index": "second"}),
                &no_end()
            ),
            "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2"
        );
        assert_eq!(
            rule(
                &json!({"type": "relativeMonthly", "interval": 2, "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"], "index": "last"}),
                &no_end()
            ),
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
        );
        assert_eq!(
            rule(
                &json!({"type": "absoluteYearly", "interval": 1, "month": 7, "dayOfMonth": 4}),
                &no_end()
            ),
            "FREQ=YEARLY;BYMONTH=7;BYMONTHDAY=4"
        );
        assert_eq!(
            rule(
                &json!({"type": "relativeYearly", "interval": 1, "month": 11, "daysOfWeek": ["thursday"], "index": "fourth"}),
                &no_end()
            ),
            "FREQ=YEARLY;BYMONTH=11;BYDAY=TH;BYSETPOS=4"
        );
    }

    #[test]
    fn every_graph_range_becomes_count_until_or_nothing() {
        let daily = json!({"type": "daily", "interval": 1});
        assert_eq!(
            rule(
                &daily,
                &json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 10})
            ),
            "FREQ=DAILY;COUNT=10"
        );
        // The end date is inclusive in the series' zone: 23:59:59 in Tokyo is 14:59:59 UTC.
        assert_eq!(
            rule(
                &daily,
                &json!({"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-03-31"})
            ),
            "FREQ=DAILY;UNTIL=20250331T145959Z"
        );
        // All-day series: UNTIL is a date, like DTSTART.
        let all_day = rrule(
            &json!({"pattern": daily, "range": {"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-03-31"}}),
            When::Date(NaiveDate::from_ymd_opt(2025, 3, 3).unwrap()),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(all_day, "FREQ=DAILY;UNTIL=20250331");
    }

    #[test]
    fn malformed_recurrences_are_errors_that_name_the_field() {
        let start = When::Utc(parse_local("2025-03-03T09:00:00").unwrap());
        for (rec, needle) in [
            (
                json!({"pattern": {"type": "weekly", "daysOfWeek": []}, "range": {"type": "noEnd"}}),
                "daysOfWeek",
            ),
            (
                json!({"pattern": {"type": "hourly"}, "range": {"type": "noEnd"}}),
                "hourly",
            ),
            (
                json!({"pattern": {"type": "daily"}, "range": {"type": "numbered"}}),
                "numberOfOccurrences",
            ),
            (
                json!({"pattern": {"type": "absoluteYearly", "dayOfMonth": 4}, "range": {"type": "noEnd"}}),
                "month",
            ),
        ] {
            let e = rrule(&rec, start, None).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn reminders_become_iso_durations() {
        assert_eq!(trigger(15), "-PT15M");
        assert_eq!(trigger(0), "-PT0M");
        assert_eq!(trigger(60), "-PT1H");
        assert_eq!(trigger(90), "-PT1H30M");
        assert_eq!(trigger(1080), "-PT18H");
        assert_eq!(trigger(2880), "-P2D");
        assert_eq!(trigger(1500), "-P1DT1H");
    }

    fn series() -> Value {
        json!({
            "id": "AAMkAGI2series", "iCalUId": "040000008200E00074C5B7101A82E008ABC",
            "createdDateTime": "2025-01-01T10:00:00Z", "lastModifiedDateTime": "2025-02-01T10:00:00Z",
            "subject": "Team stand-up; daily, short",
            "body": {"contentType": "html", "content": "<html><body><p>Agenda:</p><p>Line two</p></body></html>"},
            "start": {"dateTime": "2025-03-03T14:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2025-03-03T14:15:00.0000000", "timeZone": "UTC"},
            "originalStartTimeZone": "Eastern Standard Time", "originalEndTimeZone": "Eastern Standard Time",
            "isAllDay": false, "isCancelled": false, "showAs": "busy", "sensitivity": "private", "importance": "high",
            "categories": ["Projects", "Red, category"],
            "location": {"displayName": "Room 4.12"},
            "isReminderOn": true, "reminderMinutesBeforeStart": 15, "responseRequested": true,
            "organizer": {"emailAddress": {"name": "Adele Vance", "address": "adele@contoso.com"}},
            "attendees": [
                {"type": "required", "status": {"response": "accepted"}, "emailAddress": {"name": "Vance, Alex", "address": "alex@contoso.com"}},
                {"type": "optional", "status": {"response": "none"}, "emailAddress": {"name": "Lee", "address": "lee@contoso.com"}},
                {"type": "resource", "status": {"response": "tentativelyAccepted"}, "emailAddress": {"name": "Room 4.12", "address": "room412@contoso.com"}},
                {"type": "required", "status": {"response": "declined"}, "emailAddress": {"name": "", "address": "no@contoso.com"}}
            ],
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday"},
                "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 20, "recurrenceTimeZone": "Eastern Standard Time"}
            },
            "instances": [
                {"type": "occurrence", "originalStart": "2025-03-10T13:00:00Z",
                 "start": {"dateTime": "2025-03-10T13:00:00.0000000", "timeZone": "UTC"}},
                {"type": "exception", "originalStart": "2025-03-17T13:00:00Z", "subject": "Stand-up (moved)",
                 "start": {"dateTime": "2025-03-17T14:00:00.0000000", "timeZone": "UTC"},
                 "end": {"dateTime": "2025-03-17T14:15:00.0000000", "timeZone": "UTC"},
                 "originalStartTimeZone": "Eastern Standard Time"}
            ],
            "cancelledOccurrences": ["OID.AAMkAGI2series.2025-03-24", "2025-03-31T13:00:00Z"],
            "attachments": [
                {"@odata.type": "#microsoft.graph.fileAttachment", "name": "Agenda.pdf", "contentType": "application/pdf",
                 "contentBytes": STANDARD.encode(vec![7u8; 200])},
                {"@odata.type": "#microsoft.graph.itemAttachment", "name": "A message"}
            ]
        })
    }

    #[test]
    fn a_series_keeps_its_zone_rule_exceptions_and_cancellations() {
        let s = ics(&series());
        assert!(s.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Atlas//Atlas "));
        assert!(s.ends_with("END:VCALENDAR\r\n"));
        // 14:00 UTC on 3 March is 09:00 in New York (EST); the zone is declared once.
        assert_eq!(
            s.matches("BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n")
                .count(),
            1,
            "{s}"
        );
        assert!(
            s.contains("DTSTART;TZID=America/New_York:20250303T090000\r\n"),
            "{s}"
        );
        assert!(
            s.contains("DTEND;TZID=America/New_York:20250303T091500\r\n"),
            "{s}"
        );
        assert!(
            s.contains("RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=SU;COUNT=20\r\n"),
            "{s}"
        );
        // Cancelled: by Graph's occurrence id (a date: the series' wall clock that day)
        // and by instant (after the switch to EDT, 13:00 UTC is still 09:00).
        assert!(
            s.contains("EXDATE;TZID=America/New_York:20250324T090000\r\n"),
            "{s}"
        );
        assert!(
            s.contains("EXDATE;TZID=America/New_York:20250331T090000\r\n"),
            "{s}"
        );
        // One exception VEVENT (plain occurrences are the rule's), same UID.
        assert_eq!(s.matches("BEGIN:VEVENT").count(), 2, "{s}");
        assert_eq!(
            s.matches("UID:040000008200E00074C5B7101A82E008ABC\r\n")
                .count(),
            2
        );
        assert!(s.contains("RECURRENCE-ID;TZID=America/New_York:20250317T090000\r\nDTSTART;TZID=America/New_York:20250317T100000\r\n"), "{s}");
        assert!(s.contains("SUMMARY:Stand-up (moved)\r\n"));
        assert_eq!(
            s.matches("RRULE:FREQ=WEEKLY").count(),
            1,
            "the exception has none"
        );
        // Text escaping, categories, class, priority, location.
        assert!(
            s.contains("SUMMARY:Team stand-up\\; daily\\, short\r\n"),
            "{s}"
        );
        assert!(s.contains("CATEGORIES:Projects,Red\\, category\r\n"), "{s}");
        assert!(s.contains("CLASS:PRIVATE\r\nPRIORITY:1\r\n"), "{s}");
        assert!(s.contains("LOCATION:Room 4.12\r\n"));
        assert!(s.contains("DESCRIPTION:Agenda:\\n\\nLine two\r\n"), "{s}");
        assert!(
            s.contains("X-ALT-DESC;FMTTYPE=text/html:<html><body><p>Agenda:</p>"),
            "{s}"
        );
        // People.
        assert!(
            s.contains("ORGANIZER;CN=Adele Vance:mailto:adele@contoso.com\r\n"),
            "{s}"
        );
        assert!(s.contains("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=\"Vance, Alex\":mailto:alex@contoso.com\r\n"), "{s}");
        assert!(s.contains("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Lee:mailto:lee@contoso.com\r\n"), "{s}");
        assert!(s.contains("ATTENDEE;CUTYPE=RESOURCE;ROLE=NON-PARTICIPANT;PARTSTAT=TENTATIVE;CN=Room 4.12:mailto:room412@contoso.com\r\n"), "{s}");
        assert!(s.contains("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=DECLINED:mailto:no@contoso.com\r\n"), "{s}");
        // The file attachment inline; the item attachment has no iCalendar form.
        let attach = format!(
            "ATTACH;FMTTYPE=application/pdf;ENCODING=BASE64;VALUE=BINARY;X-FILENAME=Agenda.pdf:{}\r\n",
            STANDARD.encode(vec![7u8; 200])
        );
        assert!(s.contains(&attach), "{s}");
        assert_eq!(s.matches("ATTACH").count(), 1);
        assert!(s.contains("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"));
        assert!(s.contains("DTSTAMP:20250201T100000Z\r\n"));
        assert!(s.contains("CREATED:20250101T100000Z\r\nLAST-MODIFIED:20250201T100000Z\r\n"));
    }

    #[test]
    fn output_lines_are_folded_and_crlf_terminated() {
        let raw = String::from_utf8(event_to_ics(&series()).unwrap()).unwrap();
        for line in raw.split("\r\n") {
            assert!(line.len() <= 75, "{line}");
            assert!(!line.contains('\n') && !line.contains('\r'));
        }
    }

    #[test]
    fn all_day_events_are_dates_and_unknown_zones_stay_floating() {
        let s = ics(&json!({
            "id": "x", "subject": "Holiday", "isAllDay": true,
            "start": {"dateTime": "2025-12-24T00:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2025-12-26T00:00:00.0000000", "timeZone": "UTC"},
            "originalStartTimeZone": "Tokyo Standard Time",
        }));
        assert!(
            s.contains("DTSTART;VALUE=DATE:20251224\r\nDTEND;VALUE=DATE:20251226\r\n"),
            "{s}"
        );
        assert!(s.contains("X-MICROSOFT-CDO-ALLDAYEVENT:TRUE\r\n"));
        assert!(!s.contains("VTIMEZONE"), "{s}");
        let s = ics(&json!({
            "id": "y",
            "start": {"dateTime": "2025-05-01T09:30:00.0000000", "timeZone": "Israel Standard Time"},
            "originalStartTimeZone": "Israel Standard Time",
        }));
        assert!(s.contains("DTSTART:20250501T093000\r\n"), "{s}");
        // A known zone in `timeZone` itself (Prefer: outlook.timezone) is converted too.
        let s = ics(&json!({
            "id": "z",
            "start": {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
        }));
        assert!(
            s.contains("DTSTART;TZID=America/Los_Angeles:20250701T090000\r\n"),
            "{s}"
        );
        assert!(
            s.contains("TZID:America/Los_Angeles\r\nBEGIN:STANDARD"),
            "{s}"
        );
    }

    #[test]
    fn bad_input_is_an_error_and_adds_nothing() {
        let mut c = Calendar::new(Some("Cal"));
        let e = c
            .add_event(&json!({"id": "x", "subject": "secret subject"}))
            .unwrap_err();
        assert!(matches!(e, crate::Error::Convert { .. }));
        assert!(!e.to_string().contains("secret"), "{e}");
        let mut bad = series();
        bad["attachments"][0]["contentBytes"] = json!("not base64!");
        assert!(c.add_event(&bad).is_err());
        let s = String::from_utf8(c.finish()).unwrap();
        assert!(!s.contains("VEVENT") && !s.contains("VTIMEZONE"), "{s}");
        assert!(s.contains("X-WR-CALNAME:Cal\r\n"));
    }

    #[test]
    fn tasks_become_vtodos() {
        let s = String::from_utf8(
            task_to_ics(&json!({
                "id": "AAMkTask1", "title": "Submit expense report", "status": "completed", "importance": "high",
                "body": {"content": "Notes, with a comma", "contentType": "text"},
                "dueDateTime": {"dateTime": "2025-03-10T00:00:00.0000000", "timeZone": "UTC"},
                "completedDateTime": {"dateTime": "2025-03-09T00:00:00.0000000", "timeZone": "UTC"},
                "isReminderOn": true,
                "reminderDateTime": {"dateTime": "2025-03-09T09:00:00.0000000", "timeZone": "UTC"},
                "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["friday"], "firstDayOfWeek": "sunday"},
                               "range": {"type": "noEnd", "startDate": "2025-03-10", "recurrenceTimeZone": "UTC"}},
                "lastModifiedDateTime": "2025-03-09T10:00:00Z", "categories": ["Personal"],
            }))
            .unwrap(),
        )
        .unwrap();
        assert!(s.contains("BEGIN:VTODO\r\nUID:AAMkTask1\r\nDTSTAMP:20250309T100000Z\r\nDTSTART;VALUE=DATE:20250310\r\nDUE;VALUE=DATE:20250310\r\nRRULE:FREQ=WEEKLY;BYDAY=FR;WKST=SU\r\nSUMMARY:Submit expense report\r\nDESCRIPTION:Notes\\, with a comma\r\nSTATUS:COMPLETED\r\nPERCENT-COMPLETE:100\r\nCOMPLETED:20250309T000000Z\r\nPRIORITY:1\r\nCATEGORIES:Personal\r\n"), "{s}");
        assert!(
            s.contains("TRIGGER;VALUE=DATE-TIME:20250309T090000Z\r\n"),
            "{s}"
        );
        let s = String::from_utf8(
            task_to_ics(&json!({"id": "t2", "title": "Call", "status": "inProgress",
                "dueDateTime": {"dateTime": "2025-03-10T15:30:00.0000000", "timeZone": "UTC"}}))
            .unwrap(),
        )
        .unwrap();
        assert!(
            s.contains("DUE:20250310T153000Z\r\n") && s.contains("STATUS:IN-PROCESS\r\n"),
            "{s}"
        );
    }
}
