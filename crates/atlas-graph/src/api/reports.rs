//! Mailbox usage report (graph-api.md §11): sizes and item counts for `atlas mailboxes`.

use serde::{Deserialize, Serialize};

use crate::client::{GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;

/// Report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportPeriod {
    /// 7 days.
    #[default]
    D7,
    /// 30 days.
    D30,
    /// 90 days.
    D90,
    /// 180 days.
    D180,
}

impl ReportPeriod {
    fn as_str(self) -> &'static str {
        match self {
            Self::D7 => "D7",
            Self::D30 => "D30",
            Self::D90 => "D90",
            Self::D180 => "D180",
        }
    }
}

/// One row of `getMailboxUsageDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MailboxUsage {
    /// User principal name (an opaque value when the tenant conceals names).
    pub user_principal_name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Whether the mailbox is deleted.
    pub is_deleted: Option<bool>,
    /// Items in the mailbox.
    pub item_count: Option<u64>,
    /// Bytes used.
    pub storage_used_bytes: Option<u64>,
    /// Whether an archive exists.
    pub has_archive: Option<bool>,
    /// Last activity date (as reported, `YYYY-MM-DD`).
    pub last_activity_date: Option<String>,
    /// Report refresh date.
    pub report_refresh_date: Option<String>,
}

impl GraphClient {
    /// The mailbox usage report. Follows the 302 to the pre-authenticated CSV download
    /// *without* the bearer token. A missing Reports.Read.All is `PermissionDenied`, which
    /// callers treat as "no size column".
    pub async fn mailbox_usage(
        &self,
        period: ReportPeriod,
    ) -> Result<Vec<MailboxUsage>, GraphError> {
        let function = format!("getMailboxUsageDetail(period='{}')", period.as_str());
        let url = self.url(&["reports", &function], &[]);
        let mut req = Req::get(Endpoint::Reports, url.clone(), None);
        req.allow_redirect = true;
        let (status, headers, body) = self.fetch(&req).await?;
        let csv = if status.is_redirection() {
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| GraphError::protocol(Endpoint::Reports, "302 without Location"))?;
            let target = url
                .join(location)
                .map_err(|_| GraphError::protocol(Endpoint::Reports, "Location is not a URL"))?;
            let mut download = Req::get(Endpoint::Reports, target, None);
            download.auth = false;
            self.fetch(&download).await?.2
        } else {
            body
        };
        let text = String::from_utf8_lossy(&csv);
        parse_usage_csv(&text)
    }
}

/// Parse the report CSV. Columns are found by header name (order and extra columns vary
/// between versions); a UTF-8 BOM and quoted fields with commas, quotes or newlines are
/// handled.
pub fn parse_usage_csv(text: &str) -> Result<Vec<MailboxUsage>, GraphError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = parse_csv(text).into_iter();
    let Some(header) = rows.next() else {
        return Ok(Vec::new());
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let upn = col("User Principal Name").ok_or_else(|| {
        GraphError::protocol(
            Endpoint::Reports,
            "usage CSV has no 'User Principal Name' column",
        )
    })?;
    let display = col("Display Name");
    let deleted = col("Is Deleted");
    let items = col("Item Count");
    let storage = col("Storage Used (Byte)");
    let archive = col("Has Archive");
    let activity = col("Last Activity Date");
    let refresh = col("Report Refresh Date");
    let get = |row: &[String], i: Option<usize>| {
        i.and_then(|i| row.get(i))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let boolean = |s: Option<String>| s.map(|s| s.eq_ignore_ascii_case("true"));
    let number = |s: Option<String>| s.and_then(|s| s.parse::<u64>().ok());
    Ok(rows
        .filter(|row| row.iter().any(|f| !f.is_empty()))
        .filter_map(|row| {
            Some(MailboxUsage {
                user_principal_name: get(&row, Some(upn))?,
                display_name: get(&row, display),
                is_deleted: boolean(get(&row, deleted)),
                item_count: number(get(&row, items)),
                storage_used_bytes: number(get(&row, storage)),
                has_archive: boolean(get(&row, archive)),
                last_activity_date: get(&row, activity),
                report_refresh_date: get(&row, refresh),
            })
        })
        .collect())
}

/// RFC 4180 CSV into rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_csv_parses_with_bom_quotes_and_missing_columns() {
        let csv = "\u{feff}Report Refresh Date,User Principal Name,Display Name,Is Deleted,Deleted Date,\
Created Date,Last Activity Date,Item Count,Storage Used (Byte),Issue Warning Quota (Byte),\
Prohibit Send Quota (Byte),Prohibit Send/Receive Quota (Byte),Deleted Item Count,\
Deleted Item Size (Byte),Report Period\r\n\
2017-09-01,AdeleV@contoso.com,\"Vance, Adele \"\"AV\"\"\",False,,2017-01-01,2017-08-31,1200,52428800,\
49392123904,51539607552,53687091200,10,2048,7\r\n\
2017-09-01,shared@contoso.com,\"Line\nbreak\",False,,,,,,,,,,,7\r\n";
        let rows = parse_usage_csv(csv).expect("csv");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].user_principal_name, "AdeleV@contoso.com");
        assert_eq!(rows[0].display_name.as_deref(), Some("Vance, Adele \"AV\""));
        assert_eq!(rows[0].item_count, Some(1200));
        assert_eq!(rows[0].storage_used_bytes, Some(52_428_800));
        assert_eq!(rows[0].is_deleted, Some(false));
        assert_eq!(rows[0].has_archive, None);
        assert_eq!(rows[1].display_name.as_deref(), Some("Line\nbreak"));
        assert_eq!(rows[1].item_count, None);
    }

    #[test]
    fn csv_without_upn_column_is_a_protocol_error() {
        assert!(parse_usage_csv("a,b\n1,2\n").is_err());
        assert_eq!(parse_usage_csv("").expect("empty").len(), 0);
    }
}
