//! The crate's one error type, and the one place where an HTTP answer becomes a variant.
//!
//! Callers branch on variants, never on message text: `SyncStateNotFound` means "enumerate
//! the folder again", `OutcomeUnknown` means "check whether the write happened before
//! retrying it", `PermissionDenied` names what to grant.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::endpoint::Endpoint;

/// What went wrong when signing in, classified so the message can say what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// The tenant id or domain does not exist.
    WrongTenant,
    /// No application with this client id in the tenant.
    WrongClientId,
    /// The client secret is wrong (often the secret's ID pasted instead of its Value).
    InvalidSecret,
    /// The client secret has expired.
    ExpiredSecret,
    /// The certificate assertion was rejected (certificate not uploaded, wrong key, clock).
    BadCertificate,
    /// The certificate or key given to Atlas could not be read.
    InvalidCredentialFile,
    /// Admin consent is missing or the app has no service principal in the tenant.
    ConsentMissing,
    /// The token scope is not Microsoft Graph's `/.default` (a wrong or mixed resource).
    InvalidScope,
    /// The application is disabled.
    AppDisabled,
    /// Graph rejected a freshly issued token.
    TokenRejected,
    /// The token endpoint could not be reached or kept failing.
    Unreachable,
    /// Anything else the identity platform reported.
    Other,
}

/// A sign-in failure with a plain-words explanation. Never contains the secret, the
/// private key or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// Classification.
    pub kind: AuthErrorKind,
    /// The AADSTS number, when the identity platform sent one.
    pub aadsts: Option<u64>,
    /// Correlation id of the failed token request, for a support case.
    pub correlation_id: Option<String>,
    explanation: String,
}

impl AuthError {
    pub(crate) fn new(kind: AuthErrorKind, explanation: impl Into<String>) -> Self {
        Self {
            kind,
            aadsts: None,
            correlation_id: None,
            explanation: explanation.into(),
        }
    }

