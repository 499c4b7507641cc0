//! Deterministic calendars, contacts, tasks, sticky notes, inbox rules, categories and
//! mailbox settings for each generated mailbox.
//!
//! Generated after the mail, with its own random stream, so the mail of a seed is exactly
//! what it was before these existed (folder keys, ids, contents and counts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::config::SimConfig;
use crate::items::{
    Category, GENERATED_ZONES, Item, Occurrence, Photo, Rule, dttz, graph_local, item_class,
    occurrence_starts, ts_key, zone_offset,
};
use crate::model::{Addr, Attachment, AttachmentKind, Content, Mailbox, ROOT_FOLDER, User, class};

const MEETINGS: &[&str] = &[
    "Quarterly planning",
    "1:1",
    "Customer call — Fabrikam",
    "Budget review",
    "Design review: onboarding",
    "Lunch with the team",
    "Interview: backend engineer",
    "Vendor demo",
];

const COMPANIES: &[&str] = &[
    "Fabrikam",
    "Tailspin Toys",
    "Adatum",
    "Northwind Traders",
    "Wide World Importers",
    "Contoso Pharmaceuticals",
];

const TASKS: &[&str] = &[
    "Submit expense report",
    "Review the Q3 forecast",
    "Book travel to Lisbon",
    "Renew parking permit",
    "Prepare onboarding checklist",
    "Update the supplier list",
    "Send contract to legal",
];

/// Master categories: the ones generated mail uses, plus a few more (outlookCategory
/// colors are `preset0`…`preset24`).
const MASTER_CATEGORIES: &[(&str, &str)] = &[
    ("Red category", "preset0"),
    ("Orange category", "preset1"),
    ("Yellow category", "preset3"),
    ("Green category", "preset4"),
    ("Blue category", "preset7"),
    ("Purple category", "preset8"),
    ("Projects", "preset9"),
    ("Personal", "preset12"),
];

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn email(a: &Addr) -> Value {
    json!({"emailAddress": {"name": a.name, "address": a.address}})
}

/// A small valid PNG (16 × 16, one colour per contact) — real image bytes, so a photo
/// survives any reader that decodes it.
pub(crate) fn png(rgb: [u8; 3]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&kind);
        crc.update(data);
        out.extend_from_slice(&kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    const SIDE: u32 = 16;
    // Each row: filter byte 0 (none), then the pixels.
    let mut row = vec![0u8];
    for _ in 0..SIDE {
        row.extend_from_slice(&rgb);
    }
    let pixels = row.repeat(SIDE as usize);
    // A zlib stream with one stored (uncompressed) deflate block.
    let mut zlib = vec![0x78, 0x01, 0x01];
    let len = u16::try_from(pixels.len()).unwrap_or(u16::MAX);
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&pixels);
    let (mut sum1, mut sum2) = (1u32, 0u32);
    for x in &pixels {
        sum1 = (sum1 + u32::from(*x)) % 65_521;
        sum2 = (sum2 + sum1) % 65_521;
    }
    zlib.extend_from_slice(&((sum2 << 16) | sum1).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    let _ = ihdr.write_all(&SIDE.to_be_bytes());
    let _ = ihdr.write_all(&SIDE.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, *b"IHDR", &ihdr);
    chunk(&mut out, *b"IDAT", &zlib);
    chunk(&mut out, *b"IEND", &[]);
    out
}

fn new_item(class: &str, folder: u64, created: DateTime<Utc>, props: Value) -> Item {
    Item {
        key: 0,
        folder,
        class: class.to_owned(),
        version: 0,
        seq: 0,
        added_seq: 0,
        created,
        modified: created,
        categories: Vec::new(),
        props: map(props),
        attachments: Vec::new(),
        photo: None,
        occurrences: BTreeMap::new(),
    }
}

struct PimGen<'a> {
    rng: ChaCha8Rng,
    cfg: &'a SimConfig,
    users: &'a [User],
    owner: Addr,
    zone: &'static str,
}

