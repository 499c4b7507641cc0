//! Expanding a Graph series (`patternedRecurrence`) into its occurrences, so that the
//! cancelled ones — which Graph's `instances` leave out and no property lists in v1.0 —
//! can be named: they are the rule's occurrences missing from `instances`. A backup
//! calls [`cancelled_occurrences`] with the instances it read and stores the result as
//! the event's `cancelledOccurrences`, which the iCalendar export writes as EXDATEs.
//!
//! The rule is evaluated on the series' wall clock in its zone (as Outlook does), with the
//! same zone choice as the iCalendar export; a zone this build does not know is taken as
//! UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};
use serde_json::Value;

use super::tz::{Tz, lookup};
use super::{convert_error, str_at};
use crate::error::Result;

/// Longest walk through a series, in days (a series without end is cut at the window).
const MAX_DAYS: i64 = 50 * 366;

fn err(reason: impl Into<String>) -> crate::Error {
    convert_error("recurrence", reason)
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

fn parse_local(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

fn months_between(a: NaiveDate, b: NaiveDate) -> i64 {
    i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month())
}

/// Whether `d` is the `index`-th (1…4, −1 last) day of its month among `days`.
fn nth_in_month(d: NaiveDate, days: &[Weekday], index: i64) -> bool {
    if !days.contains(&d.weekday()) {
        return false;
    }
    let Some(first) = d.with_day(1) else {
        return false;
    };
    let matching: Vec<NaiveDate> = first
        .iter_days()
        .take_while(|x| x.month() == d.month())
        .filter(|x| days.contains(&x.weekday()))
        .collect();
    let pick = if index < 0 {
        matching.last()
    } else {
        usize::try_from(index - 1)
            .ok()
            .and_then(|i| matching.get(i))
    };
    pick == Some(&d)
}

/// The series' zone and first start's wall clock.
fn anchor(event: &Value) -> Result<(Option<Tz>, NaiveDateTime, bool)> {
    let all_day = event["isAllDay"].as_bool().unwrap_or(false);
    let start = &event["start"];
    let local = str_at(start, "dateTime")
        .and_then(parse_local)
        .ok_or_else(|| err("the series has no start"))?;
    if all_day {
        return Ok((None, local, true));
    }
    let given = lookup(str_at(start, "timeZone").unwrap_or("UTC")).unwrap_or(Tz::Utc);
    let utc = match given {
        Tz::Utc => local,
        Tz::Zone(z) => z.to_utc(local),
    };
    let zone = [
        str_at(event, "/recurrence/range/recurrenceTimeZone"),
        str_at(event, "originalStartTimeZone"),
    ]
    .into_iter()
    .flatten()
    .find_map(lookup)
    .unwrap_or(given);
    let wall = match zone {
        Tz::Utc => utc,
        Tz::Zone(z) => z.wall_clock(utc),
    };
    Ok((Some(zone), wall, false))
}

// One arm per Graph pattern, next to the walk that applies it.
#[allow(clippy::too_many_lines)]
/// Original starts (UTC) of a series' occurrences that start within `[from, to]`; for an
/// all-day series, midnight UTC of each occurrence's date.
pub fn occurrences(
    event: &Value,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    let rec = &event["recurrence"];
    if !rec.is_object() {
        return Ok(Vec::new());
    }
    let (zone, first, all_day) = anchor(event)?;
    let pattern = &rec["pattern"];
    let range = &rec["range"];
    let kind = str_at(pattern, "type").ok_or_else(|| err("no pattern type"))?;
    let interval = i64::try_from(pattern["interval"].as_u64().unwrap_or(1).max(1)).unwrap_or(1);
    let days: Vec<Weekday> = pattern["daysOfWeek"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(weekday)
        .collect();
    let day_of_month = pattern["dayOfMonth"].as_u64().unwrap_or(0);
    let month = pattern["month"].as_u64().unwrap_or(0);
    let index = match str_at(pattern, "index").unwrap_or("first") {
        "second" => 2,
        "third" => 3,
        "fourth" => 4,
        "last" => -1,
        _ => 1,
    };
    let week_start = str_at(pattern, "firstDayOfWeek")
        .and_then(weekday)
        .unwrap_or(Weekday::Sun);
    let range_start = str_at(range, "startDate")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or(first.date());
    let end_date = match str_at(range, "type") {
        Some("endDate") => {
            str_at(range, "endDate").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        }
        _ => None,
    };
    let count = match str_at(range, "type") {
        Some("numbered") => range["numberOfOccurrences"].as_u64(),
        _ => None,
    };
    let to_utc = |d: NaiveDate| -> DateTime<Utc> {
        let local = d.and_time(first.time());
        match zone {
            Some(Tz::Zone(z)) => z.to_utc(local).and_utc(),
            _ => local.and_utc(),
        }
    };
    let monday_of = |d: NaiveDate| {
        let back = (7 + d.weekday().num_days_from_monday() - week_start.num_days_from_monday()) % 7;
        d - Duration::days(i64::from(back))
    };
    let (start_week, start_month) = (monday_of(range_start), range_start);
    let mut out = Vec::new();
    let mut seen = 0u64;
    let mut d = range_start;
    for _ in 0..MAX_DAYS {
        if end_date.is_some_and(|e| d > e) || count.is_some_and(|n| seen >= n) {
            break;
        }
        let at = to_utc(d);
        if at > to + Duration::days(1) {
            break;
        }
        let hit = d >= first.date()
            && match kind {
                "daily" => (d - range_start).num_days() % interval == 0,
                "weekly" => {
                    (monday_of(d) - start_week).num_days() / 7 % interval == 0
                        && days.contains(&d.weekday())
                }
                "absoluteMonthly" => {
                    u64::from(d.day()) == day_of_month
                        && months_between(start_month, d) % interval == 0
                }
                "relativeMonthly" => {
                    months_between(start_month, d) % interval == 0 && nth_in_month(d, &days, index)
                }
                "absoluteYearly" => {
                    u64::from(d.month()) == month
                        && u64::from(d.day()) == day_of_month
                        && i64::from(d.year() - range_start.year()) % interval == 0
                }
                "relativeYearly" => {
                    u64::from(d.month()) == month
                        && i64::from(d.year() - range_start.year()) % interval == 0
                        && nth_in_month(d, &days, index)
                }
                other => return Err(err(format!("unknown pattern {other:?}"))),
            };
        if hit {
            seen += 1;
            let when = if all_day {
                d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
            } else {
                at
            };
            if when >= from && when <= to {
                out.push(when);
            }
        }
        d = match d.succ_opt() {
            Some(n) => n,
            None => break,
        };
    }
    Ok(out)
}

/// The series' occurrences within `[from, to]` that `instances` (Graph's
/// `…/events/{id}/instances` over at least that window, occurrences and exceptions) does
/// not list: the cancelled ones, as RFC 3339 original starts (dates for an all-day
/// series), for the event's `cancelledOccurrences`.
pub fn cancelled_occurrences(
    event: &Value,
    instances: &[Value],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>> {
    let all_day = event["isAllDay"].as_bool().unwrap_or(false);
    let listed: Vec<DateTime<Utc>> = instances
        .iter()
        .filter_map(|i| str_at(i, "originalStart"))
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    // An all-day occurrence's original start is its date's midnight, in the event's zone
    // or in UTC: either date identifies it.
    let zone = str_at(event, "originalStartTimeZone").and_then(lookup);
    let dates: Vec<NaiveDate> = listed
        .iter()
        .flat_map(|l| {
            let local = match zone {
                Some(Tz::Zone(z)) => z.wall_clock(l.naive_utc()).date(),
                _ => l.date_naive(),
            };
            [local, l.date_naive()]
        })
        .collect();
    Ok(occurrences(event, from, to)?
        .into_iter()
        .filter(|o| {
            if all_day {
                !dates.contains(&o.date_naive())
            } else {
                !listed.contains(o)
            }
        })
        .map(|o| {
            if all_day {
                o.format("%Y-%m-%d").to_string()
            } else {
                o.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[allow(clippy::needless_pass_by_value)] // Called with json!(…) temporaries.
    fn series(pattern: Value, range: Value) -> Value {
        json!({
            "start": {"dateTime": "2025-03-03T14:00:00.0000000", "timeZone": "UTC"},
            "originalStartTimeZone": "Eastern Standard Time",
            "recurrence": {"pattern": pattern, "range": range},
        })
    }

    fn starts(ev: &Value) -> Vec<String> {
        occurrences(ev, t("2025-01-01T00:00:00Z"), t("2026-12-31T00:00:00Z"))
            .unwrap()
            .iter()
            .map(|o| o.format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    #[test]
    fn weekly_series_keep_their_wall_clock_across_daylight_saving() {
        // 09:00 New York: 14:00 UTC in winter, 13:00 UTC from 9 March.
        let ev = series(
            json!({"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday"}),
            json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 3}),
        );
        assert_eq!(
            starts(&ev),
            [
                "2025-03-03T14:00Z",
                "2025-03-10T13:00Z",
                "2025-03-17T13:00Z"
            ]
        );
    }

    #[test]
    fn every_pattern_and_range_expands() {
        let ev = series(
            json!({"type": "weekly", "interval": 2, "daysOfWeek": ["monday", "friday"], "firstDayOfWeek": "sunday"}),
            json!({"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-03-21"}),
        );
        assert_eq!(starts(&ev).len(), 4, "{:?}", starts(&ev)); // 3, 7, 17, 21 March
        let ev = series(
            json!({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"], "index": "first"}),
            json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 3}),
        );
        assert_eq!(
            starts(&ev),
            [
                "2025-03-03T14:00Z",
                "2025-04-07T13:00Z",
                "2025-05-05T13:00Z"
            ]
        );
        let ev = series(
            json!({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"}),
            json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 2}),
        );
        assert_eq!(starts(&ev), ["2025-03-28T13:00Z", "2025-04-25T13:00Z"]);
        let ev = series(
            json!({"type": "absoluteMonthly", "interval": 2, "dayOfMonth": 3}),
            json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 3}),
        );
        assert_eq!(
            starts(&ev),
            [
                "2025-03-03T14:00Z",
                "2025-05-03T13:00Z",
                "2025-07-03T13:00Z"
            ]
        );
        let ev = series(
            json!({"type": "absoluteYearly", "interval": 1, "month": 3, "dayOfMonth": 3}),
            json!({"type": "noEnd", "startDate": "2025-03-03"}),
        );
        assert_eq!(starts(&ev), ["2025-03-03T14:00Z", "2026-03-03T14:00Z"]);
        let ev = series(
            json!({"type": "relativeYearly", "interval": 1, "month": 11, "daysOfWeek": ["thursday"], "index": "fourth"}),
            json!({"type": "noEnd", "startDate": "2025-03-03"}),
        );
        assert_eq!(starts(&ev), ["2025-11-27T14:00Z", "2026-11-26T14:00Z"]);
        let ev = series(
            json!({"type": "daily", "interval": 3}),
            json!({"type": "endDate", "startDate": "2025-03-03", "endDate": "2025-03-09"}),
        );
        assert_eq!(
            starts(&ev),
            [
                "2025-03-03T14:00Z",
                "2025-03-06T14:00Z",
                "2025-03-09T13:00Z"
            ]
        );
    }

    #[test]
    fn cancelled_occurrences_are_the_ones_instances_leave_out() {
        let ev = series(
            json!({"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday"}),
            json!({"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 4}),
        );
        let instances = [
            json!({"type": "occurrence", "originalStart": "2025-03-03T14:00:00Z"}),
            json!({"type": "exception", "originalStart": "2025-03-17T13:00:00Z"}),
            json!({"type": "occurrence", "originalStart": "2025-03-24T13:00:00Z"}),
        ];
        let cancelled = cancelled_occurrences(
            &ev,
            &instances,
            t("2025-01-01T00:00:00Z"),
            t("2025-12-31T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(cancelled, ["2025-03-10T13:00:00Z"]);
    }
}
