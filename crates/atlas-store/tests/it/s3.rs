//! `S3Store` against a real S3 server (moto, started by `scripts/s3-server.sh`, found via
//! `ATLAS_TEST_S3_ENDPOINT`), plus an in-test HTTP server for what moto does not check
//! (credentials, signatures, Content-MD5, clock skew, throttling).

// Test helpers (not only #[test] functions) may panic on setup failures.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas_core::ports::blob_store::CredentialProblem;
use atlas_core::ports::{BlobStore, LockMode, PutOptions, Retention, StoreError, StoreKey};
use atlas_store::conformance;
use atlas_store::s3::{Credentials, S3Config, S3Store};
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use md5::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SKIP: &str = "SKIPPED: no S3 test server (run scripts/s3-server.sh)";

fn moto_endpoint() -> Option<String> {
    match std::env::var("ATLAS_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            // Written to the real stderr, past the test harness's output capture, so the
            // skip is visible in a normal `cargo test` run.
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), format!("{SKIP}\n").as_bytes());
            None
        }
    }
}

fn config(endpoint: &str, bucket: &str) -> S3Config {
    let mut cfg = S3Config::shared_bucket(
        bucket,
        "tenant-1",
        "us-east-1",
        Credentials::new("test-access", "test-secret"),
    )
    .unwrap()
    .endpoint(endpoint)
    .path_style(true);
    // Small parts so the conformance suite's 20 MiB object goes up as a multipart upload.
    cfg.multipart_threshold = 8 * 1024 * 1024;
    cfg.part_size = 5 * 1024 * 1024;
    cfg.retry_base_delay = Duration::from_millis(10);
    cfg
}

