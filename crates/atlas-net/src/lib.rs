//! # atlas-net
//!
//! How Atlas's HTTP clients (the S3 store in `atlas-store`, the Graph client in
//! `atlas-graph`) reach servers on real networks, in one place so both behave the same:
//!
//! - **Trust**: the operating system's certificate store (through `rustls-native-certs`,
//!   which follows OpenSSL's `SSL_CERT_FILE` / `SSL_CERT_DIR` convention), Mozilla's bundle
//!   (what Atlas trusted before, so hosts without a CA bundle keep working), and every
//!   certificate of the extra CA files in [`NetOptions::ca_files`] (`ATLAS_CA_FILE`: a
//!   private CA, a TLS-inspecting corporate proxy).
//! - **Proxies**: explicit [`NetOptions::https_proxy`] / [`NetOptions::http_proxy`] with a
//!   [`NetOptions::no_proxy`] list; the CLI fills them from `HTTPS_PROXY`, `HTTP_PROXY` and
//!   `NO_PROXY`. The libraries themselves never read the environment.
//! - **Failures by kind**: [`classify`] finds, in a `reqwest` error, a host name that did
//!   not resolve ([`NetFailure::Dns`]) or a TLS handshake that failed
//!   ([`NetFailure::Tls`], with the rejected certificate's subject and issuer). Neither
//!   heals by waiting, so callers report them at once instead of retrying. Classification
//!   is by error type (our resolver's and rustls's), never by message text.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use url::Url;

/// Network settings shared by every HTTP client of a run. `Default` is "the OS store and
/// Mozilla's bundle, no proxy". `Debug` leaves out a proxy's user and password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// PEM files whose certificates are trusted in addition to the built-in stores.
    pub ca_files: Vec<PathBuf>,
    /// Proxy for `https://` URLs (tunnelled with `CONNECT`).
    pub https_proxy: Option<Url>,
    /// Proxy for plain `http://` URLs.
    pub http_proxy: Option<Url>,
    /// Hosts reached directly, curl's syntax: comma-separated names (a leading `.` or none
    /// matches subdomains too), IP addresses or CIDR blocks, `*` for all.
    pub no_proxy: Option<String>,
}

impl fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetOptions")
            .field("ca_files", &self.ca_files)
            .field("https_proxy", &self.https_proxy.as_ref().map(redacted_url))
            .field("http_proxy", &self.http_proxy.as_ref().map(redacted_url))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Why a client could not be built from [`NetOptions`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// An extra CA file cannot be read or holds no usable certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A proxy URL reqwest refuses.
    #[error("proxy {url}: {reason}")]
    Proxy {
        /// The proxy URL without credentials.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A failure that waiting will not heal, found by [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFailure {
    /// The host name did not resolve.
    Dns {
        /// The name.
        host: String,
        /// The resolver's answer.
        detail: String,
    },
    /// The TLS handshake failed.
    Tls {
        /// What failed, in words.
        reason: String,
        /// Subject of the server's certificate (RFC 4514), when it was rejected.
        subject: Option<String>,
        /// Issuer of the server's certificate (RFC 4514), when it was rejected.
        issuer: Option<String>,
    },
}

type MakeProxy = fn(&str) -> reqwest::Result<reqwest::Proxy>;

/// A `reqwest` client builder with Atlas's trust, proxy and resolver settings; callers add
/// their timeouts and build.
pub fn client_builder(options: &NetOptions) -> Result<reqwest::ClientBuilder, NetError> {
    let tls = tls_config(options)?;
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .dns_resolver(Arc::new(NamingResolver))
        // Proxies come from `options` only: a library reading the environment behind its
        // caller's back is what made these settings hard to test and to document.
        .no_proxy();
    let no_proxy = options
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    let proxies: [(&Option<Url>, MakeProxy); 2] = [
        (&options.https_proxy, |u| reqwest::Proxy::https(u)),
        (&options.http_proxy, |u| reqwest::Proxy::http(u)),
    ];
    for (url, make) in proxies {
        let Some(url) = url else { continue };
        let proxy = make(url.as_str()).map_err(|e| NetError::Proxy {
            url: redacted_url(url),
            reason: e.to_string(),
        })?;
        builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
    }
    Ok(builder)
}

/// A proxy URL as it may be shown: user name and password removed.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Look through `err`'s causes for a failure that cannot heal by retrying.
pub fn classify(err: &(dyn StdError + 'static)) -> Option<NetFailure> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(found) = classify_one(e) {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps (hyper wraps tokio-rustls's
        // `io::Error` in another one); look inside explicitly.
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| classify(inner))
        {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

fn classify_one(e: &(dyn StdError + 'static)) -> Option<NetFailure> {
    if let Some(dns) = e.downcast_ref::<DnsFailure>() {
        return Some(NetFailure::Dns {
            host: dns.host.clone(),
            detail: dns.source.to_string(),
        });
    }
    let tls = e.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
            match other.downcast_ref::<RejectedCertificate>() {
                Some(rejected) => NetFailure::Tls {
                    reason: certificate_reason(&rejected.reason),
                    subject: rejected.subject.clone(),
                    issuer: rejected.issuer.clone(),
                },
                None => NetFailure::Tls {
                    reason: format!("the server's certificate was rejected: {other}"),
                    subject: None,
                    issuer: None,
                },
            }
        }
        rustls::Error::InvalidCertificate(reason) => NetFailure::Tls {
            reason: certificate_reason(reason),
            subject: None,
            issuer: None,
        },
        other => NetFailure::Tls {
            reason: other.to_string(),
            subject: None,
            issuer: None,
        },
    })
}

fn certificate_reason(reason: &CertificateError) -> String {
    match reason {
        CertificateError::UnknownIssuer => "the server's certificate is signed by an unknown \
             issuer (a private or corporate CA that is not trusted here)"
            .to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (check this machine's clock)".to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for this host name".to_owned()
        }
        CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
        other => format!("the server's certificate was rejected ({other:?})"),
    }
}

// ---------------------------------------------------------------------------------------
// Trust

/// The built-in roots (OS store + Mozilla's bundle), loaded once per process: reading the
/// OS store parses a few hundred kilobytes.
fn builtin_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "could not read part of the OS certificate store");
        }
        tracing::debug!(
            certificates = native.certs.len(),
            "loaded the OS certificate store"
        );
        native.certs
    })
}

