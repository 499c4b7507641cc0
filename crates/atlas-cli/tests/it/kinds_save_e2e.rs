//! `atlas save --format ics|vcf|json` of a whole-mailbox snapshot through the binary
//! against the simulator, each file read back by an independent parser (Python's
//! `icalendar`, `vobject`, `json`) and compared with the simulator's own dump: every
//! event with its attendees, attachments, changed occurrences (RECURRENCE-ID) and
//! cancelled ones (EXDATE, stored at backup time so the export works offline), every task,
//! every contact with its photo, the configuration. The mail formats leave the other kinds
//! out and say which format takes them. `.ci/run` and `scripts/test.sh` install the Python
//! packages; without them the test fails rather than skips.

// End-to-end scenarios read best as one story each.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::Path;

use atlas_core::model::{ContentKind, ItemKind};
use serde_json::{Value, json};

use super::graph_e2e::Sim;
use super::{Sandbox, output_text};

const CHECK: &str = r#"
import base64, collections, datetime as dt, hashlib, io, json, posixpath, sys, zipfile
try:
    import icalendar, vobject
except ImportError as e:
    sys.exit(f"Python's icalendar and vobject are needed ({e}): "
             "python3 -m pip install icalendar vobject (.ci/run and scripts/test.sh do)")

UTC = dt.timezone.utc
failures, counts = [], collections.Counter()
def check(cond, what):
    if not cond:
        failures.append(what)

def utc(x):
    if isinstance(x, dt.datetime):
        return x.astimezone(UTC) if x.tzinfo else x.replace(tzinfo=UTC)
    return x

def parse_utc(s):
    if len(s) == 10:
        return dt.date.fromisoformat(s)
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)

def listed(v):
    return [] if v is None else v if isinstance(v, list) else [v]

def entries(path, ext):
    z = zipfile.ZipFile(path)
    check(z.comment.startswith(b"Atlas export"), f"{path}: not marked as an Atlas export")
    out = []
    for name in z.namelist():
        check(name.endswith("." + ext), f"{path}: entry {name} is not .{ext}")
        out.append((posixpath.dirname(name), z.read(name)))
    return out

work = sys.argv[1]
dump = json.load(open(f"{work}/dump.json", encoding="utf-8"))
items = dump["items"]
of = lambda cls: [i for i in items if i["class"] == cls]

# iCalendar: every event (series with RECURRENCE-IDs and EXDATEs) and every task.
masters, overrides, todos = {}, collections.defaultdict(dict), {}
for folder, data in entries(f"{work}/ics.zip", "ics"):
    cal = icalendar.Calendar.from_ical(data)
    for c in cal.walk("VEVENT"):
        if "RECURRENCE-ID" in c:
            overrides[str(c["UID"])][utc(c.decoded("RECURRENCE-ID"))] = c
        else:
            check(str(c["UID"]) not in masters, f"event {c['UID']} written twice")
            masters[str(c["UID"])] = (folder, c)
    for t in cal.walk("VTODO"):
        todos.setdefault(str(t["SUMMARY"]), []).append((folder, t))
events = of("IPM.Appointment")
check(len(masters) == len(events), f"{len(masters)} VEVENTs, the mailbox has {len(events)} events")
for ev in events:
    p, label = ev["props"], f"event {ev['id'][-8:]}"
    got = masters.get(p["iCalUId"])
    if got is None:
        failures.append(f"{label}: missing")
        continue
    folder, c = got
    counts["events"] += 1
    check(folder == ev["folder_path"], f"{label}: in {folder}, not {ev['folder_path']}")
    check(str(c["SUMMARY"]) == p["subject"], f"{label}: SUMMARY")
    check(len(listed(c.get("ATTENDEE"))) == len(p["attendees"]), f"{label}: ATTENDEE")
    counts["attendees"] += len(p["attendees"])
    attached = sorted(hashlib.sha256(base64.b64decode(a.to_ical())).hexdigest() for a in listed(c.get("ATTACH")))
    check(attached == sorted(a["sha256"] for a in ev["attachments"]), f"{label}: ATTACH")
    counts["attachments"] += len(attached)
    if not p.get("recurrence"):
        continue
    counts["series"] += 1
    exdates = sorted(utc(d.dt) for e in listed(c.get("EXDATE")) for d in e.dts)
    cancelled = sorted(parse_utc(x["original_start"]) for x in ev["exceptions"] if x["cancelled"])
    check(exdates == cancelled, f"{label}: EXDATE {exdates} != cancelled {cancelled}")
    counts["cancelled occurrences"] += len(exdates)
    changed = {parse_utc(x["original_start"]): x["props"] for x in ev["exceptions"] if not x["cancelled"]}
    mine = overrides.get(p["iCalUId"], {})
    check(set(mine) == set(changed), f"{label}: RECURRENCE-ID {sorted(mine)} != changed {sorted(changed)}")
    for when, props in changed.items():
        o = mine.get(when)
        if o is not None and "subject" in props:
            check(str(o["SUMMARY"]) == props["subject"], f"{label}: SUMMARY of the occurrence {when}")
        counts["changed occurrences"] += 1
