//! The Graph message JSON that TypeScript Atlas stored as a message's data object.
//!
//! The old tool selected 23 properties (`$select` on the delta request) and stored the
//! delta item verbatim, annotations included. Every field is optional here: a delta item
//! may omit properties, and later tool versions may add some; parsing must never fail on
//! a missing or an extra field.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::{EmailAddress, FlagStatus, Importance};

/// `{"emailAddress": {"name": …, "address": …}}` as Graph writes a recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphRecipient {
    /// The name and address.
    #[serde(default)]
    pub email_address: Option<GraphAddress>,
}

/// Graph `emailAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GraphAddress {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// SMTP address.
    #[serde(default)]
    pub address: Option<String>,
}

impl GraphRecipient {
    /// As the core model's [`EmailAddress`] (`None` when Graph gave neither name nor
    /// address).
    pub fn to_email_address(&self) -> Option<EmailAddress> {
        let a = self.email_address.as_ref()?;
        let name = a.name.clone().unwrap_or_default();
        let address = a.address.clone().unwrap_or_default();
        if name.is_empty() && address.is_empty() {
            None
        } else {
            Some(EmailAddress { name, address })
        }
    }
}

/// Graph `itemBody`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphBody {
    /// `html` or `text` (case varies).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body.
    #[serde(default)]
    pub content: Option<String>,
}

impl GraphBody {
    /// Whether the body is HTML (Graph's `contentType`, compared case-insensitively).
    pub fn is_html(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("html"))
    }
}

/// Graph `followupFlag` (only the status is used).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphFlag {
    /// `notFlagged`, `flagged` or `complete`.
    #[serde(default)]
    pub flag_status: Option<String>,
}

/// One stored Graph message (the 23 selected properties; unknown ones are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMessage {
    /// Graph message id (mutable REST id in v1).
    #[serde(default)]
    pub id: Option<String>,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Body.
    #[serde(default)]
    pub body: Option<GraphBody>,
    /// First characters of the body as Graph rendered them.
    #[serde(default)]
    pub body_preview: Option<String>,
    /// Author.
    #[serde(default)]
    pub from: Option<GraphRecipient>,
    /// Actual sender (differs from `from` for send-on-behalf).
    #[serde(default)]
    pub sender: Option<GraphRecipient>,
    /// To.
    #[serde(default)]
    pub to_recipients: Vec<GraphRecipient>,
    /// Cc.
    #[serde(default)]
    pub cc_recipients: Vec<GraphRecipient>,
    /// Bcc: kept for completeness of the model; never written into rebuilt MIME.
    #[serde(default)]
    pub bcc_recipients: Vec<GraphRecipient>,
    /// Reply-To.
    #[serde(default)]
    pub reply_to: Vec<GraphRecipient>,
    /// `receivedDateTime` (ISO 8601).
    #[serde(default)]
    pub received_date_time: Option<String>,
    /// `sentDateTime`.
    #[serde(default)]
    pub sent_date_time: Option<String>,
    /// `createdDateTime`.
    #[serde(default)]
    pub created_date_time: Option<String>,
    /// `lastModifiedDateTime`.
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    /// Folder id.
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    /// `low`, `normal`, `high`.
    #[serde(default)]
    pub importance: Option<String>,
    /// Read state.
    #[serde(default)]
    pub is_read: Option<bool>,
    /// Draft.
    #[serde(default)]
    pub is_draft: Option<bool>,
    /// Graph `hasAttachments` (false for inline-only messages).
    #[serde(default)]
    pub has_attachments: Option<bool>,
    /// RFC 5322 Message-ID.
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// Conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Follow-up flag.
    #[serde(default)]
    pub flag: Option<GraphFlag>,
    /// Outlook categories.
    #[serde(default)]
    pub categories: Vec<String>,
}

/// Parse a Graph timestamp (`2026-11-29T12:21:20Z`, with or without fraction or offset).
pub fn parse_graph_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let s = s?.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            // Graph sometimes omits the zone designator (UTC implied).
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

impl GraphMessage {
    /// `receivedDateTime`, parsed.
    pub fn received(&self) -> Option<DateTime<Utc>> {
        parse_graph_time(self.received_date_time.as_deref())
    }

    /// `sentDateTime`, parsed.
    pub fn sent(&self) -> Option<DateTime<Utc>> {
        parse_graph_time(self.sent_date_time.as_deref())
    }

    /// `lastModifiedDateTime`, parsed.
    pub fn last_modified(&self) -> Option<DateTime<Utc>> {
        parse_graph_time(self.last_modified_date_time.as_deref())
    }

    /// The origination date for a `Date:` header: sent, else received, else created.
    pub fn origination_date(&self) -> Option<DateTime<Utc>> {
        self.sent()
            .or_else(|| self.received())
            .or_else(|| parse_graph_time(self.created_date_time.as_deref()))
    }

    /// Follow-up flag as the core model's [`FlagStatus`].
    pub fn flag_status(&self) -> FlagStatus {
        match self
            .flag
            .as_ref()
            .and_then(|f| f.flag_status.as_deref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("notflagged") => FlagStatus::NotFlagged,
            Some("flagged") => FlagStatus::Flagged,
            Some("complete") => FlagStatus::Complete,
            Some(_) => FlagStatus::Unknown,
        }
    }

    /// Importance as the core model's [`Importance`].
    pub fn importance(&self) -> Importance {
        match self
            .importance
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("normal") => Importance::Normal,
            Some("low") => Importance::Low,
            Some("high") => Importance::High,
            Some(_) => Importance::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_missing_and_extra_fields() {
        let m: GraphMessage =
            serde_json::from_str(r#"{"@odata.etag":"x","id":"A","newField":[1,2]}"#).unwrap();
        assert_eq!(m.id.as_deref(), Some("A"));
        assert!(m.to_recipients.is_empty());
        assert_eq!(m.flag_status(), FlagStatus::NotFlagged);
        assert_eq!(m.importance(), Importance::Normal);
    }

    #[test]
    fn parses_graph_times_and_enums() {
        let m: GraphMessage = serde_json::from_str(
            r#"{"sentDateTime":"2026-11-29T12:20:02Z","receivedDateTime":"2026-11-29T12:21:20.5",
                "flag":{"flagStatus":"complete"},"importance":"High"}"#,
        )
        .unwrap();
        assert_eq!(m.sent().unwrap().to_rfc3339(), "2026-11-29T12:20:02+00:00");
        assert!(m.received().is_some());
        assert_eq!(m.origination_date(), m.sent());
        assert_eq!(m.flag_status(), FlagStatus::Complete);
        assert_eq!(m.importance(), Importance::High);
    }
}
