//! Windows time zone names, as Exchange and Graph use them (`dateTimeTimeZone.timeZone`,
//! `originalStartTimeZone`, `recurrenceTimeZone`), mapped to IANA ids (the TZID Atlas
//! writes, so readers with a time-zone database get the full history) and to the rules
//! Windows itself applies today (the VTIMEZONE Atlas writes, so readers without one get
//! the same wall clock as Outlook).
//!
//! The table covers the zones Microsoft 365 tenants commonly use; the mapping follows
//! CLDR's `windowsZones.xml` (territory `001`), the rules the current Windows registry
//! (every rule here changes on a Sunday). Zones whose rules are not a fixed
//! "n-th Sunday" pair (Israel, Egypt, Morocco, Chile, Paraguay, Iran before 2022, Lord
//! Howe …) are left out on purpose: an unknown zone is written as floating local time,
//! the wall clock Graph gave, rather than with a wrong offset.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};

use super::line::Lines;

/// One DST change: the `week`-th Sunday (`-1`: the last) of `month`, at `minute` after
/// local midnight on the wall clock in force before the change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change {
    month: u32,
    week: i8,
    minute: u32,
}

/// A zone: IANA id, standard offset (minutes east of UTC) and, with daylight saving time,
/// when it starts and ends (daylight time is standard + 60 minutes for every zone here).
#[derive(Debug)]
pub(crate) struct Zone {
    windows: &'static str,
    pub(crate) iana: &'static str,
    std: i32,
    dst: Option<(Change, Change)>,
}

const fn ch(month: u32, week: i8, hour: u32) -> Change {
    Change {
        month,
        week,
        minute: hour * 60,
    }
}

/// United States and Canada: second Sunday of March 02:00 → first Sunday of November 02:00.
const US: Option<(Change, Change)> = Some((ch(3, 2, 2), ch(11, 1, 2)));
/// European Union: last Sunday of March → last Sunday of October, both at 01:00 UTC; the
/// local hours below are that instant in each zone.
/// `hour` is 01:00 UTC on the zone's standard wall clock.
const fn eu(hour: u32) -> (Change, Change) {
    (ch(3, -1, hour), ch(10, -1, hour + 1))
}
/// South-eastern Australia: first Sunday of October 02:00 → first Sunday of April 03:00.
const AU: Option<(Change, Change)> = Some((ch(10, 1, 2), ch(4, 1, 3)));

const fn z(
    windows: &'static str,
    iana: &'static str,
    std: i32,
    dst: Option<(Change, Change)>,
) -> Zone {
    Zone {
        windows,
        iana,
        std,
        dst,
    }
}

