//! `--format json`: any item's readable JSON (events, contacts, tasks, notes, inbox rules,
//! master categories, mailbox settings) as a stable document — the same input gives the
//! same bytes, whatever order Graph sent the properties in, so exports diff cleanly.
//!
//! Everything Graph sent is kept except annotations that describe the request rather than
//! the item (`@odata.context`, `@odata.nextLink`, `@odata.deltaLink`).

use serde_json::{Map, Value};

use super::convert_error;
use crate::error::Result;

/// Annotations about the response, not the item.
const DROPPED: &[&str] = &["@odata.context", "@odata.nextLink", "@odata.deltaLink"];

/// Keys sorted at every level (byte order), request annotations removed.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m
                .keys()
                .filter(|k| !DROPPED.contains(&k.as_str()))
                .collect();
            keys.sort();
            // `Map` keeps insertion order when serde_json's `preserve_order` is on anywhere
            // in the build, and sorts otherwise: inserting in sorted order is stable either
            // way.
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The document: canonical JSON, pretty-printed with two spaces, ending in a newline.
pub fn to_json(item: &Value) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(&canonical(item))
        .map_err(|e| convert_error("JSON", e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_item_in_any_property_order_gives_the_same_bytes() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [2, {"d": 1, "c": 2}], "x": null}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [2, {"c": 2, "d": 1}]}, "b": 1}"#)
                .unwrap();
        assert_eq!(to_json(&a).unwrap(), to_json(&b).unwrap());
        let text = String::from_utf8(to_json(&a).unwrap()).unwrap();
        assert!(
            text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap(),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn request_annotations_go_and_item_annotations_stay() {
        let v = json!({"@odata.context": "https://graph/…", "@odata.etag": "W/\"x\"", "id": "1",
                        "value": [{"@odata.nextLink": "n", "k": 1}]});
        let back: Value = serde_json::from_slice(&to_json(&v).unwrap()).unwrap();
        assert_eq!(
            back,
            json!({"@odata.etag": "W/\"x\"", "id": "1", "value": [{"k": 1}]})
        );
    }
}