tasks = of("IPM.Task")
check(sum(map(len, todos.values())) == len(tasks), f"{sum(map(len, todos.values()))} VTODOs, the mailbox has {len(tasks)} tasks")
for t in tasks:
    got = todos.get(t["props"]["title"], [])
    check(any(f == t["folder_path"] for f, _ in got), f"task {t['id'][-8:]}: missing from {t['folder_path']}")
    counts["tasks"] += 1

# vCard: every contact with its photo.
cards = {}
for folder, data in entries(f"{work}/vcf.zip", "vcf"):
    for card in vobject.readComponents(data.decode("utf-8")):
        cards[card.uid.value] = (folder, card)
contacts = of("IPM.Contact")
check(len(cards) == len(contacts), f"{len(cards)} vCards, the mailbox has {len(contacts)} contacts")
for ct in contacts:
    label, got = f"contact {ct['id'][-8:]}", cards.get(ct["id"])
    if got is None:
        failures.append(f"{label}: missing")
        continue
    folder, card = got
    counts["contacts"] += 1
    check(folder == ct["folder_path"], f"{label}: in {folder}, not {ct['folder_path']}")
    check(card.fn.value == ct["props"]["displayName"], f"{label}: FN")
    photo = hashlib.sha256(card.photo.value).hexdigest() if "photo" in card.contents else None
    check(photo == ct["photo_sha256"], f"{label}: PHOTO")
    counts["photos"] += photo is not None

# eml-zip: mail only.
check(len(entries(f"{work}/mail-eml-zip", "eml")) > 0, "no mail in the eml-zip")

# JSON: every event, contact and task, and the configuration.
docs = collections.defaultdict(list)
for folder, data in entries(f"{work}/json.zip", "json"):
    docs[folder].append(json.loads(data))
for i in events + contacts + tasks:
    key = "iCalUId" if i["class"] == "IPM.Appointment" else "displayName" if i["class"] == "IPM.Contact" else "title"
    found = [d for d in docs.get(i["folder_path"], []) if d.get(key) == i["props"][key]]
    check(len(found) >= 1, f"{i['class']} {i['id'][-8:]}: no JSON file in {i['folder_path']}")
    counts["json items"] += 1
config = docs.get("Configuration", [])
settings = [d for d in config if "timeZone" in d]
check(len(settings) == 1 and settings[0]["timeZone"] == dump["settings"]["timeZone"], "mailboxSettings.json")
rules = [d for d in config if d.get("value") and "sequence" in d["value"][0]]
check(len(rules) == 1 and len(rules[0]["value"]) == len(dump["rules"]), "messageRules.json")
counts["configuration"] += len(config)

for what in ["events", "series", "cancelled occurrences", "changed occurrences", "attendees",
             "attachments", "tasks", "contacts", "photos", "json items", "configuration"]:
    check(counts[what] > 0, f"nothing of kind {what!r} was checked")
for f in failures[:40]:
    print("FAIL", f)
print(json.dumps(counts, sort_keys=True))
sys.exit(1 if failures else 0)
"#;