static ZONES: &[Zone] = &[
    z("Dateline Standard Time", "Etc/GMT+12", -720, None),
    z("UTC-11", "Etc/GMT+11", -660, None),
    z("Hawaiian Standard Time", "Pacific/Honolulu", -600, None),
    z("Alaskan Standard Time", "America/Anchorage", -540, US),
    z("Pacific Standard Time", "America/Los_Angeles", -480, US),
    z(
        "Pacific Standard Time (Mexico)",
        "America/Tijuana",
        -480,
        US,
    ),
    z("US Mountain Standard Time", "America/Phoenix", -420, None),
    z("Mountain Standard Time", "America/Denver", -420, US),
    z(
        "Mountain Standard Time (Mexico)",
        "America/Mazatlan",
        -420,
        None,
    ),
    z(
        "Central America Standard Time",
        "America/Guatemala",
        -360,
        None,
    ),
    z("Central Standard Time", "America/Chicago", -360, US),
    z(
        "Central Standard Time (Mexico)",
        "America/Mexico_City",
        -360,
        None,
    ),
    z("Canada Central Standard Time", "America/Regina", -360, None),
    z("SA Pacific Standard Time", "America/Bogota", -300, None),
    z("Eastern Standard Time", "America/New_York", -300, US),
    z("US Eastern Standard Time", "America/Indianapolis", -300, US),
    z("Atlantic Standard Time", "America/Halifax", -240, US),
    z("SA Western Standard Time", "America/La_Paz", -240, None),
    z("Newfoundland Standard Time", "America/St_Johns", -210, US),
    z(
        "E. South America Standard Time",
        "America/Sao_Paulo",
        -180,
        None,
    ),
    z(
        "Argentina Standard Time",
        "America/Buenos_Aires",
        -180,
        None,
    ),
    z("SA Eastern Standard Time", "America/Cayenne", -180, None),
    z("UTC-02", "Etc/GMT+2", -120, None),
    z("Azores Standard Time", "Atlantic/Azores", -60, Some(eu(0))),
    z("Cape Verde Standard Time", "Atlantic/Cape_Verde", -60, None),
    z("GMT Standard Time", "Europe/London", 0, Some(eu(1))),
    z("Greenwich Standard Time", "Atlantic/Reykjavik", 0, None),
    z("W. Europe Standard Time", "Europe/Berlin", 60, Some(eu(2))),
    z(
        "Central Europe Standard Time",
        "Europe/Budapest",
        60,
        Some(eu(2)),
    ),
    z("Romance Standard Time", "Europe/Paris", 60, Some(eu(2))),
    z(
        "Central European Standard Time",
        "Europe/Warsaw",
        60,
        Some(eu(2)),
    ),
    z("W. Central Africa Standard Time", "Africa/Lagos", 60, None),
    z("GTB Standard Time", "Europe/Bucharest", 120, Some(eu(3))),
    z("FLE Standard Time", "Europe/Kiev", 120, Some(eu(3))),
    z(
        "South Africa Standard Time",
        "Africa/Johannesburg",
        120,
        None,
    ),
    z("Turkey Standard Time", "Europe/Istanbul", 180, None),
    z("Arab Standard Time", "Asia/Riyadh", 180, None),
    z("Russian Standard Time", "Europe/Moscow", 180, None),
    z("E. Africa Standard Time", "Africa/Nairobi", 180, None),
    z("Iran Standard Time", "Asia/Tehran", 210, None),
    z("Arabian Standard Time", "Asia/Dubai", 240, None),
    z("Pakistan Standard Time", "Asia/Karachi", 300, None),
    z("India Standard Time", "Asia/Kolkata", 330, None),
    z("Sri Lanka Standard Time", "Asia/Colombo", 330, None),
    z("Nepal Standard Time", "Asia/Kathmandu", 345, None),
    z("Bangladesh Standard Time", "Asia/Dhaka", 360, None),
    z("SE Asia Standard Time", "Asia/Bangkok", 420, None),
    z("China Standard Time", "Asia/Shanghai", 480, None),
    z("Singapore Standard Time", "Asia/Singapore", 480, None),
    z("Taipei Standard Time", "Asia/Taipei", 480, None),
    z("W. Australia Standard Time", "Australia/Perth", 480, None),
    z("Tokyo Standard Time", "Asia/Tokyo", 540, None),
    z("Korea Standard Time", "Asia/Seoul", 540, None),
    z(
        "Cen. Australia Standard Time",
        "Australia/Adelaide",
        570,
        AU,
    ),
    z("AUS Central Standard Time", "Australia/Darwin", 570, None),
    z(
        "E. Australia Standard Time",
        "Australia/Brisbane",
        600,
        None,
    ),
    z("AUS Eastern Standard Time", "Australia/Sydney", 600, AU),
    z("Tasmania Standard Time", "Australia/Hobart", 600, AU),
    z(
        "West Pacific Standard Time",
        "Pacific/Port_Moresby",
        600,
        None,
    ),
    // New Zealand: last Sunday of September 02:00 → first Sunday of April 03:00.
    z(
        "New Zealand Standard Time",
        "Pacific/Auckland",
        720,
        Some((ch(9, -1, 2), ch(4, 1, 3))),
    ),
    z("Tonga Standard Time", "Pacific/Tongatapu", 780, None),
];

/// IANA spellings Graph or users may give besides the table's own.
const ALIASES: &[(&str, &str)] = &[
    ("Asia/Calcutta", "Asia/Kolkata"),
    ("Asia/Katmandu", "Asia/Kathmandu"),
    ("Europe/Kyiv", "Europe/Kiev"),
    ("America/Indiana/Indianapolis", "America/Indianapolis"),
    ("America/Argentina/Buenos_Aires", "America/Buenos_Aires"),
];

/// Every Windows zone name this build converts, with the IANA id it writes as TZID.
pub(crate) fn known() -> impl Iterator<Item = (&'static str, &'static str)> {
    ZONES.iter().map(|z| (z.windows, z.iana))
}

/// A time zone as Atlas writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tz {
    /// UTC: times end in `Z`, no VTIMEZONE.
    Utc,
    /// A zone of the table: `TZID=<IANA>` and a VTIMEZONE.
    Zone(&'static Zone),
}

