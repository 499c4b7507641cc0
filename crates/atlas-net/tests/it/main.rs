//! The network settings against real loopback servers: a TLS server whose certificate
//! comes from a private CA made in the test, a `CONNECT` proxy, and the system resolver.

// Test code may panic on setup failures.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Instant;

use atlas_net::testing::{CA_NAME, SERVER_NAME, TestPki, connect_proxy, ok_server, tls_front};
use atlas_net::{NetFailure, NetOptions, classify, client_builder};

fn client(options: &NetOptions) -> reqwest::Client {
    client_builder(options).unwrap().build().unwrap()
}

#[tokio::test]
async fn a_private_ca_is_named_with_subject_and_issuer_until_it_is_trusted() {
    let pki = TestPki::new();
    let front = tls_front(&pki, ok_server().await).await;
    let url = format!("https://localhost:{}/", front.addr.port());

    let err = client(&NetOptions::default())
        .get(&url)
        .send()
        .await
        .unwrap_err();
    match classify(&err) {
        Some(NetFailure::Tls {
            reason,
            subject,
            issuer,
        }) => {
            assert!(reason.contains("unknown issuer"), "{reason}");
            let subject = subject.unwrap();
            let issuer = issuer.unwrap();
            assert!(subject.contains(SERVER_NAME), "{subject}");
            assert!(issuer.contains(CA_NAME), "{issuer}");
        }
        other => panic!("expected a TLS failure, got {other:?} from {err:?}"),
    }
    assert_eq!(front.handshakes(), 0);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file);
    let trusting = NetOptions {
        ca_files: vec![ca_file],
        ..NetOptions::default()
    };
    let resp = client(&trusting).get(&url).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(front.handshakes(), 1);
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let err = client_builder(&NetOptions {
        ca_files: vec![path.clone()],
        ..NetOptions::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let missing = dir.path().join("missing.pem");
    let err = client_builder(&NetOptions {
        ca_files: vec![missing.clone()],
        ..NetOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn https_goes_through_the_proxy_unless_no_proxy_names_the_host() {
    let pki = TestPki::new();
    let front = tls_front(&pki, ok_server().await).await;
    let (proxy, tunnels) = connect_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file);
    let url = format!("https://localhost:{}/", front.addr.port());
    let mut options = NetOptions {
        ca_files: vec![ca_file],
        https_proxy: Some(format!("http://{proxy}").parse().unwrap()),
        ..NetOptions::default()
    };
    let resp = client(&options).get(&url).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        1,
        "tunnelled through CONNECT"
    );

    options.no_proxy = Some("example.com,localhost".to_owned());
    let resp = client(&options).get(&url).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        1,
        "NO_PROXY host went direct"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_failure_at_once() {
    let started = Instant::now();
    let err = client(&NetOptions::default())
        .get("http://atlas-bucket.nothing-here.invalid:9/")
        .send()
        .await
        .unwrap_err();
    match classify(&err) {
        Some(NetFailure::Dns { host, .. }) => {
            assert_eq!(host, "atlas-bucket.nothing-here.invalid");
        }
        other => panic!("expected a DNS failure, got {other:?} from {err:?}"),
    }
    assert!(started.elapsed().as_secs() < 10);
}

#[tokio::test]
async fn a_refused_connection_is_neither_dns_nor_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&NetOptions::default())
        .get(format!("https://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify(&err), None, "{err:?}");
}
