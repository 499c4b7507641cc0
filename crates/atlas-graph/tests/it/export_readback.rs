//! The export formats read back by independent parsers: the simulator's generated
//! calendars (single meetings, a weekly series with a moved and a cancelled occurrence, a
//! daily series with a changed occurrence, all-day events, a monthly series without end,
//! attachments; one mailbox per generated time zone), To Do tasks and contacts with
//! photos are read through Graph's classic endpoints with the client, written with
//! `atlas_core::export`, and parsed by Python's `icalendar` (each series expanded with
//! dateutil from its RRULE, EXDATEs and RECURRENCE-IDs and compared with Graph's own
//! `instances`) and `vobject`. Cancelled occurrences are found as a backup finds them
//! (`export::cancelled_occurrences`: the rule's occurrences Graph's `instances` leave
//! out) and checked against the simulator's own record. `.ci/run` and `scripts/test.sh`
//! install the Python packages; without them the test fails rather than skips.

use std::path::Path;

use atlas_core::export::{self, Calendar, Cards, Photo};
use atlas_sim::{SimConfig, roles};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use serde_json::{Value, json};

use crate::{client, mailbox, start};

const CHECK: &str = r#"
import base64, collections, datetime as dt, json, sys
try:
    import icalendar, vobject
    from dateutil import rrule
except ImportError as e:
    sys.exit(f"Python's icalendar and vobject are needed ({e}): "
             "python3 -m pip install icalendar vobject (.ci/run and scripts/test.sh do)")

UTC = dt.timezone.utc
# The mapping docs/EXPORT.md states, written out independently of the Rust code.
IANA = {"Tokyo Standard Time": "Asia/Tokyo", "India Standard Time": "Asia/Kolkata",
        "SA Pacific Standard Time": "America/Bogota", "UTC": None}
ROLE = {"required": "REQ-PARTICIPANT", "optional": "OPT-PARTICIPANT", "resource": "NON-PARTICIPANT"}
PARTSTAT = {"none": "NEEDS-ACTION", "notResponded": "NEEDS-ACTION", "accepted": "ACCEPTED",
            "organizer": "ACCEPTED", "tentativelyAccepted": "TENTATIVE", "declined": "DECLINED"}
TODO_STATUS = {"notStarted": "NEEDS-ACTION", "inProgress": "IN-PROCESS", "completed": "COMPLETED"}
PRIORITY = {"high": 1, "normal": 5, "low": 9}

failures, counts = [], collections.Counter()
def check(cond, what):
    if not cond:
        failures.append(what)

def graph_utc(s):
    s = s.rstrip("Z").split(".")[0]
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)

def as_utc(x):
    if isinstance(x, dt.datetime):
        if x.tzinfo is None:
            failures.append(f"floating time {x}")
            return x.replace(tzinfo=UTC)
        return x.astimezone(UTC)
    return x

def listed(v):
    return [] if v is None else v if isinstance(v, list) else [v]

def event_checks(ev, c, label):
    check(str(c.get("SUMMARY")) == ev["subject"], f"{label}: SUMMARY")
    if ev["isAllDay"]:
        counts["all-day events"] += 1
        check(c.decoded("DTSTART") == dt.date.fromisoformat(ev["start"]["dateTime"][:10]), f"{label}: all-day DTSTART")
        check(c.decoded("DTEND") == dt.date.fromisoformat(ev["end"]["dateTime"][:10]), f"{label}: all-day DTEND")
    else:
        check(as_utc(c.decoded("DTSTART")) == graph_utc(ev["start"]["dateTime"]), f"{label}: DTSTART")
        check(as_utc(c.decoded("DTEND")) == graph_utc(ev["end"]["dateTime"]), f"{label}: DTEND")
        check(c["DTSTART"].params.get("TZID") == IANA[ev["originalStartTimeZone"]], f"{label}: TZID")
    place = (ev.get("location") or {}).get("displayName") or None
    check((str(c["LOCATION"]) if "LOCATION" in c else None) == place, f"{label}: LOCATION")