/// The zone a Windows name or an IANA id names; `None` for names this build does not know
/// (and for `tzone://Microsoft/Custom`, a legacy Outlook custom zone with no name).
pub(crate) fn lookup(name: &str) -> Option<Tz> {
    let name = name.trim();
    if [
        "UTC",
        "Etc/UTC",
        "Etc/GMT",
        "GMT",
        "Z",
        "Coordinated Universal Time",
    ]
    .iter()
    .any(|u| u.eq_ignore_ascii_case(name))
    {
        return Some(Tz::Utc);
    }
    let iana = ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map_or(name, |(_, canonical)| canonical);
    ZONES
        .iter()
        .find(|z| z.windows.eq_ignore_ascii_case(name) || z.iana.eq_ignore_ascii_case(iana))
        .map(Tz::Zone)
}

/// The `week`-th Sunday (`-1`: last) of `month` in `year`.
fn sunday(year: i32, month: u32, week: i8) -> Option<NaiveDate> {
    if week < 0 {
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        let last = next.pred_opt()?;
        let back = last.weekday().num_days_from_sunday();
        return last.checked_sub_signed(Duration::days(i64::from(back)));
    }
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let ahead = (7 - first.weekday().num_days_from_sunday()) % 7;
    let day = first + Duration::days(i64::from(ahead) + 7 * i64::from(week.max(1) - 1));
    Some(day)
}

impl Change {
    /// The change's wall-clock time in `year`.
    fn local(self, year: i32) -> Option<NaiveDateTime> {
        Some(
            sunday(year, self.month, self.week)?.and_hms_opt(0, 0, 0)?
                + Duration::minutes(i64::from(self.minute)),
        )
    }
}

impl Zone {
    /// Offset from UTC (minutes) in force at the UTC instant `utc`.
    pub(crate) fn offset_at_utc(&self, utc: NaiveDateTime) -> i32 {
        let Some((start, end)) = self.dst else {
            return self.std;
        };
        let year = utc.year();
        let (Some(s), Some(e)) = (start.local(year), end.local(year)) else {
            return self.std;
        };
        let s = s - Duration::minutes(i64::from(self.std));
        let e = e - Duration::minutes(i64::from(self.std + 60));
        let dst = if s < e {
            s <= utc && utc < e
        } else {
            utc >= s || utc < e
        };
        if dst { self.std + 60 } else { self.std }
    }

    /// The UTC instant of the wall-clock time `local` (in a skipped hour, the standard
    /// offset; in a repeated hour, the first occurrence — what Windows does).
    pub(crate) fn to_utc(&self, local: NaiveDateTime) -> NaiveDateTime {
        let standard = local - Duration::minutes(i64::from(self.std));
        let daylight = local - Duration::minutes(i64::from(self.std + 60));
        if self.dst.is_some() && self.offset_at_utc(daylight) == self.std + 60 {
            daylight
        } else {
            standard
        }
    }

    /// The wall-clock time of the UTC instant `utc`.
    pub(crate) fn wall_clock(&self, utc: NaiveDateTime) -> NaiveDateTime {
        utc + Duration::minutes(i64::from(self.offset_at_utc(utc)))
    }

    /// The zone's VTIMEZONE: its current rules as yearly recurrences from 1970 (one
    /// STANDARD block for a zone without daylight saving time).
    pub(crate) fn write_vtimezone(&self, l: &mut Lines) {
        l.begin("VTIMEZONE");
        l.raw("TZID", &[], self.iana);
        match self.dst {
            None => {
                l.begin("STANDARD");
                l.raw("DTSTART", &[], "19700101T000000");
                l.raw("TZOFFSETFROM", &[], &offset(self.std));
                l.raw("TZOFFSETTO", &[], &offset(self.std));
                l.end("STANDARD");
            }
            Some((start, end)) => {
                let dst = self.std + 60;
                for (block, change, from, to) in [
                    ("STANDARD", end, dst, self.std),
                    ("DAYLIGHT", start, self.std, dst),
                ] {
                    l.begin(block);
                    let first = change
                        .local(1970)
                        .map_or_else(String::new, |t| t.format("%Y%m%dT%H%M%S").to_string());
                    l.raw("DTSTART", &[], &first);
                    l.raw("TZOFFSETFROM", &[], &offset(from));
                    l.raw("TZOFFSETTO", &[], &offset(to));
                    l.raw(
                        "RRULE",
                        &[],
                        &format!(
                            "FREQ=YEARLY;BYMONTH={};BYDAY={}SU",
                            change.month, change.week
                        ),
                    );
                    l.end(block);
                }
            }
        }
        l.end("VTIMEZONE");
    }
}

