//! Transport-neutral request/response values, so the same handlers serve direct HTTP calls
//! and the inner requests of a `$batch`.

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

/// A request as the Graph handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    /// Path below `/v1.0`, still percent-encoded, starting with `/`.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// A query option by name; `$top` and `top` are the same option, names case-insensitive.
    pub fn q(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('$');
        self.query
            .iter()
            .find(|(k, _)| k.trim_start_matches('$').eq_ignore_ascii_case(bare))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All `Prefer` preferences (comma-separated across all `Prefer` headers), trimmed.
    pub fn prefer(&self) -> Vec<String> {
        self.headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn prefer_immutable_ids(&self) -> bool {
        self.prefer().iter().any(|p| {
            let p = p.replace(' ', "");
            p.eq_ignore_ascii_case("IdType=\"ImmutableId\"")
                || p.eq_ignore_ascii_case("IdType=ImmutableId")
        })
    }

    pub fn prefer_max_page_size(&self) -> Option<usize> {
        self.prefer().iter().find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("odata.maxpagesize")
                .then(|| v.trim().trim_matches('"').parse().ok())?
        })
    }

    pub fn prefer_text_body(&self) -> bool {
        self.prefer().iter().any(|p| {
            p.replace(' ', "")
                .eq_ignore_ascii_case("outlook.body-content-type=\"text\"")
        })
    }

    pub fn json_body(&self) -> Result<Value, Box<Resp>> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Box::new(Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Unable to read JSON request payload: {e}"),
            ))
        })
    }
}

/// Body of a response before it is serialised.
#[derive(Debug, Clone)]
pub(crate) enum RespBody {
    Empty,
    Json(Value),
    Bytes { content_type: String, data: Bytes },
}

/// A response as the Graph handlers produce it.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: RespBody,
}

impl Resp {
    pub fn json(status: StatusCode, v: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: RespBody::Json(v),
        }
    }

    pub fn ok(v: Value) -> Self {
        Self::json(StatusCode::OK, v)
    }

    pub fn bytes(content_type: &str, data: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: RespBody::Bytes {
                content_type: content_type.to_owned(),
                data: data.into(),
            },
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: RespBody::Empty,
        }
    }

    /// The documented Graph error shape; `innerError` ids are filled in by [`Resp::finish`].
    pub fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({"error": {"code": code, "message": message, "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()
            }}}),
        )
    }

    /// An Outlook-style error without `innerError` (e.g. `ApplicationThrottled`).
    pub fn bare_error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::json(status, json!({"error": {"code": code, "message": message}}))
    }

    pub fn with_header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }

    pub fn body_len(&self) -> usize {
        match &self.body {
            RespBody::Empty => 0,
            RespBody::Json(v) => v.to_string().len(),
            RespBody::Bytes { data, .. } => data.len(),
        }
    }

    /// Fills `innerError` request ids (Graph puts them in every error it owns).
    pub fn finish(&mut self, request_id: &str, client_request_id: &str) {
        if let RespBody::Json(v) = &mut self.body
            && let Some(inner) = v
                .get_mut("error")
                .and_then(|e| e.get_mut("innerError"))
                .and_then(Value::as_object_mut)
        {
            inner.insert("request-id".into(), Value::String(request_id.to_owned()));
            inner.insert(
                "client-request-id".into(),
                Value::String(client_request_id.to_owned()),
            );
        }
    }

    pub fn into_response(self, request_id: &str, client_request_id: &str) -> Response {
        let (ct, body) = match self.body {
            RespBody::Empty => (None, Body::empty()),
            RespBody::Json(v) => (Some("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".to_owned()), Body::from(v.to_string())),
            RespBody::Bytes { content_type, data } => (Some(content_type), Body::from(data)),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if let Some(ct) = ct
            && let Ok(v) = HeaderValue::from_str(&ct)
        {
            h.insert("content-type", v);
        }
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                h.append(k, v);
            }
        }
        standard_headers(h, request_id, client_request_id);
        resp
    }
}

/// Headers every Graph and identity response carries (graph-api.md §2.5).
pub(crate) fn standard_headers(h: &mut HeaderMap, request_id: &str, client_request_id: &str) {
    let pairs = [
        ("request-id", request_id.to_owned()),
        ("client-request-id", client_request_id.to_owned()),
        ("date", Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        ("strict-transport-security", "max-age=31536000".to_owned()),
        (
            "x-ms-ags-diagnostic",
            r#"{"ServerInfo":{"DataCenter":"Simulated","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"SIM0001"}}"#.to_owned(),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

/// Percent-decodes a path segment.
pub(crate) fn decode_segment(s: &str) -> String {
    percent_decode(s)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Builds a query string from pairs, percent-encoding values.
pub(crate) fn encode_query(pairs: &[(String, String)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish().replace("%24", "$")
}