def check_calendar(path, events, window):
    cal = icalendar.Calendar.from_ical(open(path, "rb").read())
    vevents = cal.walk("VEVENT")
    masters = {str(c["UID"]): c for c in vevents if "RECURRENCE-ID" not in c}
    overrides = collections.defaultdict(dict)
    for c in vevents:
        if "RECURRENCE-ID" in c:
            overrides[str(c["UID"])][as_utc(c.decoded("RECURRENCE-ID"))] = c
    check(len(masters) == len(events), f"{path}: {len(masters)} events, Graph has {len(events)}")
    lo, hi = graph_utc(window[0]), graph_utc(window[1])
    for ev in events:
        uid, label = ev["iCalUId"], f"{path}: event {ev['iCalUId'][-8:]}"
        c = masters.get(uid)
        if c is None:
            failures.append(f"{label}: missing")
            continue
        counts["events"] += 1
        event_checks(ev, c, label)
        org = ev["organizer"]["emailAddress"]
        check(str(c.get("ORGANIZER")).lower() == "mailto:" + org["address"].lower(), f"{label}: ORGANIZER")
        got = sorted((str(a).lower(), a.params.get("ROLE"), a.params.get("PARTSTAT"), a.params.get("CN"))
                     for a in listed(c.get("ATTENDEE")))
        want = sorted(("mailto:" + a["emailAddress"]["address"].lower(), ROLE[a["type"]],
                       PARTSTAT[a["status"]["response"]], a["emailAddress"]["name"] or None)
                      for a in ev["attendees"])
        check(got == want, f"{label}: ATTENDEE {got} != {want}")
        counts["attendees"] += len(want)
        got = sorted((a.params.get("X-FILENAME"), a.params.get("FMTTYPE"), base64.b64decode(a.to_ical()))
                     for a in listed(c.get("ATTACH")))
        want = sorted((a["name"], a["contentType"], base64.b64decode(a["contentBytes"]))
                      for a in ev.get("attachments", []))
        check(got == want, f"{label}: ATTACH")
        counts["attachments"] += len(want)
        if ev["isReminderOn"]:
            alarms = c.walk("VALARM")
            check(len(alarms) == 1 and alarms[0].decoded("TRIGGER") == -dt.timedelta(minutes=ev["reminderMinutesBeforeStart"]),
                  f"{label}: VALARM")
        check(set(map(str, listed(c.get("CATEGORIES").cats if c.get("CATEGORIES") else []))) == set(ev["categories"]),
              f"{label}: CATEGORIES")
        if not ev.get("recurrence"):
            check("RRULE" not in c, f"{label}: RRULE on a single event")
            continue
        counts["series"] += 1
        # Expand the series as any iCalendar reader does and compare with Graph's
        # instances: original start -> actual start, for originals inside the window.
        start = c.decoded("DTSTART")
        rs = rrule.rruleset()
        rs.rrule(rrule.rrulestr(c["RRULE"].to_ical().decode(), dtstart=start))
        exdates = [d.dt for e in listed(c.get("EXDATE")) for d in e.dts]
        for d in exdates:
            rs.exdate(d)
        counts["cancelled occurrences"] += len(exdates)
        check(sorted(as_utc(d) for d in exdates) == sorted(graph_utc(x) for x in ev["cancelledOccurrences"]),
              f"{label}: EXDATE")
        mine = {}
        for o in rs.between(lo, hi, inc=True):
            o = as_utc(o)
            override = overrides[uid].get(o)
            mine[o] = as_utc(override.decoded("DTSTART")) if override is not None else o
        graph = {}
        for i in ev["instances"]:
            original = graph_utc(i["originalStart"])
            if lo <= original <= hi:
                graph[original] = graph_utc(i["start"]["dateTime"])
        check(mine == graph, f"{label}: expansion differs from Graph's instances: "
              f"only in ICS {sorted(set(mine.items()) - set(graph.items()))[:3]}, "
              f"only in Graph {sorted(set(graph.items()) - set(mine.items()))[:3]}")
        counts["occurrences"] += len(graph)
        exceptions = [i for i in ev["instances"] if i["type"] == "exception"]
        check(len(overrides[uid]) == len(exceptions), f"{label}: {len(overrides[uid])} RECURRENCE-IDs, Graph has {len(exceptions)} exceptions")
        for i in exceptions:
            o = overrides[uid].get(graph_utc(i["originalStart"]))
            if o is None:
                failures.append(f"{label}: exception {i['originalStart']} missing")
                continue
            counts["exceptions"] += 1
            event_checks(i, o, f"{label} exception {i['originalStart']}")

