//! vCard 3.0 (RFC 2426) from Graph's readable JSON of a contact (`contact` resource), with
//! its photo. docs/EXPORT.md lists the mapping property by property.
//!
//! Version 3.0 rather than 4.0 (RFC 6350): Outlook for Windows imports vCard 2.1 and 3.0
//! only, Apple Contacts and Google Contacts read 3.0, and 3.0 carries everything Graph's
//! contact has that vCard 4.0 would (photos inline as `ENCODING=b`). Nothing a 4.0-only
//! reader needs is lost that 3.0 could not say.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;
use serde_json::Value;

use super::line::{Lines, escape_text};
use super::{convert_error, str_at};
use crate::error::Result;

const FORMAT: &str = "vCard";

/// A contact's photo, as `GET …/contacts/{id}/photo/$value` returns it (Graph's contact
/// JSON does not carry the bytes).
#[derive(Debug, Clone, Copy)]
pub struct Photo<'a> {
    /// Media type (`image/jpeg`, `image/png` …).
    pub media_type: &'a str,
    /// The image bytes.
    pub bytes: &'a [u8],
}

fn err(reason: impl Into<String>) -> crate::Error {
    convert_error(FORMAT, reason)
}

/// Writes vCards: one file may hold many ([`Cards::finish`]).
#[derive(Debug, Default)]
pub struct Cards {
    lines: Lines,
}

impl Cards {
    /// No cards yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a contact. Without `photo`, a `photo` object in the JSON with
    /// `contentBytes` (base64) and `@odata.mediaContentType` is used if present. On error
    /// nothing of the contact is added.
    pub fn add(&mut self, contact: &Value, photo: Option<Photo<'_>>) -> Result<()> {
        let mut l = Lines::new();
        write_card(&mut l, contact, photo)?;
        self.lines.append(&l);
        Ok(())
    }

    /// The bytes (UTF-8, CRLF line ends).
    pub fn finish(self) -> Vec<u8> {
        self.lines.finish()
    }
}

/// One contact as a whole `.vcf` file.
pub fn contact_to_vcf(contact: &Value, photo: Option<Photo<'_>>) -> Result<Vec<u8>> {
    let mut c = Cards::new();
    c.add(contact, photo)?;
    Ok(c.finish())
}

fn text_of<'a>(v: &'a Value, field: &str) -> &'a str {
    str_at(v, field).map_or("", str::trim)
}

/// A structured value (N, ADR, ORG): components escaped, joined with `;`.
fn structured(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| escape_text(p))
        .collect::<Vec<_>>()
        .join(";")
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