    /// The explanation without the identifiers.
    pub fn explanation(&self) -> &str {
        &self.explanation
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sign-in to Microsoft Entra ID failed: ")?;
        f.write_str(&self.explanation)?;
        match (self.aadsts, &self.correlation_id) {
            (Some(code), Some(cid)) => write!(f, " (AADSTS{code}, correlation id {cid})"),
            (Some(code), None) => write!(f, " (AADSTS{code})"),
            (None, Some(cid)) => write!(f, " (correlation id {cid})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for AuthError {}

/// Errors from the Graph client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Sign-in failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Graph answered 403.
    #[error(
        "permission denied on {}: grant the application permission {permission} and admin consent \
         (or an Exchange application access policy excludes this mailbox){}",
        endpoint.name(), RequestId(request_id.as_deref())
    )]
    PermissionDenied {
        /// The permission the endpoint most likely needs.
        permission: &'static str,
        /// What was being done.
        endpoint: Endpoint,
        /// Graph's error code.
        code: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// The user does not exist in the directory.
    #[error("mailbox {mailbox} was not found in the tenant{}", RequestId(request_id.as_deref()))]
    MailboxNotFound {
        /// Mailbox as addressed.
        mailbox: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// The user exists but has no usable Exchange Online mailbox (`MailboxNotEnabledForRESTAPI`).
    #[error(
        "{mailbox} has no Exchange Online mailbox (unlicensed, inactive, soft-deleted or on-premises){}",
        RequestId(request_id.as_deref())
    )]
    MailboxNotEnabled {
        /// Mailbox as addressed.
        mailbox: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// The item, folder or attachment does not exist (any more).
    #[error("{} not found ({code}){}", endpoint.name(), RequestId(request_id.as_deref()))]
    NotFound {
        /// What was being fetched.
        endpoint: Endpoint,
        /// Graph's error code.
        code: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// The delta token expired or was reset (410 / `syncStateNotFound` / `resyncRequired`):
    /// the folder must be enumerated from scratch.
    #[error("the delta state expired ({code}); a full enumeration is needed{}", RequestId(request_id.as_deref()))]
    SyncStateNotFound {
        /// Graph's error code (or `Gone`).
        code: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// A folder with that name already exists (`ErrorFolderExists`, 409).
    #[error("{} conflicts with an existing item ({code}){}", endpoint.name(), RequestId(request_id.as_deref()))]
    AlreadyExists {
        /// What was being created.
        endpoint: Endpoint,
        /// Graph's error code.
        code: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// Still throttled when the retry budget ran out.
    #[error(
        "{} still throttled after {attempts} attempts{}",
        endpoint.name(), RequestId(request_id.as_deref())
    )]
    Throttled {
        /// What was being done.
        endpoint: Endpoint,
        /// Attempts made.
        attempts: u32,
        /// The last `Retry-After` Graph asked for.
        retry_after: Option<Duration>,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// No answer in time, after retries (idempotent requests only).
    #[error("{} timed out after {attempts} attempts", endpoint.name())]
    Timeout {
        /// What was being done.
        endpoint: Endpoint,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection failed, after retries.
    #[error("{} could not reach Microsoft Graph after {attempts} attempts: {reason}", endpoint.name())]
    Network {
        /// What was being done.
        endpoint: Endpoint,
        /// Attempts made.
        attempts: u32,
        /// Transport error text (no URL, no token).
        reason: String,
    },
    /// The host name of the endpoint does not resolve (a misspelt `graph_endpoint`, a
    /// missing DNS entry, no DNS at all). Not retried: waiting does not create a name.
    #[error(
        "{} could not reach {host}: the host name does not resolve (not retried); check the \
         Graph endpoint and this machine's DNS",
        endpoint.name()
    )]
    Dns {
        /// What was being done.
        endpoint: Endpoint,
        /// The name that did not resolve.
        host: String,
    },
    /// A write was sent but no answer came back: it may or may not have taken effect.
    /// Check (e.g. look for the restore marker property) before sending it again.
    #[error("{} outcome unknown: {reason}; check whether it took effect before retrying", endpoint.name())]
    OutcomeUnknown {
        /// What was being done.
        endpoint: Endpoint,
        /// Why the outcome is unknown.
        reason: String,
    },
    /// Graph kept failing with a server error (5xx).
    #[error(
        "{} failed with HTTP {status} ({code}) after {attempts} attempts{}",
        endpoint.name(), RequestId(request_id.as_deref())
    )]
    Server {
        /// What was being done.
        endpoint: Endpoint,
        /// HTTP status.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Attempts made.
        attempts: u32,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// Graph refused the request (4xx not covered above).
    #[error(
        "{} rejected with HTTP {status} ({code}): {message}{}",
        endpoint.name(), RequestId(request_id.as_deref())
    )]
    Rejected {
        /// What was being done.
        endpoint: Endpoint,
        /// HTTP status.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Graph's developer message (truncated).
        message: String,
        /// Graph `request-id`.
        request_id: Option<String>,
    },
    /// A request body exceeds what Graph accepts; caught before sending.
    #[error("{what} is {size} bytes; Graph accepts at most {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The TLS handshake failed: the server's certificate was rejected (a private or
    /// corporate CA that is not trusted, an expired certificate). Not retried: waiting
    /// does not change a certificate.
    #[error(
        "TLS handshake with {host} failed: {reason}{}",
        certificate_names(subject.as_deref(), issuer.as_deref())
    )]
    Tls {
        /// The host connected to (Graph or the identity platform).
        host: String,
        /// What failed.
        reason: String,
        /// Subject of the server's certificate, when it was rejected.
        subject: Option<String>,
        /// Issuer of the server's certificate, when it was rejected.
        issuer: Option<String>,
    },
    /// The answer did not have the documented shape, or a link pointed off the Graph host.
    #[error("unexpected answer from {}: {reason}", endpoint.name())]
    Protocol {
        /// What was being done.
        endpoint: Endpoint,
        /// What was wrong.
        reason: String,
    },
}

impl GraphError {
    /// Whether trying the same thing later (e.g. next run) may succeed without any change
    /// of configuration. `OutcomeUnknown` is not: it needs a check first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::Timeout { .. }
                | Self::Network { .. }
                | Self::Server { .. }
        )
    }

    /// Graph's `request-id` of the failing response, for a support case.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::PermissionDenied { request_id, .. }
            | Self::MailboxNotFound { request_id, .. }
            | Self::MailboxNotEnabled { request_id, .. }
            | Self::NotFound { request_id, .. }
            | Self::SyncStateNotFound { request_id, .. }
            | Self::AlreadyExists { request_id, .. }
            | Self::Throttled { request_id, .. }
            | Self::Server { request_id, .. }
            | Self::Rejected { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// A TLS failure found in a transport error, if that is what it is.
    pub(crate) fn tls(e: &reqwest::Error) -> Option<Self> {
        match atlas_net::classify(e)? {
            atlas_net::NetFailure::Tls {
                reason,
                subject,
                issuer,
            } => Some(Self::Tls {
                host: e
                    .url()
                    .and_then(|u| u.host_str())
                    .unwrap_or("the server")
                    .to_owned(),
                reason,
                subject,
                issuer,
            }),
            atlas_net::NetFailure::Dns { .. } => None,
        }
    }

    pub(crate) fn protocol(endpoint: Endpoint, reason: impl Into<String>) -> Self {
        Self::Protocol {
            endpoint,
            reason: reason.into(),
        }
    }
}