def check_tasks(path, tasks):
    cal = icalendar.Calendar.from_ical(open(path, "rb").read())
    todos = {str(t["UID"]): t for t in cal.walk("VTODO")}
    check(len(todos) == len(tasks), f"{path}: {len(todos)} tasks, Graph has {len(tasks)}")
    for t in tasks:
        label, c = f"{path}: task {t['id'][-8:]}", todos.get(t["id"])
        if c is None:
            failures.append(f"{label}: missing")
            continue
        counts["tasks"] += 1
        check(str(c["SUMMARY"]) == t["title"], f"{label}: SUMMARY")
        check(str(c["STATUS"]) == TODO_STATUS[t["status"]], f"{label}: STATUS")
        check(int(c["PRIORITY"]) == PRIORITY[t["importance"]], f"{label}: PRIORITY")
        body = t["body"]["content"]
        check((str(c["DESCRIPTION"]) if "DESCRIPTION" in c else "") == body, f"{label}: DESCRIPTION")
        due = t.get("dueDateTime")
        check((c.decoded("DUE") if "DUE" in c else None) == (dt.date.fromisoformat(due["dateTime"][:10]) if due else None), f"{label}: DUE")
        done = t.get("completedDateTime")
        check((as_utc(c.decoded("COMPLETED")) if "COMPLETED" in c else None) == (graph_utc(done["dateTime"]) if done else None),
              f"{label}: COMPLETED")
        check(("RRULE" in c) == bool(t.get("recurrence")), f"{label}: RRULE")
        if t.get("recurrence"):
            counts["recurring tasks"] += 1
        if t.get("isReminderOn"):
            alarms = c.walk("VALARM")
            check(len(alarms) == 1 and as_utc(alarms[0].decoded("TRIGGER")) == graph_utc(t["reminderDateTime"]["dateTime"]),
                  f"{label}: VALARM")

def check_contacts(path, contacts):
    cards = list(vobject.readComponents(open(path, encoding="utf-8").read()))
    by_uid = {c.uid.value: c for c in cards}
    check(len(by_uid) == len(contacts), f"{path}: {len(by_uid)} cards, Graph has {len(contacts)}")
    for entry in contacts:
        j, label = entry["json"], f"{path}: contact {entry['json']['id'][-8:]}"
        c = by_uid.get(j["id"])
        if c is None:
            failures.append(f"{label}: missing")
            continue
        counts["contacts"] += 1
        check(c.version.value == "3.0", f"{label}: VERSION")
        check(c.fn.value == j["displayName"], f"{label}: FN")
        check((c.n.value.family, c.n.value.given) == (j["surname"], j["givenName"]), f"{label}: N")
        check([e.value for e in c.contents.get("email", [])] == [e["address"] for e in j["emailAddresses"]], f"{label}: EMAIL")
        tels = sorted((t.value, tuple(t.params.get("TYPE", []))) for t in c.contents.get("tel", []))
        want = sorted([(p, ("WORK", "VOICE")) for p in j["businessPhones"]] + [(p, ("HOME", "VOICE")) for p in j["homePhones"]]
                      + ([(j["mobilePhone"], ("CELL", "VOICE"))] if j.get("mobilePhone") else []))
        check(tels == want, f"{label}: TEL {tels} != {want}")
        check(c.org.value[0] == j["companyName"], f"{label}: ORG")
        check(c.title.value == j["jobTitle"], f"{label}: TITLE")
        adr = [a for a in c.contents.get("adr", []) if "WORK" in a.params.get("TYPE", [])]
        b = j["businessAddress"]
        check(len(adr) == 1 and (adr[0].value.street, adr[0].value.city, adr[0].value.region, adr[0].value.code, adr[0].value.country)
              == (b["street"], b["city"], b["state"], b["postalCode"], b["countryOrRegion"]), f"{label}: ADR")
        check((c.note.value if "note" in c.contents else "") == j["personalNotes"], f"{label}: NOTE")
        check((c.bday.value if "bday" in c.contents else None) == (j["birthday"][:10] if j.get("birthday") else None), f"{label}: BDAY")
        check(sorted(c.categories.value if "categories" in c.contents else []) == sorted(j["categories"]), f"{label}: CATEGORIES")
        photo = entry.get("photo")
        if photo:
            counts["photos"] += 1
            check("photo" in c.contents and c.photo.value == base64.b64decode(photo)
                  and c.photo.params.get("TYPE") == [entry["media"].split("/")[1].upper()], f"{label}: PHOTO")
        else:
            check("photo" not in c.contents, f"{label}: PHOTO without a photo")

