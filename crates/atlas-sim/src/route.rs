//! Parsing of Graph v1.0 paths into routes, and what each route needs (permission, kind).

use axum::http::{Method, StatusCode};

use crate::config::roles;
use crate::http::{Resp, decode_segment};

#[derive(Debug, Clone)]
pub(crate) enum Route {
    Users,
    User(String),
    Folders {
        user: String,
        parent: Option<String>,
    },
    Folder {
        user: String,
        folder: String,
    },
    Messages {
        user: String,
        folder: Option<String>,
    },
    Delta {
        user: String,
        folder: String,
    },
    Message {
        user: String,
        msg: String,
    },
    MessageValue {
        user: String,
        msg: String,
    },
    MessageMove {
        user: String,
        msg: String,
    },
    Attachments {
        user: String,
        msg: String,
    },
    UploadSession {
        user: String,
        msg: String,
    },
    Attachment {
        user: String,
        msg: String,
        att: String,
    },
    AttachmentValue {
        user: String,
        msg: String,
        att: String,
    },
    Report {
        period: String,
    },
}

fn not_found_segment(seg: &str) -> Resp {
    Resp::error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("Resource not found for the segment '{seg}'."),
    )
}

/// Splits `name('id')` segments into `name`, `id` and percent-decodes everything.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in path.trim_matches('/').split('/').filter(|s| !s.is_empty()) {
        let s = decode_segment(raw);
        if let Some(open) = s.find("('")
            && s.ends_with("')")
            && !s[..open].contains('=')
        {
            out.push(s[..open].to_owned());
            out.push(s[open + 2..s.len() - 2].replace("''", "'"));
        } else {
            out.push(s);
        }
    }
    out
}

pub(crate) fn parse(path: &str) -> Result<Route, Resp> {
    let seg = segments(path);
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] => Err(not_found_segment("v1.0")),
        ["me", ..] => Err(Resp::error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        )),
        ["reports", r] if r.starts_with("getMailboxUsageDetail(") => {
            let period = r
                .trim_start_matches("getMailboxUsageDetail(")
                .trim_end_matches(')');
            let period = period
                .trim_start_matches("period=")
                .trim_matches('\'')
                .to_owned();
            Ok(Route::Report { period })
        }
        ["users"] => Ok(Route::Users),
        ["users", u] => Ok(Route::User((*u).to_owned())),
        ["users", u, rest @ ..] => {
            let user = (*u).to_owned();
            if rest[0].eq_ignore_ascii_case("messages") {
                return message_route(user, None, &rest[1..]);
            }
            if !rest[0].eq_ignore_ascii_case("mailFolders") {
                return Err(not_found_segment(rest[0]));
            }
            let rest = &rest[1..];
            if rest.is_empty() {
                return Ok(Route::Folders { user, parent: None });
            }
            let mut folder = rest[0].to_owned();
            let mut i = 1;
            while i < rest.len() && rest[i].eq_ignore_ascii_case("childFolders") {
                if i + 1 == rest.len() {
                    return Ok(Route::Folders {
                        user,
                        parent: Some(folder),
                    });
                }
                rest[i + 1].clone_into(&mut folder);
                i += 2;
            }
            if i == rest.len() {
                return Ok(Route::Folder { user, folder });
            }
            if rest[i].eq_ignore_ascii_case("messages") {
                return message_route(user, Some(folder), &rest[i + 1..]);
            }
            Err(not_found_segment(rest[i]))
        }
        [other, ..] => Err(not_found_segment(other)),
    }
}

fn message_route(user: String, folder: Option<String>, rest: &[&str]) -> Result<Route, Resp> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match rest {
        [] => Ok(Route::Messages { user, folder }),
        [d] if eq(d, "delta") => match folder {
            Some(folder) => Ok(Route::Delta { user, folder }),
            None => Err(Resp::error(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "Delta sync is only supported on a mail folder's messages.",
            )),
        },
        [m] => Ok(Route::Message {
            user,
            msg: (*m).to_owned(),
        }),
        [m, v] if *v == "$value" => Ok(Route::MessageValue {
            user,
            msg: (*m).to_owned(),
        }),
        [m, v] if eq(v, "move") || eq(v, "microsoft.graph.move") => Ok(Route::MessageMove {
            user,
            msg: (*m).to_owned(),
        }),
        [m, a] if eq(a, "attachments") => Ok(Route::Attachments {
            user,
            msg: (*m).to_owned(),
        }),
        [m, a, c]
            if eq(a, "attachments")
                && (eq(c, "createUploadSession")
                    || eq(c, "microsoft.graph.createUploadSession")) =>
        {
            Ok(Route::UploadSession {
                user,
                msg: (*m).to_owned(),
            })
        }
        [m, a, id] if eq(a, "attachments") => Ok(Route::Attachment {
            user,
            msg: (*m).to_owned(),
            att: (*id).to_owned(),
        }),
        [m, a, id, v] if eq(a, "attachments") && *v == "$value" => Ok(Route::AttachmentValue {
            user,
            msg: (*m).to_owned(),
            att: (*id).to_owned(),
        }),
        [x, ..] => Err(not_found_segment(x)),
    }
}