fn tls_config(options: &NetOptions) -> Result<rustls::ClientConfig, NetError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Some OS stores carry certificates webpki cannot use (old or odd encodings); those
    // are skipped, as every rustls client does.
    let (_, _) = roots.add_parsable_certificates(builtin_roots().iter().cloned());
    for path in &options.ca_files {
        let bad = |reason: String| NetError::CaFile {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> =
            rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("not a PEM certificate file ({e:?})")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file (PEM expected)".to_owned()));
        }
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad(format!(
                "none of its {ignored} certificate(s) can be used as a trust anchor"
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NamingVerifier { inner: webpki }))
        .with_no_client_auth();
    Ok(config)
}

/// The standard webpki verification, unchanged, except that a rejected certificate's
/// subject and issuer travel with the error: "unknown issuer" alone does not tell an
/// administrator which proxy or server presented what.
#[derive(Debug)]
struct NamingVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

/// The error a [`NamingVerifier`] returns inside `CertificateError::Other`.
#[derive(Debug)]
struct RejectedCertificate {
    reason: CertificateError,
    subject: Option<String>,
    issuer: Option<String>,
}

impl fmt::Display for RejectedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", certificate_reason(&self.reason))
    }
}

impl StdError for RejectedCertificate {}

impl ServerCertVerifier for NamingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(reason) => {
                    let (subject, issuer) = names(end_entity);
                    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
                        Arc::new(RejectedCertificate {
                            reason,
                            subject,
                            issuer,
                        }),
                    )))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Subject and issuer of a DER certificate, RFC 4514 strings; `None` if it does not parse.
fn names(der: &CertificateDer<'_>) -> (Option<String>, Option<String>) {
    use x509_cert::der::Decode as _;
    match x509_cert::Certificate::from_der(der.as_ref()) {
        Ok(cert) => (
            Some(cert.tbs_certificate.subject.to_string()),
            Some(cert.tbs_certificate.issuer.to_string()),
        ),
        Err(_) => (None, None),
    }
}

// ---------------------------------------------------------------------------------------
// Name resolution

/// The system resolver (`getaddrinfo` through tokio), with a typed error naming the host,
/// so a name that does not resolve can be told from a refused connection.
#[derive(Debug)]
struct NamingResolver;

/// A failed lookup.
#[derive(Debug)]
struct DnsFailure {
    host: String,
    source: std::io::Error,
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {}: {}", self.host, self.source)
    }
}

impl StdError for DnsFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

impl Resolve for NamingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.clone(), 0)).await;
            match found {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    Ok(Box::new(addrs.into_iter()) as Addrs)
                }
                Err(source) => Err(Box::new(DnsFailure { host, source }) as _),
            }
        })
    }
}

#[cfg(feature = "testing")]
pub mod testing;