fn fresh_bucket() -> String {
    format!(
        "atlas-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

async fn moto_store(lock: bool) -> Option<S3Store> {
    let endpoint = moto_endpoint()?;
    let store = S3Store::new(config(&endpoint, &fresh_bucket())).unwrap();
    let setup = store.ensure_bucket(lock).await.unwrap();
    assert!(setup.created);
    assert_eq!(setup.object_lock, lock);
    assert_eq!(
        setup.lifecycle,
        Some(Ok(())),
        "lifecycle rules on a new bucket"
    );
    Some(store)
}

fn key(s: &str) -> StoreKey {
    StoreKey::new(s).unwrap()
}

fn days(n: i64) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(n)
}

fn retention(mode: LockMode, until: chrono::DateTime<Utc>) -> PutOptions {
    PutOptions {
        mode: atlas_core::ports::PutMode::Overwrite,
        retention: Some(Retention {
            mode,
            retain_until: until,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Against moto

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms() {
    let Some(store) = moto_store(false).await else {
        return;
    };
    assert!(
        store.probe_conditional_writes().await.unwrap(),
        "moto honours If-None-Match"
    );
    let store: Arc<dyn BlobStore> = Arc::new(store);
    conformance::run_all(&store).await;
}

/// On a versioned (lock-enabled) bucket every delete goes through the versions, and the
/// contract still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_on_a_locked_bucket_conforms() {
    let Some(store) = moto_store(true).await else {
        return;
    };
    let store: Arc<dyn BlobStore> = Arc::new(store);
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_lock_retention_refuses_deletes() {
    let Some(store) = moto_store(true).await else {
        return;
    };
    let status = store.lock_status().await.unwrap().unwrap();
    assert!(status.object_lock && status.versioning, "{status:?}");

    for (name, mode) in [
        ("gov", LockMode::Governance),
        ("comp", LockMode::Compliance),
    ] {
        let k = key(&format!("locked/{name}"));
        let until = days(2);
        store
            .put(&k, Bytes::from_static(b"data"), retention(mode, until))
            .await
            .unwrap();
        let got = store
            .retention(&k)
            .await
            .unwrap()
            .expect("retention is set");
        assert_eq!(got.mode, mode);
        assert!(got.retain_until >= until - chrono::Duration::seconds(1));
        match store.delete(&k).await {
            Err(StoreError::Retained { key: rk, until: ru }) => {
                assert_eq!(rk, k.to_string());
                assert!(
                    ru.starts_with(&until.format("%Y-%m-%d").to_string()),
                    "{ru}"
                );
            }
            other => panic!("delete of a {mode:?}-locked object must be Retained, got {other:?}"),
        }
        assert_eq!(
            store.get(&k).await.unwrap(),
            Bytes::from_static(b"data"),
            "a refused delete leaves the object readable"
        );
    }

    // A plain object in the same bucket deletes completely (no delete marker left).
    let plain = key("plain/obj");
    store
        .put(&plain, Bytes::from_static(b"x"), PutOptions::CREATE)
        .await
        .unwrap();
    store.delete(&plain).await.unwrap();
    assert!(
        store.versions(&plain).await.unwrap().is_empty(),
        "delete removes every version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwriting_a_locked_object_keeps_the_old_version_retained() {
    let Some(store) = moto_store(true).await else {
        return;
    };
    let k = key("index/obj");
    store
        .put(
            &k,
            Bytes::from_static(b"v1"),
            retention(LockMode::Compliance, days(1)),
        )
        .await
        .unwrap();
    store
        .put(&k, Bytes::from_static(b"v2"), PutOptions::OVERWRITE)
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"v2"));

    let versions = store.versions(&k).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions[0].is_latest && !versions[1].is_latest);
    let old = store
        .version_retention(&k, &versions[1].version_id)
        .await
        .unwrap();
    assert_eq!(old.map(|r| r.mode), Some(LockMode::Compliance));

    assert!(matches!(
        store.delete(&k).await,
        Err(StoreError::Retained { .. })
    ));
    // The unlocked current version was not removed first: v1 never resurfaces.
    assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_is_extended_never_shortened() {
    let Some(store) = moto_store(true).await else {
        return;
    };
    let k = key("data/pack");
    let first = days(3);
    store
        .put(
            &k,
            Bytes::from_static(b"pack"),
            retention(LockMode::Governance, first),
        )
        .await
        .unwrap();
    let secs = |d: chrono::DateTime<Utc>| d.timestamp();

    // Longer: applied.
    let longer = days(10);
    let now = store
        .extend_retention(
            &k,
            Retention {
                mode: LockMode::Governance,
                retain_until: longer,
            },
        )
        .await
        .unwrap();
    assert!(secs(now.retain_until) >= secs(longer));
    let read = store.retention(&k).await.unwrap().unwrap();
    assert!(secs(read.retain_until) >= secs(longer), "{read:?}");

    // Shorter: a no-op that reports what is in force (moto itself would shorten it).
    let kept = store
        .extend_retention(
            &k,
            Retention {
                mode: LockMode::Governance,
                retain_until: days(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(secs(kept.retain_until), secs(read.retain_until));
    assert_eq!(
        secs(store.retention(&k).await.unwrap().unwrap().retain_until),
        secs(read.retain_until),
        "retention must never be shortened"
    );

    // Stronger mode with an earlier date: the mode is raised, the date kept.
    let upgraded = store
        .extend_retention(
            &k,
            Retention {
                mode: LockMode::Compliance,
                retain_until: days(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(upgraded.mode, LockMode::Compliance);
    assert_eq!(secs(upgraded.retain_until), secs(read.retain_until));

    // A missing key.
    assert!(matches!(
        store
            .extend_retention(
                &key("nope"),
                Retention {
                    mode: LockMode::Governance,
                    retain_until: days(1)
                }
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_without_lock_says_so() {
    let Some(store) = moto_store(false).await else {
        return;
    };
    let status = store.lock_status().await.unwrap().unwrap();
    assert!(!status.object_lock, "{status:?}");
    assert!(!status.versioning, "{status:?}");

    // Asking for retention there fails instead of writing an unlocked object.
    let k = key("x");
    match store
        .put(
            &k,
            Bytes::from_static(b"x"),
            retention(LockMode::Governance, days(1)),
        )
        .await
    {
        Err(StoreError::Unsupported { what }) => assert!(what.contains("Object Lock"), "{what}"),
        other => panic!("retention on an unlocked bucket must be Unsupported, got {other:?}"),
    }
    assert_eq!(store.head(&k).await.unwrap(), None, "nothing was written");

    // Requiring lock on the existing unlocked bucket fails before any write.
    match store.ensure_bucket(true).await {
        Err(StoreError::Unsupported { what }) => assert!(what.contains(store.bucket()), "{what}"),
        other => panic!("ensure_bucket(lock) on an unlocked bucket: {other:?}"),
    }
    // And without lock it is simply there.
    let again = store.ensure_bucket(false).await.unwrap();
    assert!(!again.created);
}

/// Two buckets on one moto server, one access key: `copy_from` copies server-side, byte
/// for byte, and keeps `Create` and retention semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_side_copy_between_buckets_on_one_server() {
    let Some(source) = moto_store(false).await else {
        return;
    };
    let Some(target) = moto_store(true).await else {
        return;
    };
    let src = source
        .copy_source()
        .expect("an S3 store can be copied from");
    assert_eq!(src.bucket, source.bucket());
    assert_eq!(src.key_prefix, source.key_prefix());
    assert_eq!(
        src.account, "test-access",
        "the access key id, not the secret"
    );

    let k = key("packs/ab/obj+1@x=y");
    let data = Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    source
        .put(&k, data.clone(), PutOptions::CREATE)
        .await
        .unwrap();

    assert!(
        target
            .copy_from(&src, &k, &k, PutOptions::CREATE)
            .await
            .unwrap(),
        "same endpoint and account: copied server-side"
    );
    assert_eq!(target.get(&k).await.unwrap(), data, "exact bytes");
    assert_eq!(target.head(&k).await.unwrap().unwrap().size, 300_000);

    // Create refuses to overwrite, and leaves the existing object as it was.
    let other = key("other");
    source
        .put(&other, Bytes::from_static(b"different"), PutOptions::CREATE)
        .await
        .unwrap();
    match target.copy_from(&src, &other, &k, PutOptions::CREATE).await {
        Err(StoreError::AlreadyExists { key: existing }) => assert!(existing.contains("obj+1")),
        r => panic!("Create over an existing key must be AlreadyExists, got {r:?}"),
    }
    assert_eq!(target.get(&k).await.unwrap(), data, "left untouched");

    // Overwrite replaces it.
    assert!(
        target
            .copy_from(&src, &other, &k, PutOptions::OVERWRITE)
            .await
            .unwrap()
    );
    assert_eq!(target.get(&k).await.unwrap().as_ref(), b"different");

    // Retention is applied to the copy.
    let until = days(2);
    let locked = key("locked");
    assert!(
        target
            .copy_from(&src, &k, &locked, retention(LockMode::Governance, until))
            .await
            .unwrap()
    );
    let kept = target
        .retention(&locked)
        .await
        .unwrap()
        .expect("retained copy");
    assert_eq!(kept.mode, LockMode::Governance);
    assert!(
        kept.retain_until >= until - chrono::Duration::seconds(1),
        "{kept:?}"
    );

    // A missing source object is NotFound, naming the source key.
    match target
        .copy_from(&src, &key("missing"), &key("m2"), PutOptions::OVERWRITE)
        .await
    {
        Err(StoreError::NotFound { key: missing }) => assert!(missing.contains("missing")),
        r => panic!("copy of a missing object must be NotFound, got {r:?}"),
    }
    assert_eq!(target.head(&key("m2")).await.unwrap(), None);
}

/// Another endpoint or another access key: no server-side copy, nothing sent, nothing
/// written — the caller falls back to get + put.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_side_copy_needs_the_same_endpoint_and_account() {
    let Some(target) = moto_store(false).await else {
        return;
    };
    let k = key("k");
    let elsewhere = S3Store::new(config("http://127.0.0.1:9", "atlas-elsewhere")).unwrap();
    let from_elsewhere = elsewhere.copy_source().unwrap();
    assert!(
        !target
            .copy_from(&from_elsewhere, &k, &k, PutOptions::OVERWRITE)
            .await
            .unwrap(),
        "another endpoint: fall back"
    );
    let mut other_account = target.copy_source().unwrap();
    other_account.account = "another-access-key".into();
    other_account.bucket = "atlas-some-other".into();
    assert!(
        !target
            .copy_from(&other_account, &k, &k, PutOptions::OVERWRITE)
            .await
            .unwrap(),
        "another access key: fall back"
    );
    assert_eq!(target.head(&k).await.unwrap(), None, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_bucket_is_an_explained_error_not_an_empty_repository() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let bucket = fresh_bucket();
    let store = S3Store::new(config(&endpoint, &bucket)).unwrap();
    let k = key("config");
    for (op, result) in [
        ("get", store.get(&k).await.map(|_| ())),
        ("head", store.head(&k).await.map(|_| ())),
        ("list", store.list("").await.map(|_| ())),
        (
            "put",
            store
                .put(&k, Bytes::from_static(b"x"), PutOptions::CREATE)
                .await,
        ),
    ] {
        match result {
            Err(err @ StoreError::BucketMissing { .. }) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(&bucket) && msg.contains(&endpoint),
                    "{op}: {msg}"
                );
                assert!(msg.contains("does not exist"), "{op}: {msg}");
            }
            other => panic!("{op} on a missing bucket: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real networks: TLS from a private CA, proxies, addressing

fn moto_addr(endpoint: &str) -> std::net::SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto listens on an IP address")
}

/// moto behind a TLS front whose certificate comes from a private CA made here.
async fn tls_moto() -> Option<(atlas_net::testing::TestPki, atlas_net::testing::TlsFront)> {
    let endpoint = moto_endpoint()?;
    let pki = atlas_net::testing::TestPki::new();
    let front = atlas_net::testing::tls_front(&pki, moto_addr(&endpoint)).await;
    Some((pki, front))
}

/// Regression: with a certificate from a private CA (an internal S3, corporate TLS
/// inspection) Atlas retried for 48 s and said "connection refused or DNS failure". Now:
/// one connection, a TLS error naming the certificate's subject and issuer; and with the
/// CA file trusted, the same endpoint works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_a_tls_error_at_once_until_its_ca_file_is_trusted() {
    use atlas_net::testing::{CA_NAME, SERVER_NAME};
    let Some((pki, front)) = tls_moto().await else {
        return;
    };
    let endpoint = format!("https://localhost:{}", front.addr.port());
    let bucket = fresh_bucket();
    // No path_style: `localhost` gets path style by itself.
    let mut cfg = S3Config::shared_bucket(
        &bucket,
        "tenant-1",
        "us-east-1",
        Credentials::new("test-access", "test-secret"),
    )
    .unwrap()
    .endpoint(&endpoint);
    cfg.retry_base_delay = Duration::from_secs(30);
    let err = S3Store::new(cfg.clone())
        .unwrap()
        .ensure_bucket(false)
        .await
        .unwrap_err();
    match &err {
        StoreError::Tls {
            subject, issuer, ..
        } => {
            assert!(
                subject.as_deref().unwrap_or("").contains(SERVER_NAME),
                "{err}"
            );
            assert!(issuer.as_deref().unwrap_or("").contains(CA_NAME), "{err}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(err.to_string().contains(CA_NAME), "{err}");
    assert_eq!(front.connections(), 1, "not retried");
    assert_eq!(front.handshakes(), 0);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("private-ca.pem");
    pki.write_ca(&ca_file);
    cfg.net.ca_files = vec![ca_file];
    let store = S3Store::new(cfg).unwrap();
    assert!(store.ensure_bucket(false).await.unwrap().created);
    let k = key("over/tls");
    store
        .put(&k, Bytes::from_static(b"trusted"), PutOptions::CREATE)
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"trusted"));
    assert!(front.handshakes() >= 1);
}

/// `HTTPS_PROXY` (as the CLI passes it): requests tunnel through the proxy with CONNECT;
/// a host in the no-proxy list goes direct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_the_configured_proxy() {
    let Some((pki, front)) = tls_moto().await else {
        return;
    };
    let (proxy, tunnels) = atlas_net::testing::connect_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file);
    let mut cfg = config(
        &format!("https://localhost:{}", front.addr.port()),
        &fresh_bucket(),
    );
    cfg.net.ca_files = vec![ca_file];
    cfg.net.https_proxy = Some(format!("http://{proxy}").parse().unwrap());
    let store = S3Store::new(cfg.clone()).unwrap();
    assert!(store.ensure_bucket(false).await.unwrap().created);
    let through_proxy = tunnels.load(std::sync::atomic::Ordering::SeqCst);
    assert!(through_proxy >= 1, "the proxy tunnelled the requests");

    cfg.net.no_proxy = Some("localhost".to_owned());
    let direct = S3Store::new(cfg).unwrap();
    direct.list("").await.unwrap();
    assert_eq!(
        tunnels.load(std::sync::atomic::Ordering::SeqCst),
        through_proxy,
        "a no-proxy host goes direct"
    );
}

/// Regression: an IP-address endpoint (a local MinIO, Ceph RGW, Garage) got the bucket put
/// in front of the IP ("invalid IPv4 address", retried six times). Without any addressing
/// setting the bucket goes in the path.
#[tokio::test]
async fn an_ip_or_localhost_endpoint_uses_path_style_by_itself() {
    let (endpoint, seen) = scripted_server(Arc::new(|_, _| (200, "payload".to_string()))).await;
    let port = endpoint.rsplit(':').next().unwrap().to_owned();
    for endpoint in [endpoint.clone(), format!("http://localhost:{port}")] {
        let cfg = S3Config::shared_bucket(
            "atlas-auto",
            "tenant-1",
            "us-east-1",
            Credentials::new("test-access", "test-secret"),
        )
        .unwrap()
        .endpoint(endpoint.as_str());
        let store = S3Store::new(cfg).unwrap();
        assert_eq!(
            store.get(&key("k")).await.unwrap(),
            Bytes::from_static(b"payload")
        );
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.target, "/atlas-auto/tenant-1/k", "{endpoint}");
        assert!(
            !last.headers["host"].starts_with("atlas-auto."),
            "{endpoint}: {:?}",
            last.headers["host"]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Without any server

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut cfg = config(&endpoint, "atlas-unreachable");
    cfg.max_attempts = 2;
    let store = S3Store::new(cfg).unwrap();
    match store.get(&key("k")).await {
        Err(StoreError::Io { source, .. }) => {
            let msg = source.to_string();
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused, "{msg}");
            assert!(
                msg.contains(&endpoint) && msg.contains("atlas-unreachable"),
                "{msg}"
            );
            assert!(msg.contains("2 attempt"), "{msg}");
        }
        other => panic!("expected an explained connection error, got {other:?}"),
    }
}

/// A bucket host name that does not resolve is named as a DNS failure, with the bucket
/// that virtual-hosted addressing put in front of the endpoint (the hint to use path
/// style), not retried as if the network were down.
#[tokio::test]
async fn a_bucket_host_that_does_not_resolve_is_a_dns_error() {
    let mut cfg = config("http://s3.nothing-here.invalid:9000", "atlas-vhost").path_style(false);
    cfg.retry_base_delay = Duration::from_secs(30);
    let store = S3Store::new(cfg).unwrap();
    match store.get(&key("k")).await {
        Err(err @ StoreError::Dns { .. }) => {
            let StoreError::Dns {
                host,
                virtual_hosted_bucket,
                ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(host, "atlas-vhost.s3.nothing-here.invalid");
            assert_eq!(virtual_hosted_bucket.as_deref(), Some("atlas-vhost"));
            assert!(err.to_string().contains("path-style"), "{err}");
            assert!(!err.is_retryable());
        }
        other => panic!("expected a DNS error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Against a scripted in-test server: what moto does not check.

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

type Script = Arc<dyn Fn(&Seen, usize) -> (u16, String) + Send + Sync>;

/// Serve HTTP/1.1 on a free port: every request is recorded, a `Content-MD5` or
/// `x-amz-checksum-crc32c` that does not match the body is refused with `BadDigest` (as
/// S3 does — moto accepts it), and the
/// answer comes from `script(request, index)`.
async fn scripted_server(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let req = Seen {
                    method,
                    target,
                    headers,
                    body: buf[head_end..head_end + len].to_vec(),
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(req.clone());
                    log.len() - 1
                };
                let crc_ok = req.headers.get("x-amz-checksum-crc32c").is_none_or(|crc| {
                    *crc == base64::engine::general_purpose::STANDARD
                        .encode(crc32c::crc32c(&req.body).to_be_bytes())
                });
                let (status, body) = match req.headers.get("content-md5") {
                    _ if !crc_ok => (
                        400,
                        s3_error(
                            "BadDigest",
                            "The CRC32C you specified did not match the calculated checksum.",
                        ),
                    ),
                    Some(md5)
                        if *md5
                            != base64::engine::general_purpose::STANDARD
                                .encode(md5::Md5::digest(&req.body)) =>
                    {
                        (
                            400,
                            s3_error("BadDigest", "The Content-MD5 you specified did not match"),
                        )
                    }
                    _ => script(&req, index),
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\netag: \"e\"\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (endpoint, seen)
}

fn s3_error(code: &str, message: &str) -> String {
    format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>")
}

fn scripted_store(endpoint: &str) -> S3Store {
    S3Store::new(config(endpoint, "atlas-scripted")).unwrap()
}

/// What moto does not show: the copy source header is URL-encoded and signed, a `200 OK`
/// whose body is an `<Error>` is a failure (S3 can fail a copy after answering 200), and
/// a source above the single-copy limit falls back.
#[tokio::test]
async fn server_side_copy_on_the_wire() {
    let (endpoint, seen) = scripted_server(Arc::new(|req: &Seen, _| {
        let source = req.headers.get("x-amz-copy-source").cloned().unwrap_or_default();
        if source.contains("big") {
            (
                400,
                s3_error(
                    "InvalidRequest",
                    "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
                ),
            )
        } else if source.contains("flaky") {
            (200, s3_error("InternalError", "We encountered an internal error."))
        } else {
            (200, "<CopyObjectResult><ETag>\"e\"</ETag></CopyObjectResult>".to_string())
        }
    }))
    .await;
    let store = scripted_store(&endpoint);
    let mut src = store.copy_source().unwrap();
    src.bucket = "atlas-source".into();
    src.key_prefix = "t2/".into();

    assert!(
        store
            .copy_from(&src, &key("a+b@c"), &key("d"), PutOptions::OVERWRITE)
            .await
            .unwrap()
    );
    {
        let seen = seen.lock().unwrap();
        let req = seen.last().unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.target, "/atlas-scripted/tenant-1/d");
        assert_eq!(
            req.headers["x-amz-copy-source"],
            "/atlas-source/t2/a%2Bb%40c"
        );
        assert!(
            req.headers["authorization"].contains("x-amz-copy-source"),
            "the copy source is signed: {}",
            req.headers["authorization"]
        );
        assert!(req.body.is_empty(), "no object bytes are sent");
    }

    match store
        .copy_from(&src, &key("flaky"), &key("d"), PutOptions::OVERWRITE)
        .await
    {
        Err(e @ StoreError::Transient { .. }) => assert!(e.to_string().contains("InternalError")),
        r => panic!("a 200 carrying an error must fail, got {r:?}"),
    }

    let before = seen.lock().unwrap().len();
    assert!(
        !store
            .copy_from(&src, &key("big"), &key("d"), PutOptions::OVERWRITE)
            .await
            .unwrap(),
        "above 5 GiB: fall back to get + put"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        before + 1,
        "one attempt, no retry"
    );
}

/// Object data carries a CRC32C that S3 verifies (one hardware pass), and the signature
/// does not hash the body again: over TLS and loopback it is `UNSIGNED-PAYLOAD`. No
/// Content-MD5 pass. The Object Lock headers and the checksum are signed; the algorithm
/// header is what S3 (and moto) want on an upload with retention.
#[tokio::test]
async fn uploads_carry_a_signed_crc32c_and_skip_payload_hashing() {
    let (endpoint, seen) = scripted_server(Arc::new(|_, _| (200, String::new()))).await;
    let store = scripted_store(&endpoint);
    let data = Bytes::from((0..5000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    store
        .put(
            &key("obj+1@x"),
            data.clone(),
            retention(LockMode::Governance, days(1)),
        )
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.body, data.to_vec());
    let want_crc =
        base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(&data).to_be_bytes());
    assert_eq!(req.headers.get("x-amz-checksum-crc32c"), Some(&want_crc));
    assert_eq!(
        req.headers
            .get("x-amz-sdk-checksum-algorithm")
            .map(String::as_str),
        Some("CRC32C")
    );
    assert_eq!(
        req.headers.get("x-amz-content-sha256").map(String::as_str),
        Some("UNSIGNED-PAYLOAD")
    );
    assert_eq!(req.headers.get("content-md5"), None, "no MD5 pass");
    let auth = &req.headers["authorization"];
    for signed in [
        "x-amz-checksum-crc32c",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-content-sha256",
        "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date",
    ] {
        assert!(auth.contains(signed), "{signed} must be signed: {auth}");
    }
}

/// The documented setting for servers that need Content-MD5 (`content_md5`): the upload
/// carries a correct, signed MD5 instead of the CRC32C.
#[tokio::test]
async fn uploads_carry_a_correct_signed_content_md5() {
    let (endpoint, seen) = scripted_server(Arc::new(|_, _| (200, String::new()))).await;
    let mut cfg = config(&endpoint, "atlas-scripted");
    cfg.content_md5 = true;
    let store = S3Store::new(cfg).unwrap();
    let data = Bytes::from((0..5000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    store
        .put(
            &key("obj+1@x"),
            data.clone(),
            retention(LockMode::Governance, days(1)),
        )
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.target, "/atlas-scripted/tenant-1/obj%2B1%40x");
    assert_eq!(req.body, data.to_vec());
    let want_md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data));
    assert_eq!(req.headers.get("content-md5"), Some(&want_md5));
    let auth = &req.headers["authorization"];
    for signed in [
        "content-md5",
        "x-amz-content-sha256",
        "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date",
    ] {
        assert!(auth.contains(signed), "{signed} must be signed: {auth}");
    }
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=test-access/"),
        "{auth}"
    );
    assert!(!auth.contains("test-secret"));
}

#[tokio::test]
async fn a_damaged_upload_is_refused_not_stored() {
    // The scripted server refuses bodies whose MD5 differs; prove the check bites by
    // sending a body that does not match its header through a raw request.
    let (endpoint, _) = scripted_server(Arc::new(|_, _| (200, String::new()))).await;
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/b/k"))
        .header("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("BadDigest"));
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/b/k"))
        .header("x-amz-checksum-crc32c", "AAAAAA==")
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("BadDigest"));
}

/// Each refusal becomes the variant that names it, with what helps to fix it and never
/// the secret. (The CLI adds its setting names to these; see atlas-cli's hints.)
#[tokio::test]
async fn credential_and_clock_errors_are_explained() {
    let cases: [(&str, u16, &str, &[&str]); 4] = [
        (
            "InvalidAccessKeyId",
            403,
            "does not exist",
            &["access key id"],
        ),
        (
            "SignatureDoesNotMatch",
            403,
            "signature mismatch",
            &["secret key"],
        ),
        ("RequestTimeTooSkewed", 403, "too skewed", &["clock"]),
        ("AccessDenied", 403, "Access Denied", &["permission"]),
    ];
    for (code, status, message, hints) in cases {
        let body = s3_error(code, message);
        let (endpoint, _) = scripted_server(Arc::new(move |_, _| (status, body.clone()))).await;
        let store = scripted_store(&endpoint);
        let err = store.get(&key("k")).await.unwrap_err();
        let msg = err.to_string();
        for hint in hints {
            assert!(msg.contains(hint), "{code}: {msg}");
        }
        assert!(msg.contains(&endpoint), "{code}: {msg}");
        assert!(!msg.contains("test-secret"), "{code}: {msg}");
        match (code, &err) {
            (
                "InvalidAccessKeyId",
                StoreError::BadCredentials {
                    problem: CredentialProblem::UnknownAccessKey,
                    bucket,
                    ..
                },
            )
            | (
                "SignatureDoesNotMatch",
                StoreError::BadCredentials {
                    problem: CredentialProblem::SignatureMismatch,
                    bucket,
                    ..
                },
            ) => assert_eq!(bucket, "atlas-scripted"),
            ("RequestTimeTooSkewed", StoreError::ClockSkew { .. }) => {}
            ("AccessDenied", StoreError::AccessDenied { .. }) => {
                assert!(msg.contains("atlas-scripted"), "{msg}");
            }
            _ => panic!("{code}: unexpected variant {err:?}"),
        }
        assert!(!err.is_retryable(), "{code}");
    }
}

/// A bucket in another region: the variant carries the region the server names.
#[tokio::test]
async fn a_wrong_region_names_the_region_the_server_wants() {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
        <Message>the region 'us-east-1' is wrong; expecting 'eu-central-1'</Message>\
        <Region>eu-central-1</Region></Error>"
        .to_string();
    let (endpoint, seen) = scripted_server(Arc::new(move |_, _| (400, body.clone()))).await;
    let err = scripted_store(&endpoint).get(&key("k")).await.unwrap_err();
    match &err {
        StoreError::WrongRegion {
            region,
            server_region,
            bucket,
            ..
        } => {
            assert_eq!(region, "us-east-1");
            assert_eq!(server_region.as_deref(), Some("eu-central-1"));
            assert_eq!(bucket, "atlas-scripted");
        }
        other => panic!("expected WrongRegion, got {other:?}"),
    }
    assert!(err.to_string().contains("eu-central-1"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let script: Script = Arc::new(|_, index| {
        if index < 2 {
            (
                503,
                s3_error("SlowDown", "Please reduce your request rate."),
            )
        } else {
            (200, "payload".to_string())
        }
    });
    let (endpoint, seen) = scripted_server(script).await;
    let store = scripted_store(&endpoint);
    assert_eq!(
        store.get(&key("k")).await.unwrap(),
        Bytes::from_static(b"payload")
    );
    assert_eq!(seen.lock().unwrap().len(), 3, "two SlowDowns, then success");
}

#[tokio::test]
async fn persistent_server_errors_become_transient_after_the_last_attempt() {
    let (endpoint, seen) =
        scripted_server(Arc::new(|_, _| (500, s3_error("InternalError", "boom")))).await;
    let mut cfg = config(&endpoint, "atlas-scripted");
    cfg.max_attempts = 3;
    let store = S3Store::new(cfg).unwrap();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// `Create` of an object large enough for a multipart upload is still create-if-absent
/// (`If-None-Match` on CompleteMultipartUpload), and the refused upload is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multipart_create_refuses_an_existing_key() {
    let Some(store) = moto_store(false).await else {
        return;
    };
    let k = key("packs/big");
    let big = |b: u8| Bytes::from(vec![b; 9 * 1024 * 1024]);
    store.put(&k, big(1), PutOptions::CREATE).await.unwrap();
    match store.put(&k, big(2), PutOptions::CREATE).await {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("a second multipart Create must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get(&k).await.unwrap(),
        big(1),
        "the first object is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_check_reports_what_it_observed() {
    use atlas_store::s3::storage_check;
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    // Missing bucket: reachable, not existing, a note (`atlas init` creates it).
    let missing = S3Store::new(config(&endpoint, &fresh_bucket())).unwrap();
    let report = storage_check(&missing, Some(LockMode::Compliance)).await;
    assert!(report.reachable && !report.bucket_exists, "{report:?}");
    assert!(report.ready(), "{report:?}");
    assert!(report.notes[0].contains("with Object Lock"), "{report:?}");

    // Locked bucket, lock requested: ready, conditional writes confirmed.
    let locked = moto_store(true).await.unwrap();
    let report = storage_check(&locked, Some(LockMode::Governance)).await;
    assert!(report.ready(), "{report:?}");
    assert!(report.object_lock && report.versioning);
    assert_eq!(report.conditional_writes, Some(true));
    // The real lock probe: written with retention, its delete refused, then removed with
    // the governance bypass (the test credentials may bypass), so nothing is left behind.
    let probe = report.lock_probe.clone().expect("lock probe ran");
    assert!(probe.written && probe.delete_refused, "{report:?}");
    assert!(probe.cleaned_up, "{report:?}");
    assert!(locked.list("").await.unwrap().is_empty(), "{report:?}");
    assert!(
        report.notes.iter().any(|n| n.contains(&probe.key)),
        "{report:?}"
    );

    // Unlocked bucket, lock requested: not ready, and it says why.
    let plain = moto_store(false).await.unwrap();
    let report = storage_check(&plain, Some(LockMode::Governance)).await;
    assert!(!report.ready());
    assert!(
        report.problems[0]
            .message
            .contains("Object Lock was requested"),
        "{report:?}"
    );
    assert!(storage_check(&plain, None).await.ready());
}

#[tokio::test]
async fn storage_check_on_an_unreachable_endpoint_is_not_ready() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut cfg = config(&endpoint, "atlas-unreachable");
    cfg.max_attempts = 1;
    let report = atlas_store::s3::storage_check(&S3Store::new(cfg).unwrap(), None).await;
    assert!(!report.reachable && !report.ready(), "{report:?}");
    assert!(report.problems[0].message.contains(&endpoint), "{report:?}");
    // The store error behind it is kept, so a caller can say what to change.
    assert!(report.problems[0].cause.is_some(), "{report:?}");
}
