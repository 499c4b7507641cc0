//! Validators for single values. Rules that belong to an adapter (S3 bucket names) are
//! the adapter's: the CLI calls them instead of keeping a copy that could drift.

use atlas_store::S3ConfigError;
use url::Url;

pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A tenant is named by its directory (tenant) id, a GUID, or a verified domain such as
/// `contoso.onmicrosoft.com`. Normalized to lower case because it names the repository
/// directory and the default bucket.
pub(super) fn validate_tenant_id(id: &str) -> Result<String, String> {
    let id = id.trim().to_ascii_lowercase();
    let is_domain = id.len() <= 253
        && id.contains('.')
        && id.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_guid(&id) || is_domain {
        Ok(id)
    } else {
        Err("expected the directory (tenant) ID, a GUID, or a domain such as contoso.onmicrosoft.com".to_owned())
    }
}

pub(super) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Endpoints must be http(s) URLs; plain http only to loopback (the simulator, a local
/// S3 server), because client secrets and tokens travel over these connections.
pub(super) fn validate_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        _ if url.host().is_none() => Err("the URL has no host".to_owned()),
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("must use https (plain http is allowed only for localhost)".to_owned()),
        other => Err(format!("unsupported scheme \"{other}\"; expected https")),
    }
}

/// A client-credentials token scope: one resource's `/.default` (Entra ID refuses anything
/// else with AADSTS1002012 or AADSTS700022, so say so before the first request).
pub(super) fn validate_scope(raw: &str) -> Result<String, String> {
    let scope = raw.trim();
    if scope.split_whitespace().count() != 1 || !scope.ends_with("/.default") {
        return Err(format!(
            "expected one resource's '/.default' scope, e.g. {} or, in a national cloud, \
             https://graph.microsoft.us/.default",
            atlas_graph::DEFAULT_GRAPH_SCOPE
        ));
    }
    Ok(scope.to_owned())
}

/// S3 bucket naming rules, as atlas-store checks them before the first request.
pub(super) fn validate_bucket(name: &str) -> Result<(), String> {
    bucket_rule(atlas_store::s3::validate_bucket_name(name))
}

/// The rule a bucket name breaks, in words that fit after the field name in a problem.
pub(super) fn bucket_rule<T>(checked: Result<T, S3ConfigError>) -> Result<T, String> {
    checked.map_err(|e| match e {
        S3ConfigError::InvalidBucketName { rule, .. } => format!("an S3 bucket name {rule}"),
        other => other.to_string(),
    })
}