work = sys.argv[1]
docs = json.load(open(f"{work}/documents.json", encoding="utf-8"))
for box in docs:
    for cal in box["calendars"]:
        check_calendar(f"{work}/{cal['file']}", cal["events"], box["window"])
    for lst in box["tasks"]:
        check_tasks(f"{work}/{lst['file']}", lst["tasks"])
    for folder in box["contacts"]:
        check_contacts(f"{work}/{folder['file']}", folder["contacts"])
    settings = json.load(open(f"{work}/{box['settings']['file']}", encoding="utf-8"))
    want = {k: v for k, v in box["settings"]["json"].items() if k != "@odata.context"}
    check(settings == want, f"{box['settings']['file']}: JSON differs")
    counts["settings"] += 1
for what in ["events", "series", "exceptions", "cancelled occurrences", "all-day events", "attendees",
             "attachments", "tasks", "recurring tasks", "contacts", "photos", "settings"]:
    check(counts[what] > 0, f"nothing of kind {what!r} was checked")
for f in failures[:40]:
    print("FAIL", f)
print(json.dumps(counts, sort_keys=True))
sys.exit(1 if failures else 0)
"#;

fn pim_tenant() -> SimConfig {
    let mut cfg = SimConfig::with_size(11, 6, 2);
    cfg.granted_roles = [
        roles::USER_READ_ALL,
        roles::MAIL_READ,
        roles::CALENDARS_READ,
        roles::CONTACTS_READ,
        roles::TASKS_READ_ALL,
        roles::MAILBOX_SETTINGS_READ,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    cfg
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("id")
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // Every kind read, documented and written, in one place.
async fn exported_calendars_tasks_and_contacts_read_back_in_python() {
    let sim = start(pim_tenant()).await;
    let c = client(&sim);
    let work = tempfile::tempdir().expect("temp dir");
    let at = sim.config().generated_at;
    // Inside the generated data's span; Graph is asked a day wider so that an occurrence
    // moved across the edge is still listed.
    let window = (at - Duration::days(400), at + Duration::days(400));
    let mut boxes = Vec::new();
    let users: Vec<_> = sim.users().into_iter().filter(|u| u.has_mailbox).collect();
    assert!(users.len() >= 4, "a mailbox per generated time zone");
    for (n, user) in users.iter().enumerate() {
        let owner = mailbox(user);
        let dump = sim.dump_pim(&user.upn).expect("dump");
        let mut calendars = Vec::new();
        for (k, cal) in c
            .list_calendars(&owner)
            .await
            .expect("calendars")
            .iter()
            .enumerate()
        {
            let mut events = c
                .list_calendar_events(&owner, id(cal))
                .await
                .expect("events");
            let mut file = Calendar::new(cal["name"].as_str());
            for ev in &mut events {
                let eid = id(ev).to_owned();
                if ev["hasAttachments"] == true {
                    ev["attachments"] =
                        Value::Array(c.event_attachments(&owner, &eid).await.expect("files"));
                }
                if ev["type"] == "seriesMaster" {
                    let instances = c
                        .event_instances(
                            &owner,
                            &eid,
                            window.0 - Duration::days(1),
                            window.1 + Duration::days(1),
                        )
                        .await
                        .expect("instances");
                    // Graph leaves cancelled occurrences out of `instances`: they are
                    // the rule's occurrences it does not list — exactly the ones the
                    // simulator's dump records as cancelled.
                    let cancelled =
                        export::cancelled_occurrences(ev, &instances, window.0, window.1)
                            .expect("expands");
                    let mut truth: Vec<&str> = dump
                        .items
                        .iter()
                        .filter(|i| i.id == eid)
                        .flat_map(|i| &i.exceptions)
                        .filter(|e| e.cancelled)
                        .map(|e| e.original_start.as_str())
                        .collect();
                    truth.sort_unstable();
                    assert_eq!(cancelled, truth, "cancelled occurrences of {eid}");
                    ev["instances"] = Value::Array(instances);
                    ev["cancelledOccurrences"] = json!(cancelled);
                }
                file.add_event(ev).expect("event converts");
            }
            let name = format!("m{n}-calendar{k}.ics");
            std::fs::write(work.path().join(&name), file.finish()).expect("write");
            calendars.push(json!({"file": name, "events": events}));
        }
        let mut tasks = Vec::new();
        for (k, list) in c
            .list_todo_lists(&owner)
            .await
            .expect("lists")
            .iter()
            .enumerate()
        {
            let items = c.list_todo_tasks(&owner, id(list)).await.expect("tasks");
            let mut file = Calendar::new(list["displayName"].as_str());
            for t in &items {
                file.add_task(t).expect("task converts");
            }
            let name = format!("m{n}-tasks{k}.ics");
            std::fs::write(work.path().join(&name), file.finish()).expect("write");
            tasks.push(json!({"file": name, "tasks": items}));
        }
        let mut contacts = Vec::new();
        let mut folders = vec![json!({"id": "contacts"})];
        folders.extend(
            c.list_contact_folders(&owner, None)
                .await
                .expect("contact folders"),
        );
        for (k, folder) in folders.iter().enumerate() {
            let items = c
                .list_folder_contacts(&owner, id(folder))
                .await
                .expect("contacts");
            let mut file = Cards::new();
            let mut entries = Vec::new();
            for j in items {
                let photo = c.contact_photo(&owner, id(&j)).await.expect("photo");
                file.add(
                    &j,
                    photo.as_ref().map(|(media, bytes)| Photo {
                        media_type: media,
                        bytes,
                    }),
                )
                .expect("contact converts");
                entries.push(json!({
                    "json": j,
                    "photo": photo.as_ref().map(|(_, b)| STANDARD.encode(b)),
                    "media": photo.as_ref().map(|(m, _)| m.clone()),
                }));
            }
            let name = format!("m{n}-contacts{k}.vcf");
            std::fs::write(work.path().join(&name), file.finish()).expect("write");
            contacts.push(json!({"file": name, "contacts": entries}));
        }
        let settings = c.mailbox_settings_json(&owner).await.expect("settings");
        let name = format!("m{n}-settings.json");
        std::fs::write(
            work.path().join(&name),
            export::to_json(&settings).expect("json"),
        )
        .expect("write");
        boxes.push(json!({
            "window": [window.0.to_rfc3339(), window.1.to_rfc3339()],
            "calendars": calendars, "tasks": tasks, "contacts": contacts,
            "settings": {"file": name, "json": settings},
        }));
    }
    std::fs::write(
        work.path().join("documents.json"),
        serde_json::to_vec(&boxes).expect("json"),
    )
    .expect("write");
    run_python(work.path());
}

fn run_python(dir: &Path) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(CHECK)
        .arg(dir)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the exports do not read back:\n{text}"
    );
    // What was checked, per kind (the script fails when a kind was not checked at all).
    eprintln!("{text}");
}