impl Route {
    /// The user segment, for mail routes that are throttled per mailbox.
    pub fn mail_user(&self) -> Option<&str> {
        match self {
            Route::Users | Route::User(_) | Route::Report { .. } => None,
            Route::Folders { user, .. }
            | Route::Folder { user, .. }
            | Route::Messages { user, .. }
            | Route::Delta { user, .. }
            | Route::Message { user, .. }
            | Route::MessageValue { user, .. }
            | Route::MessageMove { user, .. }
            | Route::Attachments { user, .. }
            | Route::UploadSession { user, .. }
            | Route::Attachment { user, .. }
            | Route::AttachmentValue { user, .. } => Some(user),
        }
    }

    /// Endpoint kind used for request accounting.
    pub fn kind(&self, method: &Method) -> &'static str {
        let write = *method != Method::GET;
        match self {
            Route::Users | Route::User(_) => "users",
            Route::Folders { .. } | Route::Folder { .. } => {
                if write {
                    "create_folder"
                } else {
                    "folders"
                }
            }
            Route::Messages { .. } => {
                if write {
                    "create_message"
                } else {
                    "messages"
                }
            }
            Route::Delta { .. } => "delta",
            Route::Message { .. } => {
                if write {
                    "update_message"
                } else {
                    "message"
                }
            }
            Route::MessageMove { .. } => "update_message",
            Route::MessageValue { .. } => "mime",
            Route::Attachments { .. } | Route::Attachment { .. } => {
                if write {
                    "create_attachment"
                } else {
                    "attachments"
                }
            }
            Route::UploadSession { .. } => "upload_session",
            Route::AttachmentValue { .. } => "attachment_value",
            Route::Report { .. } => "reports",
        }
    }

    /// Checks the token's roles against what the endpoint needs (graph-api.md §3.1, §4, §5, §8, §11).
    pub fn check_permission(&self, method: &Method, granted: &[String]) -> Result<(), Resp> {
        let has = |any: &[&str]| {
            any.iter()
                .any(|r| granted.iter().any(|g| g.eq_ignore_ascii_case(r)))
        };
        let write = *method != Method::GET;
        let denied_mail = || {
            Resp::error(
                StatusCode::FORBIDDEN,
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            )
        };
        match self {
            Route::Users | Route::User(_) => {
                if has(&[
                    roles::USER_READ_ALL,
                    "User.ReadWrite.All",
                    roles::DIRECTORY_READ_ALL,
                    "Directory.ReadWrite.All",
                ]) {
                    Ok(())
                } else {
                    Err(Resp::error(
                        StatusCode::FORBIDDEN,
                        "Authorization_RequestDenied",
                        "Insufficient privileges to complete the operation.",
                    ))
                }
            }
            Route::Report { .. } => {
                if has(&[roles::REPORTS_READ_ALL]) {
                    Ok(())
                } else {
                    Err(Resp::error(
                        StatusCode::FORBIDDEN,
                        "accessDenied",
                        "Access denied: the application lacks the Reports.Read.All permission.",
                    ))
                }
            }
            _ if write => {
                if has(&[roles::MAIL_READ_WRITE]) {
                    Ok(())
                } else {
                    Err(denied_mail())
                }
            }
            Route::Folders { .. }
            | Route::Folder { .. }
            | Route::Delta { .. }
            | Route::Messages { .. }
            | Route::Message { .. } => {
                if has(&[
                    roles::MAIL_READ_BASIC_ALL,
                    roles::MAIL_READ,
                    roles::MAIL_READ_WRITE,
                ]) {
                    Ok(())
                } else {
                    Err(denied_mail())
                }
            }
            _ => {
                if has(&[roles::MAIL_READ, roles::MAIL_READ_WRITE]) {
                    Ok(())
                } else {
                    Err(denied_mail())
                }
            }
        }
    }
}
