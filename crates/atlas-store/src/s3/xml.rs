//! The few S3 XML documents Atlas reads and writes.
//!
//! Responses are parsed leniently (unknown elements ignored, missing optional ones
//! defaulted) because S3-compatible servers differ in what they add; request bodies are
//! written by hand — they are tiny and fixed, and contain only values Atlas controls.

use std::fmt::Write as _;

use serde::Deserialize;

/// `<Error>`: every S3 error response.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "Code", default)]
    pub code: String,
    #[serde(rename = "Message", default)]
    pub message: String,
    /// The region the bucket is in (`AuthorizationHeaderMalformed`, some redirects).
    #[serde(rename = "Region", default)]
    pub region: Option<String>,
    /// The server's clock (`RequestTimeTooSkewed`).
    #[serde(rename = "ServerTime", default)]
    pub server_time: Option<String>,
}

/// `ListObjectsV2` result.
#[derive(Debug, Deserialize)]
pub(crate) struct ListBucketResult {
    #[serde(rename = "Contents", default)]
    pub contents: Vec<ListedObject>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    pub next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListedObject {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Size", default)]
    pub size: u64,
}

/// `ListObjectVersions` result: versions and delete markers, newest first per key.
#[derive(Debug, Deserialize)]
pub(crate) struct ListVersionsResult {
    #[serde(rename = "$value", default)]
    pub entries: Vec<VersionEntry>,
}

/// One child of `<ListVersionsResult>`; only `Version` and `DeleteMarker` matter.
#[derive(Debug, Deserialize)]
pub(crate) enum VersionEntry {
    Version(VersionItem),
    DeleteMarker(VersionItem),
    #[serde(rename = "IsTruncated")]
    IsTruncated(bool),
    #[serde(rename = "NextKeyMarker")]
    NextKeyMarker(String),
    #[serde(rename = "NextVersionIdMarker")]
    NextVersionIdMarker(String),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionItem {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "VersionId")]
    pub version_id: String,
    #[serde(rename = "IsLatest", default)]
    pub is_latest: bool,
    #[serde(rename = "Size", default)]
    pub size: u64,
}

/// `GetBucketVersioning` result. An unversioned bucket has no `<Status>`.
#[derive(Debug, Deserialize)]
pub(crate) struct VersioningConfiguration {
    #[serde(rename = "Status", default)]
    pub status: Option<String>,
}

/// `GetObjectLockConfiguration` result.
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectLockConfiguration {
    #[serde(rename = "ObjectLockEnabled", default)]
    pub enabled: Option<String>,
    #[serde(rename = "Rule", default)]
    pub rule: Option<LockRule>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LockRule {
    #[serde(rename = "DefaultRetention", default)]
    pub default_retention: Option<LockDefaultRetention>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LockDefaultRetention {
    #[serde(rename = "Mode", default)]
    pub mode: Option<String>,
    #[serde(rename = "Days", default)]
    pub days: Option<u32>,
    #[serde(rename = "Years", default)]
    pub years: Option<u32>,
}

/// `CreateMultipartUpload` result.
#[derive(Debug, Deserialize)]
pub(crate) struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    pub upload_id: String,
}

/// Parse an XML document, naming what was expected when it does not fit.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|_| format!("{what}: response is not UTF-8"))?;
    quick_xml::de::from_str(text).map_err(|e| format!("{what}: unexpected XML ({e})"))
}

/// Parse an `<Error>` body; an empty or non-XML body (HEAD responses, proxies) gives an
/// empty code.
pub(crate) fn parse_error(body: &[u8]) -> ErrorBody {
    parse(body, "error").unwrap_or_default()
}

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// `PutObjectRetention` body.
pub(crate) fn retention_body(mode: &str, retain_until: &str) -> String {
    format!(
        "<Retention xmlns=\"{NS}\"><Mode>{mode}</Mode><RetainUntilDate>{retain_until}</RetainUntilDate></Retention>"
    )
}

