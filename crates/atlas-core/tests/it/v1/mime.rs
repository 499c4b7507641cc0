//! Rebuilt MIME of every fixture message, parsed by Python's `email` package
//! (policy=default): subjects, senders, bodies and attachment bytes as expected, CRLF
//! everywhere, no Bcc header.

use std::process::Command;

use atlas_core::compat::v1::mime::{MimeAttachment, rebuild_message};
use atlas_core::compat::v1::{GraphMessage, V1Payload};
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::v1::common::{LUCAS, OMAR, expected_snapshots, fixture};

const CHECK: &str = r#"
import email, email.policy, hashlib, json, os, sys
d = sys.argv[1]
cases = json.load(open(os.path.join(d, "cases.json"), encoding="utf-8"))
def norm(s):
    return s.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
bad = []
for c in cases:
    raw = open(os.path.join(d, c["file"]), "rb").read()
    where = c["file"]
    if b"\n" in raw.replace(b"\r\n", b"") or b"\r" in raw.replace(b"\r\n", b""):
        bad.append(where + ": bare LF or CR")
    if any(len(l) > 998 for l in raw.split(b"\r\n")):
        bad.append(where + ": line over 998")
    head = raw.split(b"\r\n\r\n", 1)[0]
    if any(b > 127 for b in head):
        bad.append(where + ": 8-bit header bytes")
    m = email.message_from_bytes(raw, policy=email.policy.default)
    if m.defects:
        bad.append(where + ": defects " + repr(m.defects))
    if "Bcc" in m:
        bad.append(where + ": Bcc header written")
    if (m["subject"] or "") != c["subject"]:
        bad.append(where + ": subject %r != %r" % (m["subject"], c["subject"]))
    frm = m["from"].addresses[0].addr_spec if m["from"] and m["from"].addresses else ""
    if frm.lower() != c["from"].lower():
        bad.append(where + ": from %r != %r" % (frm, c["from"]))
    if c.get("from_name") is not None and m["from"].addresses[0].display_name != c["from_name"]:
        bad.append(where + ": from name %r" % m["from"].addresses[0].display_name)
    if c.get("reply_to") is not None and [a.addr_spec for a in m["reply-to"].addresses] != c["reply_to"]:
        bad.append(where + ": reply-to %r" % m["reply-to"])
    if c.get("to_names") is not None and [a.display_name for a in m["to"].addresses] != c["to_names"]:
        bad.append(where + ": to names %r" % [a.display_name for a in m["to"].addresses])
    if c["message_id"] is not None and m["message-id"] != c["message_id"]:
        bad.append(where + ": message-id %r" % m["message-id"])
    if m["mime-version"] != "1.0" or m["date"] is None:
        bad.append(where + ": MIME-Version/Date")
    ctype = "html" if c["html"] else "plain"
    body = m.get_body(preferencelist=(ctype,))
    if body is None or norm(body.get_content()) != norm(c["body"]):
        bad.append(where + ": %s body differs" % ctype)
    if c["html"]:
        text = m.get_body(preferencelist=("plain",))
        if text is None or (c["body"].strip() and not text.get_content().strip()):
            bad.append(where + ": no text alternative")
    for part in m.walk():
        if part.get_content_maintype() == "text":
            cte = (part["content-transfer-encoding"] or "7bit").lower()
            if cte not in ("quoted-printable", "base64"):
                bad.append(where + ": text part declared " + cte)
    got = []
    for part in m.iter_attachments():
        data = part.get_content()
        if isinstance(data, str):
            data = data.encode("utf-8")
        got.append({"sha256": hashlib.sha256(data).hexdigest(), "name": part.get_filename(),
                    "cid": (part["content-id"] or "").strip("<>") or None})
    # Inline images sit in multipart/related, which iter_attachments does not list.
    for part in m.walk():
        if part["content-id"] and part.get_content_disposition() == "inline" and not any(
                g["cid"] == part["content-id"].strip("<>") for g in got):
            got.append({"sha256": hashlib.sha256(part.get_content()).hexdigest(),
                        "name": part.get_filename(), "cid": part["content-id"].strip("<>")})
    want = sorted((a["sha256"], a["name"]) for a in c["attachments"])
    if sorted((g["sha256"], g["name"]) for g in got) != want:
        bad.append(where + ": attachments %r != %r" % (got, want))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("checked", len(cases))
"#;