/// The VTIMEZONE written for each known Windows zone (today's Windows rules), read by
/// `icalendar` on its own (`to_tz(lookup_tzid=False)`: without the time-zone database),
/// gives the same UTC offsets as the IANA database does for its TZID over two years,
/// every six hours — the table's rules and the 1970-anchored RRULEs checked at once.
#[test]
fn every_vtimezone_agrees_with_the_iana_database() {
    const CHECK_ZONES: &str = r#"
import datetime as dt, sys, zoneinfo
try:
    import icalendar
except ImportError as e:
    sys.exit(f"Python's icalendar is needed ({e}): python3 -m pip install icalendar (.ci/run and scripts/test.sh do)")
cal = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
zones, bad = cal.walk("VTIMEZONE"), []
for vtz in zones:
    tzid = str(vtz["TZID"])
    mine, ref = vtz.to_tz(lookup_tzid=False), zoneinfo.ZoneInfo(tzid)
    t = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    while t.year < 2027:
        if t.astimezone(mine).utcoffset() != t.astimezone(ref).utcoffset():
            bad.append(f"{tzid} at {t}: {t.astimezone(mine).utcoffset()} != {t.astimezone(ref).utcoffset()}")
            break
        t += dt.timedelta(hours=6)
print(len(zones), "zones")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad or len(zones) < 50 else 0)
"#;
    let mut cal = Calendar::new(None);
    for (n, (windows, _)) in export::known_time_zones().enumerate() {
        cal.add_event(&json!({
            "id": format!("zone{n}"),
            "start": {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": windows},
        }))
        .expect("converts");
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), cal.finish()).expect("write");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(CHECK_ZONES)
        .arg(file.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "VTIMEZONEs disagree with the IANA database:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