/// `CompleteMultipartUpload` body from the parts' ETags (as S3 returned them, quoted) and
/// CRC32C checksums (required when the upload was created with a checksum algorithm).
pub(crate) fn complete_multipart_body(parts: &[(String, Option<String>)]) -> String {
    let mut body = format!("<CompleteMultipartUpload xmlns=\"{NS}\">");
    for (i, (etag, crc32c)) in parts.iter().enumerate() {
        let _ = write!(
            body,
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
            i + 1,
            escape(etag)
        );
        if let Some(crc) = crc32c {
            let _ = write!(body, "<ChecksumCRC32C>{}</ChecksumCRC32C>", escape(crc));
        }
        body.push_str("</Part>");
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// `CreateBucket` body for a region other than us-east-1.
pub(crate) fn create_bucket_body(region: &str) -> String {
    format!(
        "<CreateBucketConfiguration xmlns=\"{NS}\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
        escape(region)
    )
}

/// The lifecycle rules Atlas puts on a bucket it creates: abort multipart uploads left
/// behind by crashes after 7 days, and remove delete markers with no versions left.
pub(crate) fn lifecycle_body() -> String {
    format!(
        "<LifecycleConfiguration xmlns=\"{NS}\">\
         <Rule><ID>atlas-abort-incomplete-uploads</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>\
         <AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
         <Rule><ID>atlas-cleanup-delete-markers</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>\
         <Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>\
         </LifecycleConfiguration>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_page() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Contents><Key>a/b</Key><Size>12</Size><ETag>"x"</ETag></Contents>
<Contents><Key>a/c</Key><Size>0</Size></Contents>
<IsTruncated>true</IsTruncated><NextContinuationToken>tok/=+</NextContinuationToken></ListBucketResult>"#;
        let page: ListBucketResult = parse(xml, "list").unwrap();
        assert_eq!(page.contents.len(), 2);
        assert_eq!(page.contents[0].key, "a/b");
        assert_eq!(page.contents[0].size, 12);
        assert!(page.is_truncated);
        assert_eq!(page.next_continuation_token.as_deref(), Some("tok/=+"));
    }

    #[test]
    fn parses_an_empty_list() {
        let xml = br"<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        let page: ListBucketResult = parse(xml, "list").unwrap();
        assert!(page.contents.is_empty());
        assert!(!page.is_truncated);
    }

    #[test]
    fn parses_versions_and_delete_markers_in_order() {
        let xml = br"<ListVersionsResult><IsTruncated>false</IsTruncated><KeyMarker/>
<Version><Key>k</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><Size>3</Size></Version>
<DeleteMarker><Key>k</Key><VersionId>d1</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>k</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><Size>1</Size></Version>
<Name>b</Name></ListVersionsResult>";
        let page: ListVersionsResult = parse(xml, "versions").unwrap();
        let ids: Vec<_> = page
            .entries
            .iter()
            .filter_map(|e| match e {
                VersionEntry::Version(v) => Some(format!("v:{}", v.version_id)),
                VersionEntry::DeleteMarker(v) => Some(format!("d:{}", v.version_id)),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["v:v2", "d:d1", "v:v1"]);
    }

    #[test]
    fn parses_errors_and_tolerates_empty_bodies() {
        let e = parse_error(b"<Error><Code>NoSuchBucket</Code><Message>gone</Message><BucketName>b</BucketName></Error>");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("NoSuchBucket", "gone")
        );
        assert_eq!(parse_error(b"").code, "");
        assert_eq!(parse_error(b"<html>proxy</html>").code, "");
    }

    #[test]
    fn parses_lock_configuration() {
        let xml = br"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        let c: ObjectLockConfiguration = parse(xml, "lock").unwrap();
        assert_eq!(c.enabled.as_deref(), Some("Enabled"));
        let d = c.rule.unwrap().default_retention.unwrap();
        assert_eq!(
            (d.mode.as_deref(), d.days, d.years),
            (Some("GOVERNANCE"), Some(30), None)
        );
    }

    #[test]
    fn complete_body_lists_parts_in_order() {
        let body = complete_multipart_body(&[("\"a\"".into(), None), ("\"b\"".into(), None)]);
        assert!(body.contains("<Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part><Part><PartNumber>2</PartNumber>"), "{body}");
    }

    #[test]
    fn complete_body_carries_each_parts_crc32c() {
        let body = complete_multipart_body(&[("\"a\"".into(), Some("yZRlqg==".into()))]);
        assert!(
            body.contains(
                "<ETag>&quot;a&quot;</ETag><ChecksumCRC32C>yZRlqg==</ChecksumCRC32C></Part>"
            ),
            "{body}"
        );
    }
}