fn run_python(dir: &Path) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(CHECK)
        .arg(dir)
        .output()
        .expect("python3 runs");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "the exports do not read back:\n{text}"
    );
    eprintln!("{text}");
}

/// `atlas --json save …`, its exit code and summary.
fn save(sim: &Sim, sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = sandbox
        .atlas_for(sim)
        .arg("--json")
        .arg("save")
        .args(args)
        .output()
        .expect("runs");
    let text = output_text(&out);
    let doc = if out.status.success() {
        super::json_schemas::assert_schema("save", &out)
    } else {
        Value::Null
    };
    (out.status.code(), doc, text)
}

#[test]
fn each_export_format_of_a_whole_mailbox_reads_back_and_mail_formats_skip_other_kinds() {
    let sim = Sim::every_kind();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    let out = sandbox.against(&sim).arg("init").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let backup = |sandbox: &Sandbox| {
        let out = sandbox
            .against(&sim)
            .args(["backup", "-m", &upn])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    };
    backup(&sandbox);

    // Between backups: cancel one more occurrence of a series and change another, so the
    // incremental stores both and the export must show them (EXDATE, RECURRENCE-ID).
    let dump = sim.handle.dump_pim(&upn).expect("dump");
    let series = dump
        .items
        .iter()
        .find(|i| i.exceptions.iter().any(|e| e.cancelled))
        .expect("a series with a cancelled occurrence");
    let taken: Vec<&str> = series
        .exceptions
        .iter()
        .map(|e| e.original_start.as_str())
        .collect();
    let starts = series_starts(&series.props);
    let mut free = starts.iter().filter(|s| !taken.contains(&s.as_str()));
    let cancel = free.next().expect("an occurrence to cancel").clone();
    let change = free.next().expect("an occurrence to change").clone();
    sim.handle
        .set_occurrence(&upn, &series.id, cancel.parse().expect("instant"), None)
        .expect("cancel");
    sim.handle
        .set_occurrence(
            &upn,
            &series.id,
            change.parse().expect("instant"),
            Some(json!({"subject": "Stand-up in the big room"})),
        )
        .expect("change");
    backup(&sandbox);

    let work = tempfile::tempdir().expect("tempdir");
    let dump = sim.handle.dump_pim(&upn).expect("dump");
    let changed = dump
        .items
        .iter()
        .find(|i| i.id == series.id)
        .expect("series");
    assert!(
        changed
            .exceptions
            .iter()
            .any(|e| e.cancelled && e.original_start == cancel)
    );
    std::fs::write(
        work.path().join("dump.json"),
        serde_json::to_vec(&dump).expect("json"),
    )
    .expect("write");
    let count = |class: &str| dump.items.iter().filter(|i| i.class == class).count() as u64;
    let save_as = |format: &str, path: &Path| {
        save(
            &sim,
            &sandbox,
            &[
                "-m",
                &upn,
                "--format",
                format,
                "-o",
                path.to_str().expect("utf-8"),
            ],
        )
    };

    let mut written = 0;
    for (format, kinds) in [
        ("ics", count("IPM.Appointment") + count("IPM.Task")),
        ("vcf", count("IPM.Contact")),
        (
            "json",
            count("IPM.Appointment") + count("IPM.Task") + count("IPM.Contact") + 3,
        ),
    ] {
        let path = work.path().join(format!("{format}.zip"));
        let (code, doc, text) = save_as(format, &path);
        assert_eq!(code, Some(0), "{format}: {text}");
        assert_eq!(doc["format"], format, "{doc}");
        assert_eq!(doc["messages"], kinds, "{format}: {doc}");
        assert!(doc["failed"].as_array().is_some_and(Vec::is_empty), "{doc}");
        let skipped = doc["skipped"].as_array().cloned().unwrap_or_default();
        assert!(
            skipped.iter().any(|s| s["kind"] == "mail"),
            "{format}: mail is not counted as skipped: {doc}"
        );
        written += 1;
    }
    assert_eq!(written, 3);

    // The mail formats take mail only and say where the rest goes.
    for format in ["eml-zip", "mbox"] {
        let path = work.path().join(format!("mail-{format}"));
        let (code, doc, text) = save_as(format, &path);
        assert_eq!(code, Some(0), "{format}: {text}");
        let skipped = doc["skipped"].as_array().cloned().unwrap_or_default();
        let of = |kind: &str| skipped.iter().find(|s| s["kind"] == kind).cloned();
        assert_eq!(
            of("calendar").map(|s| s["items"].clone()),
            Some(json!(count("IPM.Appointment"))),
            "{doc}"
        );
        assert_eq!(
            of("calendar").map(|s| s["formats"].clone()),
            Some(json!(["ics", "json"]))
        );
        assert_eq!(
            of("contacts").map(|s| s["formats"].clone()),
            Some(json!(["vcf", "json"]))
        );
        assert_eq!(
            of("tasks").map(|s| s["items"].clone()),
            Some(json!(count("IPM.Task")))
        );
        assert_eq!(
            of("notes").map(|s| s["formats"].clone()),
            Some(json!([])),
            "sticky notes: no readable form"
        );
        assert_eq!(of("config").map(|s| s["items"].clone()), Some(json!(3)));
        assert!(of("mail").is_none(), "{doc}");
    }
    // Python reads every export, the eml-zip too (only .eml entries).
    run_python(work.path());
    let out = sandbox
        .atlas_for(&sim)
        .args(["save", "-m", &upn, "-o"])
        .arg(work.path().join("text.zip"))
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "calendar item(s): --format eml-zip does not hold them; --format ics or json takes them"
        ),
        "{text}"
    );

    // A kind the format cannot hold is refused up front; a kind filter narrows.
    let (code, _, text) = save(
        &sim,
        &sandbox,
        &["-m", &upn, "--format", "ics", "--kind", "contacts"],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("does not hold contacts items; --format vcf or json takes them"),
        "{text}"
    );
    let path = work.path().join("tasks.zip");
    let (code, doc, text) = save(
        &sim,
        &sandbox,
        &[
            "-m",
            &upn,
            "--format",
            "ics",
            "--kind",
            "tasks",
            "-o",
            path.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(doc["messages"], count("IPM.Task"), "{doc}");
    assert!(
        doc["skipped"].as_array().is_some_and(Vec::is_empty),
        "{doc}"
    );
}

/// The original starts (UTC, `Z`) of a series' occurrences, expanded from its rule.
fn series_starts(props: &Value) -> Vec<String> {
    let now = chrono::Utc::now();
    atlas_core::export::occurrences(
        props,
        now - chrono::Duration::days(3 * 366),
        now + chrono::Duration::days(3 * 366),
    )
    .expect("the series expands")
    .into_iter()
    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    .collect()
}

/// Every stored representation of every item of the newest snapshot of `upn` in the
/// repository at `repo`: (kind, REST id, representation) → bytes.
type Contents = BTreeMap<(ItemKind, String, ContentKind), Vec<u8>>;

fn contents(sim: &Sim, repo: &Path, upn: &str) -> Contents {
    sim.latest_contents(repo, upn)
        .into_iter()
        .map(|(m, kind, bytes)| ((m.kind, atlas_graph::rest_id(m.id.as_str()), kind), bytes))
        .collect()
}

/// How many items of `kind` `contents` holds.
fn items_of(contents: &Contents, kind: ItemKind) -> usize {
    contents
        .keys()
        .filter(|(k, _, c)| *k == kind && *c == kind.primary_content())
        .count()
}

#[test]
fn every_kind_is_counted_verified_kept_by_forget_and_prune_and_replicated() {
    let sim = Sim::every_kind();
    let sandbox = Sandbox::new();
    let upn = sim.licensed_users().remove(0);
    let atlas = |args: &[&str]| {
        let out = sandbox.against(&sim).args(args).output().expect("runs");
        (out.status.code(), output_text(&out), out)
    };
    assert_eq!(atlas(&["init"]).0, Some(0));
    let (code, text, _) = atlas(&["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    // The text summary counts per kind, spelled as --kinds takes them.
    let by_kind = text
        .lines()
        .find(|l| l.starts_with("By kind: "))
        .unwrap_or_else(|| panic!("no By kind line: {text}"));
    for kind in super::kinds_e2e::KINDS {
        assert!(by_kind.contains(&format!(" {kind} ")), "{kind}: {by_kind}");
    }
    // The second snapshot: one event changed, one contact gone, so the first holds
    // content the second does not (what prune may free) and shares the rest.
    let dump = sim.handle.dump_pim(&upn).expect("dump");
    let event = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Appointment")
        .expect("an event");
    sim.handle
        .update_item(&upn, &event.id, json!({"subject": "Renamed before prune"}))
        .expect("change");
    let contact = dump
        .items
        .iter()
        .find(|i| i.class == "IPM.Contact")
        .expect("a contact");
    sim.handle.delete_item(&upn, &contact.id).expect("delete");
    let (code, text, _) = atlas(&["backup", "-m", &upn]);
    assert_eq!(code, Some(0), "{text}");
    let before = contents(&sim, &sandbox.repo(), &upn);
    let dump = sim.handle.dump_pim(&upn).expect("dump");
    let count = |class: &str| dump.items.iter().filter(|i| i.class == class).count();
    assert_eq!(
        items_of(&before, ItemKind::Calendar),
        count("IPM.Appointment")
    );
    assert_eq!(items_of(&before, ItemKind::Contact), count("IPM.Contact"));
    assert!(before.contains_key(&(ItemKind::Calendar, event.id.clone(), ContentKind::Json)));

    // stats --kind: only that kind's folders, every representation in the sizes.
    for (kind, class) in [
        ("calendar", "IPM.Appointment"),
        ("contacts", "IPM.Contact"),
        ("tasks", "IPM.Task"),
    ] {
        let out = sandbox
            .atlas_for(&sim)
            .args(["--json", "stats", "-m", &upn, "--kind", kind])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let stats = super::json_schemas::assert_schema("stats", &out);
        let folders = stats["folders"].as_array().cloned().unwrap_or_default();
        assert!(!folders.is_empty(), "{stats}");
        assert!(folders.iter().all(|f| f["kind"] == kind), "{kind}: {stats}");
        let items: u64 = folders.iter().filter_map(|f| f["messages"].as_u64()).sum();
        assert_eq!(items, count(class) as u64, "{kind}: {stats}");
        let stored: u64 = before
            .iter()
            .filter(|((k, _, _), _)| k.name() == kind)
            .map(|(_, b)| b.len() as u64)
            .sum();
        let logical: u64 = folders
            .iter()
            .filter_map(|f| f["logicalBytes"].as_u64())
            .sum();
        assert_eq!(logical, stored, "{kind}: export stream and JSON counted");
    }
    let out = sandbox
        .atlas_for(&sim)
        .args(["stats", "--kind", "contacts"])
        .output()
        .expect("runs");
    let text = output_text(&out);
    assert!(
        text.contains("contacts") && !text.contains("Inbox"),
        "{text}"
    );

    let (code, text, _) = atlas(&["verify", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");

    // forget + prune removes the first snapshot; the second keeps every blob its
    // events, contacts, tasks, notes and configuration need.
    let (code, text, _) = atlas(&["forget", "-m", &upn, "--keep-last", "1", "--prune"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text, _) = atlas(&["verify", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(contents(&sim, &sandbox.repo(), &upn), before);
    let work = tempfile::tempdir().expect("tempdir");
    for format in ["ics", "vcf", "json"] {
        let (code, doc, text) = save(
            &sim,
            &sandbox,
            &[
                "-m",
                &upn,
                "--format",
                format,
                "-o",
                work.path().join(format).to_str().expect("utf-8"),
            ],
        );
        assert_eq!(code, Some(0), "{format} after prune: {text}");
        assert!(doc["failed"].as_array().is_some_and(Vec::is_empty), "{doc}");
    }

    // replicate: the replica holds the same items, byte for byte, every representation.
    let replica = sandbox.repo().with_file_name("replica");
    let (code, text, _) = atlas(&[
        "replicate",
        "--all",
        "--target-repository",
        replica.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(contents(&sim, &replica, &upn), before);
}