/// `+HHMM` / `-HHMM`.
fn offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}{:02}", m / 60, m % 60)
}

/// Weekday of a Graph `dayOfWeek` name, as its iCalendar two-letter code.
pub(crate) fn weekday_code(name: &str) -> Option<&'static str> {
    let day = match name.to_ascii_lowercase().as_str() {
        "monday" => Weekday::Mon,
        "tuesday" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" => Weekday::Thu,
        "friday" => Weekday::Fri,
        "saturday" => Weekday::Sat,
        "sunday" => Weekday::Sun,
        _ => return None,
    };
    Some(match day {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn zone(name: &str) -> &'static Zone {
        match lookup(name) {
            Some(Tz::Zone(z)) => z,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn windows_names_and_iana_ids_find_the_same_zone() {
        assert_eq!(zone("Pacific Standard Time").iana, "America/Los_Angeles");
        assert_eq!(zone("pacific standard time").iana, "America/Los_Angeles");
        assert_eq!(zone("America/Los_Angeles").iana, "America/Los_Angeles");
        assert_eq!(zone("Asia/Calcutta").iana, "Asia/Kolkata");
        assert!(matches!(lookup("UTC"), Some(Tz::Utc)));
        assert!(lookup("tzone://Microsoft/Custom").is_none());
        assert!(lookup("Israel Standard Time").is_none());
    }

    #[test]
    fn us_daylight_saving_time_starts_and_ends_on_the_right_sundays() {
        let ny = zone("Eastern Standard Time");
        // 2025: 9 March 02:00 EST (07:00 UTC) → 2 November 02:00 EDT (06:00 UTC).
        assert_eq!(ny.offset_at_utc(t("2025-03-09T06:59")), -300);
        assert_eq!(ny.offset_at_utc(t("2025-03-09T07:00")), -240);
        assert_eq!(ny.offset_at_utc(t("2025-11-02T05:59")), -240);
        assert_eq!(ny.offset_at_utc(t("2025-11-02T06:00")), -300);
        assert_eq!(ny.to_utc(t("2025-07-01T09:00")), t("2025-07-01T13:00"));
        assert_eq!(ny.to_utc(t("2025-01-15T09:00")), t("2025-01-15T14:00"));
        assert_eq!(ny.wall_clock(t("2025-07-01T13:00")), t("2025-07-01T09:00"));
    }

    #[test]
    fn eu_and_southern_hemisphere_rules() {
        let berlin = zone("W. Europe Standard Time");
        // Last Sunday of March 2025 is the 30th; 01:00 UTC.
        assert_eq!(berlin.offset_at_utc(t("2025-03-30T00:59")), 60);
        assert_eq!(berlin.offset_at_utc(t("2025-03-30T01:00")), 120);
        assert_eq!(berlin.offset_at_utc(t("2025-10-26T00:59")), 120);
        assert_eq!(berlin.offset_at_utc(t("2025-10-26T01:00")), 60);
        let london = zone("GMT Standard Time");
        assert_eq!(london.offset_at_utc(t("2025-03-30T01:00")), 60);
        let sydney = zone("AUS Eastern Standard Time");
        assert_eq!(sydney.offset_at_utc(t("2025-01-15T00:00")), 660);
        assert_eq!(sydney.offset_at_utc(t("2025-07-15T00:00")), 600);
        // First Sunday of October 2025 is the 5th: 02:00 AEST = 4 Oct 16:00 UTC.
        assert_eq!(sydney.offset_at_utc(t("2025-10-04T15:59")), 600);
        assert_eq!(sydney.offset_at_utc(t("2025-10-04T16:00")), 660);
    }

    #[test]
    fn vtimezone_blocks_start_on_a_day_their_rule_produces() {
        let mut l = Lines::new();
        zone("Eastern Standard Time").write_vtimezone(&mut l);
        let s = String::from_utf8(l.finish()).unwrap();
        // 1970: first Sunday of November is the 1st, second Sunday of March the 8th.
        assert!(s.contains("DTSTART:19701101T020000\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\n"), "{s}");
        assert!(s.contains("DTSTART:19700308T020000\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"), "{s}");
        let mut l = Lines::new();
        zone("India Standard Time").write_vtimezone(&mut l);
        let s = String::from_utf8(l.finish()).unwrap();
        assert!(s.contains("TZOFFSETTO:+0530"), "{s}");
    }
}