/// Run the Python checker over `cases` (files already in `dir`); returns its stdout.
fn python_check(dir: &std::path::Path, cases: &[serde_json::Value]) -> String {
    std::fs::write(dir.join("cases.json"), serde_json::to_vec(cases).unwrap()).unwrap();
    std::fs::write(dir.join("check.py"), CHECK).unwrap();
    let out = Command::new("python3")
        .arg(dir.join("check.py"))
        .arg(dir)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "python email check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What the fixture lacks: Bcc, Reply-To, quoted and non-ASCII display names, a long
/// multi-word non-ASCII subject, a text body with long non-ASCII lines, a non-ASCII file
/// name, no Message-ID.
#[test]
fn hard_cases_rebuild_correctly() {
    let graph: GraphMessage = serde_json::from_value(json!({
        "id": "AAMkSynthetic=",
        "subject": "Zażółć gęślą jaźń — a long subject that needs several encoded words ✓ 日本語",
        "body": {"contentType": "text", "content": format!("Hyvää päivää\r\n{}\nend", "ä".repeat(300))},
        "from": {"emailAddress": {"name": "Müller, \"Hans\"", "address": "hans@example.com"}},
        "sender": {"emailAddress": {"name": "Assistant", "address": "assistant@example.com"}},
        "toRecipients": [
            {"emailAddress": {"name": "Doe, John", "address": "john@example.com"}},
            {"emailAddress": {"name": "Ångström", "address": "a@example.com"}},
            {"emailAddress": {"name": "", "address": "plain@example.com"}}
        ],
        "bccRecipients": [{"emailAddress": {"name": "Secret", "address": "secret@example.com"}}],
        "replyTo": [{"emailAddress": {"name": "List", "address": "list@example.com"}}],
        "sentDateTime": "2026-01-02T03:04:05Z"
    }))
    .unwrap();
    let data = Bytes::from((0..=255u8).cycle().take(5000).collect::<Vec<u8>>());
    let name = "Résumé — quarterly numbers for the board meeting (final, ✓).pdf";
    let attachments = [MimeAttachment {
        name: name.to_owned(),
        content_type: "application/pdf".to_owned(),
        content_id: None,
        inline: false,
        data: data.clone(),
    }];
    let mime = rebuild_message(&graph, &attachments);
    let text = String::from_utf8(mime.clone()).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("\nbcc:"),
        "no Bcc header"
    );
    assert!(!text.contains("secret@example.com"));
    assert!(text.contains("Sender: Assistant <assistant@example.com>"));
    assert_eq!(rebuild_message(&graph, &attachments), mime, "deterministic");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0.eml"), &mime).unwrap();
    let case = json!({
        "file": "0.eml",
        "subject": graph.subject,
        "from": "hans@example.com",
        "from_name": "Müller, \"Hans\"",
        "to_names": ["Doe, John", "Ångström", ""],
        "reply_to": ["list@example.com"],
        "message_id": null,
        "html": false,
        "body": graph.body.as_ref().unwrap().content,
        "attachments": [{"sha256": hex::encode(Sha256::digest(&data)), "name": name}],
    });
    assert_eq!(python_check(dir.path(), &[case]), "checked 1");
}

#[tokio::test]
async fn rebuilt_mime_parses_in_python_with_expected_content() {
    let repo = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut non_ascii_subjects = 0;
    let mut inline = 0;
    for mailbox in [LUCAS, OMAR] {
        let list = repo.list_snapshots(mailbox).await.unwrap();
        for (snap, want) in list.snapshots.iter().zip(expected_snapshots(mailbox)) {
            for m in want["messages"].as_array().unwrap() {
                let entry = snap
                    .manifest
                    .entries
                    .iter()
                    .find(|e| e.object_id == m["graph_id"].as_str().unwrap())
                    .unwrap();
                let rebuilt = repo.rebuild_mime(mailbox, entry).await.unwrap();
                assert!(rebuilt.attachment_errors.is_empty());
                let again = repo.rebuild_mime(mailbox, entry).await.unwrap();
                assert_eq!(rebuilt.mime, again.mime, "deterministic output");
                let V1Payload::Graph(graph) = repo.read_message(mailbox, entry).await.unwrap()
                else {
                    panic!("v1 stores Graph JSON");
                };
                let body = graph.body.clone().unwrap_or_default();
                let subject = m["subject"].as_str().unwrap();
                if !subject.is_ascii() {
                    non_ascii_subjects += 1;
                }
                inline += entry.attachments.iter().filter(|a| a.is_inline).count();
                let file = format!("{}.eml", cases.len());
                std::fs::write(dir.path().join(&file), &rebuilt.mime).unwrap();
                let attachments: Vec<_> = m["attachments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| json!({"sha256": a["sha256"], "name": a["name"]}))
                    .collect();
                assert_eq!(rebuilt.attachment_count as usize, attachments.len());
                cases.push(json!({
                    "file": file,
                    "subject": subject,
                    "from": m["from_address"],
                    "message_id": m["internet_message_id"],
                    "html": body.is_html(),
                    "body": body.content.unwrap_or_default(),
                    "attachments": attachments,
                }));
            }
        }
    }
    assert_eq!(cases.len(), 74);
    assert!(non_ascii_subjects >= 3, "fixture has non-ASCII subjects");
    assert!(inline >= 2, "fixture has inline images");
    assert_eq!(python_check(dir.path(), &cases), "checked 74");
}