/// Fills `mbx` (of user `idx`) with calendars, contacts, tasks, notes and configuration.
pub(crate) fn fill(cfg: &SimConfig, users: &[User], idx: usize, mbx: &mut Mailbox) {
    let mut g = PimGen {
        rng: ChaCha8Rng::seed_from_u64(
            cfg.seed ^ 0x9e37_79b9_7f4a_7c15 ^ (idx as u64).wrapping_mul(0x1000_0000_01b3),
        ),
        cfg,
        users,
        owner: users[idx].address(),
        zone: GENERATED_ZONES[idx % GENERATED_ZONES.len()],
    };
    g.calendars(mbx);
    g.contacts(mbx);
    g.tasks(mbx);
    g.notes(mbx);
    g.configuration(mbx);
}

impl PimGen<'_> {
    fn colleague(&mut self) -> Addr {
        let others: Vec<&User> = self
            .users
            .iter()
            .filter(|u| u.kind.has_mailbox() && u.upn != self.owner.address)
            .collect();
        match others.choose(&mut self.rng) {
            Some(u) if self.rng.gen_bool(0.7) => u.address(),
            _ => {
                let n = self.rng.gen_range(1..99);
                Addr {
                    name: format!("Partner {n}"),
                    address: format!("partner{n}@fabrikam.com"),
                }
            }
        }
    }

    /// A start time on a working hour, `days` from the generation instant, in the
    /// mailbox's zone.
    fn slot(&mut self, days: i64) -> DateTime<Utc> {
        let day = (self.cfg.generated_at + Duration::days(days)).date_naive();
        let hour = self.rng.gen_range(8..17);
        let local = day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN));
        (local - Duration::minutes(i64::from(zone_offset(self.zone)))).and_utc()
    }

    #[allow(clippy::too_many_arguments)] // One call site per kind of generated event.
    fn event(
        &mut self,
        subject: &str,
        start: DateTime<Utc>,
        minutes: i64,
        all_day: bool,
        organizer: &Addr,
        attendees: &[Addr],
        recurrence: &Value,
    ) -> Value {
        let is_organizer = organizer.address == self.owner.address;
        let end = start + Duration::minutes(minutes);
        let (start_v, end_v) = if all_day {
            let local = |t: DateTime<Utc>| {
                let d = (t + Duration::minutes(i64::from(zone_offset(self.zone)))).date_naive();
                json!({"dateTime": graph_local(d.and_time(NaiveTime::MIN)), "timeZone": self.zone})
            };
            (local(start), local(end))
        } else {
            (dttz(start, self.zone), dttz(end, self.zone))
        };
        let mut uid_bytes = [0u8; 16];
        self.rng.fill_bytes(&mut uid_bytes);
        let uid = uid_bytes.iter().fold(String::new(), |mut acc, b| {
            let _ = write!(acc, "{b:02X}");
            acc
        });
        let place = ["Room 4.12", "Teams", "Lisbon office", "Cafeteria", ""]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or_default();
        let location =
            json!({"displayName": place, "locationType": "default", "uniqueIdType": "unknown"});
        let people: Vec<Value> = attendees
            .iter()
            .map(|a| {
                let response = if is_organizer {
                    ["none", "accepted", "tentativelyAccepted", "declined"]
                        [self.rng.gen_range(0..4)]
                } else {
                    "none"
                };
                json!({"type": if self.rng.gen_bool(0.8) { "required" } else { "optional" },
                       "status": {"response": response, "time": "0001-01-01T00:00:00Z"},
                       "emailAddress": {"name": a.name, "address": a.address}})
            })
            .collect();
        let sentence = format!(
            "<html><body><p>Agenda: {subject}.</p><p>Please come prepared.</p></body></html>"
        );
        json!({
            "subject": subject,
            "body": {"contentType": "html", "content": sentence},
            "importance": if self.rng.gen_bool(0.1) { "high" } else { "normal" },
            "sensitivity": if self.rng.gen_bool(0.1) { "private" } else { "normal" },
            "isAllDay": all_day,
            "isCancelled": false,
            "isOrganizer": is_organizer,
            "responseRequested": true,
            "showAs": if all_day { "free" } else { "busy" },
            "start": start_v,
            "end": end_v,
            "location": location,
            "locations": if place.is_empty() { json!([]) } else { json!([location]) },
            "attendees": people,
            "organizer": email(organizer),
            "recurrence": recurrence,
            "reminderMinutesBeforeStart": if all_day { 1080 } else { 15 },
            "isReminderOn": !all_day,
            "allowNewTimeProposals": true,
            "isOnlineMeeting": false,
            "onlineMeetingProvider": "unknown",
            "onlineMeetingUrl": null,
            "onlineMeeting": null,
            "hideAttendees": false,
            "originalStartTimeZone": self.zone,
            "originalEndTimeZone": self.zone,
            "iCalUId": format!("040000008200E00074C5B7101A82E008000000000000000000000000000000000000000010000000{uid}"),
            "responseStatus": {
                "response": if is_organizer { "organizer" } else { "accepted" },
                "time": "0001-01-01T00:00:00Z",
            },
        })
    }

    fn attachment(&mut self, name: &str, content_type: &str, len: usize) -> Attachment {
        Attachment {
            name: name.to_owned(),
            content_type: Some(content_type.to_owned()),
            kind: AttachmentKind::File(Content::Pattern {
                seed: self.rng.next_u64(),
                len,
                prefix: b"%PDF-1.7\n",
            }),
            is_inline: false,
            content_id: None,
            last_modified: self.cfg.generated_at - Duration::days(30),
        }
    }

    fn calendars(&mut self, mbx: &mut Mailbox) {
        let calendar = mbx.add_folder_of(
            class::CALENDAR,
            ROOT_FOLDER,
            "Calendar",
            Some("calendar"),
            false,
        );
        let team = mbx.add_folder_of(class::CALENDAR, calendar, "Team Events", None, false);
        if let Some(f) = mbx.folders.get_mut(&calendar) {
            f.props.insert("color".into(), json!("auto"));
        }
        if let Some(f) = mbx.folders.get_mut(&team) {
            f.props.insert("color".into(), json!("lightGreen"));
        }
        let owner = self.owner.clone();
        let created = self.cfg.generated_at - Duration::days(90);
        // Single meetings, some organised by the owner, some by colleagues.
        for n in 0..6 {
            let offset = self.rng.gen_range(-45..45);
            let start = self.slot(offset);
            let subject = MEETINGS[n % MEETINGS.len()];
            let attendees: Vec<Addr> = (0..self.rng.gen_range(0..4))
                .map(|_| self.colleague())
                .collect();
            let organizer = if n % 3 == 2 && !attendees.is_empty() {
                attendees[0].clone()
            } else {
                owner.clone()
            };
            let mut invited = attendees.clone();
            if organizer.address != owner.address {
                invited[0] = owner.clone();
            }
            let props = self.event(
                subject,
                start,
                [30, 60, 90][n % 3],
                false,
                &organizer,
                &invited,
                &Value::Null,
            );
            let mut item = new_item(item_class::EVENT, calendar, created, props);
            if n == 1 {
                item.attachments
                    .push(self.attachment("Agenda.pdf", "application/pdf", 2_048));
                item.attachments
                    .push(self.attachment("Slides.pdf", "application/pdf", 6_000));
            }
            if n == 3 {
                item.categories.push("Projects".to_owned());
            }
            mbx.add_item(item);
        }
        // A weekly stand-up with a moved and a cancelled occurrence.
        let first = self.slot(-21);
        let monday = first - Duration::days(i64::from(first.weekday().num_days_from_monday()));
        let start_date = (monday + Duration::minutes(i64::from(zone_offset(self.zone))))
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let team_people: Vec<Addr> = (0..3).map(|_| self.colleague()).collect();
        let weekly = json!({
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday", "friday"], "firstDayOfWeek": "sunday", "month": 0, "dayOfMonth": 0, "index": "first"},
            "range": {"type": "numbered", "startDate": start_date, "endDate": "0001-01-01", "recurrenceTimeZone": self.zone, "numberOfOccurrences": 24},
        });
        let props = self.event(
            "Team stand-up",
            monday,
            15,
            false,
            &owner,
            &team_people,
            &weekly,
        );
        let mut series = new_item(item_class::EVENT, calendar, created, props);
        let starts = occurrence_starts(
            &series.props,
            self.cfg.generated_at + Duration::days(365),
            24,
        );
        if let (Some(moved), Some(cancelled)) = (starts.get(2), starts.get(4)) {
            let new_start = *moved + Duration::hours(1);
            series.occurrences.insert(
                ts_key(*moved),
                Occurrence {
                    cancelled: false,
                    props: map(json!({
                        "subject": "Team stand-up (moved)",
                        "start": dttz(new_start, self.zone),
                        "end": dttz(new_start + Duration::minutes(15), self.zone),
                    })),
                },
            );
            series.occurrences.insert(
                ts_key(*cancelled),
                Occurrence {
                    cancelled: true,
                    props: Map::new(),
                },
            );
        }
        mbx.add_item(series);
        // A daily focus block with one occurrence in another room.
        let focus_start = self.slot(-3);
        let end_date = (focus_start + Duration::days(13))
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let daily = json!({
            "pattern": {"type": "daily", "interval": 1, "daysOfWeek": [], "firstDayOfWeek": "sunday", "month": 0, "dayOfMonth": 0, "index": "first"},
            "range": {"type": "endDate", "startDate": (focus_start + Duration::minutes(i64::from(zone_offset(self.zone)))).date_naive().format("%Y-%m-%d").to_string(), "endDate": end_date, "recurrenceTimeZone": self.zone, "numberOfOccurrences": 0},
        });
        let props = self.event("Focus time", focus_start, 120, false, &owner, &[], &daily);
        let mut focus = new_item(item_class::EVENT, calendar, created, props);
        let starts = occurrence_starts(
            &focus.props,
            self.cfg.generated_at + Duration::days(365),
            20,
        );
        if let Some(day) = starts.get(1) {
            focus.occurrences.insert(
                ts_key(*day),
                Occurrence {
                    cancelled: false,
                    props: map(json!({"location": {"displayName": "Library", "locationType": "default", "uniqueIdType": "unknown"},
                                      "locations": [{"displayName": "Library", "locationType": "default", "uniqueIdType": "unknown"}]})),
                },
            );
        }
        mbx.add_item(focus);
        // All-day events: a holiday and a three-day conference with its agenda attached.
        let holiday = self.slot(12);
        let props = self.event(
            "Company holiday",
            holiday,
            24 * 60,
            true,
            &owner,
            &[],
            &Value::Null,
        );
        mbx.add_item(new_item(item_class::EVENT, calendar, created, props));
        let conf = self.slot(30);
        let props = self.event(
            "Industry conference",
            conf,
            3 * 24 * 60,
            true,
            &owner,
            &[],
            &Value::Null,
        );
        let mut conference = new_item(item_class::EVENT, team, created, props);
        conference.attachments.push(self.attachment(
            "Conference agenda.pdf",
            "application/pdf",
            3_500,
        ));
        mbx.add_item(conference);
        // A monthly review without end in the team calendar.
        let review = self.slot(-60);
        let review_local = review + Duration::minutes(i64::from(zone_offset(self.zone)));
        let monthly = json!({
            "pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": review_local.day(), "daysOfWeek": [], "firstDayOfWeek": "sunday", "month": 0, "index": "first"},
            "range": {"type": "noEnd", "startDate": review_local.date_naive().format("%Y-%m-%d").to_string(), "endDate": "0001-01-01", "recurrenceTimeZone": self.zone, "numberOfOccurrences": 0},
        });
        let people: Vec<Addr> = (0..2).map(|_| self.colleague()).collect();
        let props = self.event(
            "Monthly review",
            review,
            60,
            false,
            &owner,
            &people,
            &monthly,
        );
        mbx.add_item(new_item(item_class::EVENT, team, created, props));
    }

    fn contacts(&mut self, mbx: &mut Mailbox) {
        let contacts = mbx.add_folder_of(
            class::CONTACTS,
            ROOT_FOLDER,
            "Contacts",
            Some("contacts"),
            false,
        );
        let suppliers = mbx.add_folder_of(class::CONTACTS, contacts, "Suppliers", None, false);
        let created = self.cfg.generated_at - Duration::days(200);
        for n in 0..8 {
            let person = self.colleague();
            let (given, surname) = person
                .name
                .split_once(' ')
                .map_or((person.name.clone(), String::new()), |(g, s)| {
                    (g.to_owned(), s.to_owned())
                });
            let company = COMPANIES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("Fabrikam");
            let phone = format!("+1 425 555 {:04}", self.rng.gen_range(0..10_000));
            let birthday = (n % 3 == 0).then(|| {
                format!(
                    "19{}-0{}-1{}T11:59:00Z",
                    self.rng.gen_range(60..99),
                    self.rng.gen_range(1..9),
                    self.rng.gen_range(0..9)
                )
            });
            let props = json!({
                "displayName": person.name,
                "givenName": given,
                "surname": surname,
                "middleName": null,
                "nickName": null,
                "title": null,
                "initials": null,
                "generation": null,
                "fileAs": format!("{surname}, {given}"),
                "emailAddresses": [{"name": person.name, "address": person.address}],
                "imAddresses": [],
                "businessPhones": [phone],
                "homePhones": [],
                "mobilePhone": if n % 2 == 0 { json!(format!("+1 206 555 {:04}", self.rng.gen_range(0..10_000))) } else { Value::Null },
                "jobTitle": (["Buyer", "Account Manager", "Engineer", "CFO"][n % 4]),
                "companyName": company,
                "department": null,
                "officeLocation": null,
                "profession": null,
                "businessHomePage": format!("https://www.{}.com", company.to_ascii_lowercase().replace(' ', "")),
                "assistantName": null,
                "manager": null,
                "spouseName": null,
                "personalNotes": if n % 4 == 1 { "Met at the Lisbon conference; prefers e-mail." } else { "" },
                "children": [],
                "birthday": birthday,
                "businessAddress": {"street": format!("{} Main Street", self.rng.gen_range(1..900)), "city": "Redmond", "state": "WA", "countryOrRegion": "United States", "postalCode": "98052"},
                "homeAddress": {},
                "otherAddress": {},
            });
            let folder = if n >= 6 { suppliers } else { contacts };
            let mut item = new_item(item_class::CONTACT, folder, created, props);
            if n % 3 != 1 {
                let color = [self.rng.r#gen(), self.rng.r#gen(), self.rng.r#gen()];
                item.photo = Some(Photo {
                    content_type: "image/png".to_owned(),
                    bytes: Arc::from(png(color)),
                    width: 16,
                    height: 16,
                });
            }
            if n == 2 {
                item.categories.push("Personal".to_owned());
            }
            mbx.add_item(item);
        }
    }

    fn tasks(&mut self, mbx: &mut Mailbox) {
        let tasks = mbx.add_folder_of(class::TASKS, ROOT_FOLDER, "Tasks", Some("tasks"), false);
        let launch = mbx.add_folder_of(class::TASKS, tasks, "Project Launch", None, false);
        if let Some(f) = mbx.folders.get_mut(&tasks) {
            f.props
                .insert("wellknownListName".into(), json!("defaultList"));
        }
        if let Some(f) = mbx.folders.get_mut(&launch) {
            f.props.insert("wellknownListName".into(), json!("none"));
        }
        let created = self.cfg.generated_at - Duration::days(20);
        for n in 0..6 {
            let title = TASKS[n % TASKS.len()];
            let due = self.cfg.generated_at + Duration::days(self.rng.gen_range(-5..20));
            let due_day = due.date_naive().and_time(NaiveTime::MIN);
            let done = n % 3 == 0;
            let props = json!({
                "title": title,
                "body": {"content": if n % 2 == 0 { format!("Notes for: {title}") } else { String::new() }, "contentType": "text"},
                "importance": if n == 1 { "high" } else { "normal" },
                "status": if done { "completed" } else if n == 4 { "inProgress" } else { "notStarted" },
                "isReminderOn": n == 2,
                "reminderDateTime": if n == 2 { json!({"dateTime": graph_local(due_day - Duration::hours(15)), "timeZone": "UTC"}) } else { Value::Null },
                "dueDateTime": if n == 5 { Value::Null } else { json!({"dateTime": graph_local(due_day), "timeZone": "UTC"}) },
                "startDateTime": Value::Null,
                "completedDateTime": if done { json!({"dateTime": graph_local(due_day), "timeZone": "UTC"}) } else { Value::Null },
                "recurrence": if n == 4 {
                    json!({"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["friday"], "firstDayOfWeek": "sunday", "month": 0, "dayOfMonth": 0, "index": "first"},
                           "range": {"type": "noEnd", "startDate": due.date_naive().format("%Y-%m-%d").to_string(), "endDate": "0001-01-01", "recurrenceTimeZone": "UTC", "numberOfOccurrences": 0}})
                } else { Value::Null },
                "bodyLastModifiedDateTime": json!(crate::json::ts(created)),
            });
            let folder = if n >= 4 { launch } else { tasks };
            mbx.add_item(new_item(item_class::TASK, folder, created, props));
        }
    }

    fn notes(&mut self, mbx: &mut Mailbox) {
        let notes = mbx.add_folder_of(class::NOTES, ROOT_FOLDER, "Notes", Some("notes"), false);
        let created = self.cfg.generated_at - Duration::days(7);
        for (n, text) in [
            "Wi-Fi for visitors: ask reception",
            "Call the printer vendor about the lease",
            "Ideas for the offsite:\r\n- boat trip\r\n- cooking class",
        ]
        .iter()
        .enumerate()
        {
            let subject = text.lines().next().unwrap_or_default();
            let props = json!({
                "subject": subject,
                "body": {"contentType": "text", "content": text},
                "color": (["yellow", "blue", "green"][n % 3]),
            });
            mbx.add_item(new_item(item_class::NOTE, notes, created, props));
        }
    }

    fn configuration(&mut self, mbx: &mut Mailbox) {
        for (name, color) in MASTER_CATEGORIES {
            let id = uuid(&mut self.rng);
            mbx.pim.categories.push(Category {
                id,
                display_name: (*name).to_owned(),
                color: (*color).to_owned(),
            });
        }
        let receipts = mbx
            .resolve_folder_ref("Inbox/Receipts")
            .map(|k| mbx.folder_id(k));
        let newsletters = mbx
            .resolve_folder_ref("Newsletters")
            .map(|k| mbx.folder_id(k));
        let boss = self.colleague();
        let rules = [
            json!({"displayName": "Receipts to their folder", "sequence": 1, "isEnabled": true, "hasError": false, "isReadOnly": false,
                   "conditions": {"subjectContains": ["receipt", "invoice"]},
                   "actions": {"moveToFolder": receipts, "stopProcessingRules": true}}),
            json!({"displayName": "Newsletters", "sequence": 2, "isEnabled": true, "hasError": false, "isReadOnly": false,
                   "conditions": {"senderContains": ["newsletter", "news@"]},
                   "actions": {"moveToFolder": newsletters, "markAsRead": true}}),
            json!({"displayName": "From my manager", "sequence": 3, "isEnabled": self.rng.gen_bool(0.8), "hasError": false, "isReadOnly": false,
                   "conditions": {"fromAddresses": [email(&boss)]},
                   "actions": {"markImportance": "high", "assignCategories": ["Red category"]},
                   "exceptions": {"subjectContains": ["FYI"]}}),
        ];
        for props in rules {
            let key = mbx.alloc_key();
            mbx.pim.rules.push(Rule {
                key,
                props: map(props),
            });
        }
        let archive = mbx.resolve_folder("archive").map(|k| mbx.folder_id(k));
        let oof = self.rng.gen_bool(0.35);
        let from = self.cfg.generated_at + Duration::days(3);
        let us = self.zone == "SA Pacific Standard Time" || self.zone == "UTC";
        mbx.pim.settings = map(json!({
            "archiveFolder": archive,
            "timeZone": self.zone,
            "automaticRepliesSetting": {
                "status": if oof { "scheduled" } else { "disabled" },
                "externalAudience": if oof { "contactsOnly" } else { "none" },
                "internalReplyMessage": if oof { "<html><body>I am out of the office this week.</body></html>" } else { "" },
                "externalReplyMessage": if oof { "<html><body>I am away; I will reply on my return.</body></html>" } else { "" },
                "scheduledStartDateTime": dttz(from, "UTC"),
                "scheduledEndDateTime": dttz(from + Duration::days(7), "UTC"),
            },
            "language": if us { json!({"locale": "en-US", "displayName": "English (United States)"}) } else { json!({"locale": "en-GB", "displayName": "English (United Kingdom)"}) },
            "dateFormat": if us { "M/d/yyyy" } else { "dd/MM/yyyy" },
            "timeFormat": if us { "h:mm tt" } else { "HH:mm" },
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": if us { "08:00:00.0000000" } else { "09:00:00.0000000" },
                "endTime": if us { "17:00:00.0000000" } else { "18:00:00.0000000" },
                "timeZone": {"name": self.zone},
            },
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_are_valid_png() {
        let p = png([10, 20, 30]);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n"));
        // IHDR width 16, height 16.
        assert_eq!(&p[16..24], &[0, 0, 0, 16, 0, 0, 0, 16]);
        assert!(p.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND CRC");
    }
}