/// Formats `; Graph request-id …` only when there is one.
struct RequestId<'a>(Option<&'a str>);

impl fmt::Display for RequestId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "; Graph request-id {id}"),
            None => Ok(()),
        }
    }
}

/// Graph's error body `{"error":{"code","message","innerError":{…}}}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub error: ErrorDetail,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    pub inner_error: Option<InnerError>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct InnerError {
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// Parse leniently: a non-JSON body (proxy page, empty 503) yields an empty code.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// Everything known about a failed HTTP answer, before it becomes a [`GraphError`].
#[derive(Debug, Clone)]
pub(crate) struct HttpFailure {
    pub status: u16,
    pub body: ErrorBody,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
}

/// HTTP status + Graph error code → variant. The only place that does this.
pub(crate) fn translate(
    failure: HttpFailure,
    endpoint: Endpoint,
    mailbox: Option<&str>,
    attempts: u32,
) -> GraphError {
    let HttpFailure {
        status,
        body,
        request_id,
        retry_after,
    } = failure;
    let request_id = request_id.or(body.error.inner_error.and_then(|i| i.request_id));
    let code = body.error.code;
    let is = |c: &str| code.eq_ignore_ascii_case(c);
    let mailbox_name = || mailbox.unwrap_or("(unknown)").to_owned();

    if is("MailboxNotEnabledForRESTAPI") {
        return GraphError::MailboxNotEnabled {
            mailbox: mailbox_name(),
            request_id,
        };
    }
    if status == 410 || is("syncStateNotFound") || is("resyncRequired") || is("syncStateInvalid") {
        let code = if code.is_empty() {
            "Gone".to_owned()
        } else {
            code
        };
        return GraphError::SyncStateNotFound { code, request_id };
    }
    match status {
        401 => GraphError::Auth(AuthError::new(
            AuthErrorKind::TokenRejected,
            format!(
                "Microsoft Graph rejected a freshly issued access token ({code}); check that the \
                 authority host and Graph endpoint belong to the same cloud{}",
                RequestId(request_id.as_deref())
            ),
        )),
        403 => GraphError::PermissionDenied {
            permission: endpoint.permission_hint(),
            endpoint,
            code,
            request_id,
        },
        404 if is("ErrorInvalidUser")
            || is("Request_ResourceNotFound")
            || matches!(endpoint, Endpoint::GetUser) =>
        {
            GraphError::MailboxNotFound {
                mailbox: mailbox_name(),
                request_id,
            }
        }
        404 => GraphError::NotFound {
            endpoint,
            code,
            request_id,
        },
        409 => GraphError::AlreadyExists {
            endpoint,
            code,
            request_id,
        },
        _ if is("ErrorFolderExists") || is("nameAlreadyExists") => GraphError::AlreadyExists {
            endpoint,
            code,
            request_id,
        },
        429 => GraphError::Throttled {
            endpoint,
            attempts,
            retry_after,
            request_id,
        },
        500..=599 => GraphError::Server {
            endpoint,
            status,
            code,
            attempts,
            request_id,
        },
        _ => {
            let mut message = body.error.message;
            if message.len() > 300 {
                let mut cut = 300;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            GraphError::Rejected {
                endpoint,
                status,
                code,
                message,
                request_id,
            }
        }
    }
}

fn certificate_names(subject: Option<&str>, issuer: Option<&str>) -> String {
    match (subject, issuer) {
        (Some(s), Some(i)) => format!(" (certificate subject \"{s}\", issued by \"{i}\")"),
        (Some(s), None) => format!(" (certificate subject \"{s}\")"),
        (None, Some(i)) => format!(" (certificate issued by \"{i}\")"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, json: &str) -> HttpFailure {
        HttpFailure {
            status,
            body: ErrorBody::parse(json.as_bytes()),
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn status_and_code_map_to_semantic_variants() {
        let f = |s, j, e| translate(failure(s, j), e, Some("a@b"), 1);
        assert!(matches!(
            f(
                404,
                r#"{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"x"}}"#,
                Endpoint::ListFolders
            ),
            GraphError::MailboxNotEnabled { .. }
        ));
        assert!(matches!(
            f(
                400,
                r#"{"error":{"code":"MailboxNotEnabledForRESTAPI"}}"#,
                Endpoint::MessageDelta
            ),
            GraphError::MailboxNotEnabled { .. }
        ));
        assert!(matches!(
            f(
                410,
                r#"{"error":{"code":"SyncStateNotFound","message":"generation"}}"#,
                Endpoint::MessageDelta
            ),
            GraphError::SyncStateNotFound { .. }
        ));
        assert!(matches!(
            f(
                400,
                r#"{"error":{"code":"resyncRequired"}}"#,
                Endpoint::MessageDelta
            ),
            GraphError::SyncStateNotFound { .. }
        ));
        assert!(matches!(
            f(410, "", Endpoint::MessageDelta),
            GraphError::SyncStateNotFound { .. }
        ));
        assert!(matches!(
            f(
                404,
                r#"{"error":{"code":"ErrorInvalidUser"}}"#,
                Endpoint::ListFolders
            ),
            GraphError::MailboxNotFound { .. }
        ));
        assert!(matches!(
            f(
                404,
                r#"{"error":{"code":"Request_ResourceNotFound"}}"#,
                Endpoint::GetUser
            ),
            GraphError::MailboxNotFound { .. }
        ));
        assert!(matches!(
            f(
                404,
                r#"{"error":{"code":"ErrorItemNotFound"}}"#,
                Endpoint::GetMessage
            ),
            GraphError::NotFound { .. }
        ));
        assert!(matches!(
            f(
                400,
                r#"{"error":{"code":"ErrorFolderExists"}}"#,
                Endpoint::CreateFolder
            ),
            GraphError::AlreadyExists { .. }
        ));
        assert!(matches!(
            f(409, "{}", Endpoint::CreateFolder),
            GraphError::AlreadyExists { .. }
        ));
        assert!(matches!(
            f(429, "{}", Endpoint::GetMessage),
            GraphError::Throttled { .. }
        ));
        assert!(matches!(
            f(502, "<html>", Endpoint::GetMessage),
            GraphError::Server { status: 502, .. }
        ));
        assert!(matches!(
            f(
                400,
                r#"{"error":{"code":"BadRequest","message":"The maximum request length supported is 4MB."}}"#,
                Endpoint::CreateMessage
            ),
            GraphError::Rejected { status: 400, .. }
        ));
    }

    #[test]
    fn forbidden_names_the_permission_of_the_endpoint() {
        let cases = [
            (Endpoint::ListUsers, "User.Read.All"),
            (Endpoint::MessageDelta, "Mail.Read"),
            (Endpoint::MessageMime, "Mail.Read"),
            (Endpoint::CreateMessage, "Mail.ReadWrite"),
            (Endpoint::MailboxSettings, "MailboxSettings.Read"),
            (Endpoint::Reports, "Reports.Read.All"),
        ];
        for (endpoint, perm) in cases {
            let err = translate(
                HttpFailure {
                    request_id: Some("rid-1".into()),
                    ..failure(403, r#"{"error":{"code":"ErrorAccessDenied"}}"#)
                },
                endpoint,
                None,
                1,
            );
            match &err {
                GraphError::PermissionDenied { permission, .. } => assert_eq!(*permission, perm),
                other => panic!("{other:?}"),
            }
            let text = err.to_string();
            assert!(text.contains(perm) && text.contains("rid-1"), "{text}");
        }
    }

    #[test]
    fn request_id_falls_back_to_inner_error() {
        let err = translate(
            failure(
                404,
                r#"{"error":{"code":"ErrorItemNotFound","innerError":{"request-id":"abc","date":"x"}}}"#,
            ),
            Endpoint::GetMessage,
            None,
            1,
        );
        assert_eq!(err.request_id(), Some("abc"));
    }

    #[test]
    fn retryable_classification() {
        assert!(
            GraphError::Timeout {
                endpoint: Endpoint::GetMessage,
                attempts: 3
            }
            .is_retryable()
        );
        assert!(
            !GraphError::OutcomeUnknown {
                endpoint: Endpoint::CreateMessage,
                reason: "t".into()
            }
            .is_retryable()
        );
        assert!(
            !GraphError::SyncStateNotFound {
                code: "x".into(),
                request_id: None
            }
            .is_retryable()
        );
    }
}
