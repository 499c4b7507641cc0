//! Bucket names: the per-tenant default `atlas-{tenant}` and S3's naming rules.
//!
//! Atlas 1.x used `atlas-` + the tenant id verbatim, so an upper-case or domain-style
//! tenant produced an invalid or divergent name that only failed at the first request.
//! Here the name is lower-cased and checked up front, with a message saying which rule
//! broke and how to override it (`ATLAS_S3_BUCKET` + a per-tenant key prefix).

use super::S3ConfigError;

/// The default bucket of a tenant: `atlas-{tenant}` lower-cased, validated.
///
/// A GUID tenant id gives a 42-character valid name, the same one Atlas 1.x used for a
/// lower-case id, so existing buckets keep being found.
pub fn tenant_bucket_name(tenant: &str) -> Result<String, S3ConfigError> {
    let name = format!("atlas-{}", tenant.trim().to_ascii_lowercase());
    validate_bucket_name(&name)?;
    Ok(name)
}

/// Check `name` against the S3 general-purpose bucket naming rules.
pub fn validate_bucket_name(name: &str) -> Result<(), S3ConfigError> {
    let fail = |rule: &str| {
        Err(S3ConfigError::InvalidBucketName {
            name: name.to_string(),
            rule: rule.to_string(),
        })
    };
    if !(3..=63).contains(&name.len()) {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return fail("may contain only lower-case letters, digits, hyphens and dots");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return fail("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return fail("must not contain two adjacent dots or a dot next to a hyphen");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return fail("must not look like an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.starts_with("amzn-s3-demo-")
    {
        return fail("must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") || name.ends_with("--x-s3") {
        return fail("must not end with a reserved suffix (-s3alias, --ol-s3, --x-s3)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_tenant_gives_the_v1_name() {
        assert_eq!(
            tenant_bucket_name("0F8FAD5B-D9CB-469F-A165-70867728950E").unwrap(),
            "atlas-0f8fad5b-d9cb-469f-a165-70867728950e"
        );
    }

    #[test]
    fn domain_tenant_is_lower_cased_and_valid() {
        assert_eq!(
            tenant_bucket_name("Contoso.onmicrosoft.com").unwrap(),
            "atlas-contoso.onmicrosoft.com"
        );
    }

    #[test]
    fn invalid_names_say_which_rule() {
        for (name, rule) in [
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("Atlas", "lower-case"),
            ("atlas_x", "lower-case"),
            ("-atlas", "begin and end"),
            ("atlas-", "begin and end"),
            ("a..b", "adjacent"),
            ("a.-b", "adjacent"),
            ("192.168.5.4", "IP address"),
            ("xn--abc", "reserved prefix"),
            ("abc-s3alias", "reserved suffix"),
        ] {
            match validate_bucket_name(name) {
                Err(S3ConfigError::InvalidBucketName { rule: got, .. }) => {
                    assert!(got.contains(rule), "{name}: {got}");
                }
                other => panic!("{name} must be refused, got {other:?}"),
            }
        }
        for ok in ["abc", "atlas-tenant", "a.b.c", "1.2.3", "atlas-1.2.3.4x"] {
            validate_bucket_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn a_tenant_that_cannot_make_a_bucket_name_is_refused() {
        assert!(tenant_bucket_name("has space").is_err());
        assert!(tenant_bucket_name(&"x".repeat(60)).is_err());
    }
}