// One property after another in the order docs/EXPORT.md lists them.
#[allow(clippy::too_many_lines)]
fn write_card(l: &mut Lines, c: &Value, photo: Option<Photo<'_>>) -> Result<()> {
    if !c.is_object() {
        return Err(err("a contact is not a JSON object"));
    }
    let (given, surname, middle) = (
        text_of(c, "givenName"),
        text_of(c, "surname"),
        text_of(c, "middleName"),
    );
    let (prefix, suffix) = (text_of(c, "title"), text_of(c, "generation"));
    let emails: Vec<&str> = c["emailAddresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| str_at(e, "address"))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    // FN is required and must name the card: the display name, else the parts of the
    // name, else what Outlook files it as, the company or the first address.
    let joined = [prefix, given, middle, surname, suffix]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let full = [
        text_of(c, "displayName"),
        joined.as_str(),
        text_of(c, "fileAs"),
        text_of(c, "companyName"),
        emails.first().copied().unwrap_or(""),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("");

    l.begin("VCARD");
    l.raw("VERSION", &[], "3.0");
    if let Some(id) = str_at(c, "id") {
        l.text("UID", &[], id);
    }
    l.text("FN", &[], full);
    l.raw(
        "N",
        &[],
        &structured(&[surname, given, middle, prefix, suffix]),
    );
    if let Some(nick) = str_at(c, "nickName")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        l.text("NICKNAME", &[], nick);
    }
    for (i, address) in emails.iter().enumerate() {
        // Repeated TYPE parameters rather than one with commas: a comma would make
        // the writer quote the value, and a quoted "INTERNET,PREF" is one type, not two.
        let params: &[(&str, &str)] = if i == 0 {
            &[("TYPE", "INTERNET"), ("TYPE", "PREF")]
        } else {
            &[("TYPE", "INTERNET")]
        };
        l.text("EMAIL", params, address);
    }
    for phone in strings(c, "businessPhones") {
        l.text("TEL", &[("TYPE", "WORK"), ("TYPE", "VOICE")], &phone);
    }
    for phone in strings(c, "homePhones") {
        l.text("TEL", &[("TYPE", "HOME"), ("TYPE", "VOICE")], &phone);
    }
    if let Some(mobile) = str_at(c, "mobilePhone")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        l.text("TEL", &[("TYPE", "CELL"), ("TYPE", "VOICE")], mobile);
    }
    for (field, kind) in [
        ("businessAddress", Some("WORK")),
        ("homeAddress", Some("HOME")),
        ("otherAddress", None),
    ] {
        let a = &c[field];
        let parts = [
            text_of(a, "street"),
            text_of(a, "city"),
            text_of(a, "state"),
            text_of(a, "postalCode"),
            text_of(a, "countryOrRegion"),
        ];
        if parts.iter().all(|p| p.is_empty()) {
            continue;
        }
        // ADR: post office box; extended address; street; locality; region; postal code;
        // country.
        let value = structured(&["", "", parts[0], parts[1], parts[2], parts[3], parts[4]]);
        match kind {
            Some(k) => l.raw("ADR", &[("TYPE", k)], &value),
            None => l.raw("ADR", &[], &value),
        }
    }
    let (company, department) = (text_of(c, "companyName"), text_of(c, "department"));
    if !company.is_empty() || !department.is_empty() {
        let org = if department.is_empty() {
            structured(&[company])
        } else {
            structured(&[company, department])
        };
        l.raw("ORG", &[], &org);
    }
    for (field, prop) in [
        ("jobTitle", "TITLE"),
        ("profession", "ROLE"),
        ("businessHomePage", "URL"),
        ("personalNotes", "NOTE"),
        ("officeLocation", "X-MS-OFFICE-LOCATION"),
        ("assistantName", "X-ASSISTANT"),
        ("manager", "X-MANAGER"),
        ("spouseName", "X-SPOUSE"),
        ("initials", "X-MS-INITIALS"),
        ("fileAs", "X-MS-FILE-AS"),
        ("yomiGivenName", "X-PHONETIC-FIRST-NAME"),
        ("yomiSurname", "X-PHONETIC-LAST-NAME"),
        ("yomiCompanyName", "X-PHONETIC-ORG"),
    ] {
        let value = text_of(c, field);
        if !value.is_empty() {
            l.text(prop, &[], value);
        }
    }
    for child in strings(c, "children") {
        l.text("X-CHILD", &[], &child);
    }
    for im in strings(c, "imAddresses") {
        l.text("X-MS-IMADDRESS", &[], &im);
    }
    if let Some(b) = str_at(c, "birthday").filter(|b| !b.is_empty()) {
        // Outlook keeps a birthday at 11:59 UTC so the date is the same in every zone;
        // the date is what a birthday is.
        let day = DateTime::parse_from_rfc3339(b)
            .map(|t| t.naive_utc().date())
            .or_else(|_| chrono::NaiveDate::parse_from_str(b.get(..10).unwrap_or(b), "%Y-%m-%d"))
            .map_err(|_| err("birthday is not a date"))?;
        l.raw("BDAY", &[], &day.format("%Y-%m-%d").to_string());
    }
    let cats: Vec<String> = strings(c, "categories")
        .iter()
        .map(|s| escape_text(s))
        .collect();
    if !cats.is_empty() {
        l.raw("CATEGORIES", &[], &cats.join(","));
    }
    write_photo(l, c, photo)?;
    if let Some(t) =
        str_at(c, "lastModifiedDateTime").and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        l.raw(
            "REV",
            &[],
            &t.naive_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    l.end("VCARD");
    Ok(())
}

/// PHOTO;ENCODING=b;TYPE=<subtype> (RFC 2426 §3.1.4).
fn write_photo(l: &mut Lines, c: &Value, photo: Option<Photo<'_>>) -> Result<()> {
    let from_json;
    let (media, bytes): (&str, &[u8]) = if let Some(p) = photo {
        (p.media_type, p.bytes)
    } else {
        let Some(b64) = str_at(c, "/photo/contentBytes") else {
            return Ok(());
        };
        let compact: String = b64.chars().filter(|ch| !ch.is_ascii_whitespace()).collect();
        from_json = STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| err("the photo's contentBytes is not base64"))?;
        (
            str_at(c, "/photo/@odata.mediaContentType").unwrap_or("image/jpeg"),
            &from_json,
        )
    };
    if bytes.is_empty() {
        return Ok(());
    }
    let subtype = media
        .split_once('/')
        .map_or(media, |(_, s)| s)
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let mut params = vec![("ENCODING", "b")];
    if !subtype.is_empty() {
        params.push(("TYPE", subtype.as_str()));
    }
    l.raw("PHOTO", &params, &STANDARD.encode(bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contact() -> Value {
        json!({
            "id": "AAMkContact1", "displayName": "Ana Pérez", "givenName": "Ana", "surname": "Pérez",
            "middleName": null, "title": "Dr.", "generation": null, "nickName": "Ani",
            "emailAddresses": [{"name": "Ana", "address": "ana@fabrikam.com"}, {"name": "", "address": "ana@home.example"}],
            "businessPhones": ["+1 425 555 0100"], "homePhones": [], "mobilePhone": "+1 206 555 0101",
            "jobTitle": "Buyer", "companyName": "Fabrikam; Inc.", "department": "Purchasing",
            "businessHomePage": "https://www.fabrikam.com", "personalNotes": "Met in Lisbon,\nprefers e-mail.",
            "birthday": "1974-07-22T11:59:00Z",
            "businessAddress": {"street": "1 Main Street", "city": "Redmond", "state": "WA", "countryOrRegion": "United States", "postalCode": "98052"},
            "homeAddress": {}, "otherAddress": {"city": "Lisbon"},
            "categories": ["Personal"], "children": ["Rui"], "lastModifiedDateTime": "2025-01-02T03:04:05Z",
        })
    }

    #[test]
    fn a_contact_becomes_a_vcard_3_with_every_field() {
        let png = [0x89, b'P', b'N', b'G', 1, 2, 3];
        let s = String::from_utf8(
            contact_to_vcf(
                &contact(),
                Some(Photo {
                    media_type: "image/png",
                    bytes: &png,
                }),
            )
            .unwrap(),
        )
        .unwrap()
        .replace("\r\n ", "");
        assert!(s.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:AAMkContact1\r\nFN:Ana Pérez\r\nN:Pérez;Ana;;Dr.;\r\nNICKNAME:Ani\r\n"), "{s}");
        assert!(s.contains("EMAIL;TYPE=INTERNET;TYPE=PREF:ana@fabrikam.com\r\nEMAIL;TYPE=INTERNET:ana@home.example\r\n"), "{s}");
        assert!(s.contains("TEL;TYPE=WORK;TYPE=VOICE:+1 425 555 0100\r\nTEL;TYPE=CELL;TYPE=VOICE:+1 206 555 0101\r\n"), "{s}");
        assert!(
            s.contains("ADR;TYPE=WORK:;;1 Main Street;Redmond;WA;98052;United States\r\n"),
            "{s}"
        );
        assert!(s.contains("ADR:;;;Lisbon;;;\r\n"), "{s}");
        assert!(
            !s.contains("TYPE=HOME:"),
            "empty home address left out: {s}"
        );
        assert!(
            s.contains("ORG:Fabrikam\\; Inc.;Purchasing\r\nTITLE:Buyer\r\n"),
            "{s}"
        );
        assert!(
            s.contains("NOTE:Met in Lisbon\\,\\nprefers e-mail.\r\n"),
            "{s}"
        );
        assert!(
            s.contains("BDAY:1974-07-22\r\n") && s.contains("CATEGORIES:Personal\r\n"),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "PHOTO;ENCODING=b;TYPE=PNG:{}\r\n",
                STANDARD.encode(png)
            )),
            "{s}"
        );
        assert!(
            s.contains("X-CHILD:Rui\r\n")
                && s.contains("REV:2025-01-02T03:04:05Z\r\nEND:VCARD\r\n"),
            "{s}"
        );
    }

    #[test]
    fn fn_is_never_empty_and_the_photo_may_come_from_the_json() {
        let c = json!({"id": "c2", "emailAddresses": [{"address": "x@y.z"}],
                       "photo": {"@odata.mediaContentType": "image/jpeg", "contentBytes": STANDARD.encode([1, 2, 3])}});
        let s = String::from_utf8(contact_to_vcf(&c, None).unwrap()).unwrap();
        assert!(s.contains("FN:x@y.z\r\nN:;;;;\r\n"), "{s}");
        assert!(s.contains("PHOTO;ENCODING=b;TYPE=JPEG:AQID\r\n"), "{s}");
        let bad = json!({"id": "c3", "displayName": "Secret Name", "birthday": "someday"});
        let e = contact_to_vcf(&bad, None).unwrap_err().to_string();
        assert!(e.contains("birthday") && !e.contains("Secret"), "{e}");
    }
}
