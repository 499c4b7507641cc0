//! The Graph client behind TLS with a certificate from a private CA (a TLS-inspecting
//! proxy, an API gateway): a rejected certificate is named at once, and trusting the CA
//! file makes the same endpoints work.

use atlas_graph::{Credential, GraphClient, GraphError, ListUsersOptions};
use atlas_net::testing::{CA_NAME, SERVER_NAME, TestPki, tls_front};

use super::{config, small_tenant, start};

/// Regression: a private CA made Atlas retry and then report "connection refused or DNS
/// failure".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_named_at_once_and_works_once_trusted() {
    let sim = start(small_tenant()).await;
    let pki = TestPki::new();
    let front = tls_front(&pki, sim.addr()).await;
    let https = format!("https://localhost:{}", front.addr.port());
    let mut cfg = config(&sim, Credential::Secret(sim.client_secret().into()))
        .with_endpoints(https.as_str(), https.as_str());

    let client = GraphClient::new(cfg.clone()).expect("client");
    let err = client
        .list_users(&ListUsersOptions::default())
        .await
        .expect_err("the certificate is not trusted");
    match &err {
        GraphError::Tls {
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
    assert_eq!(front.connections(), 1, "not retried: {err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file);
    cfg.net.ca_files = vec![ca_file];
    let users = GraphClient::new(cfg)
        .expect("client")
        .list_users(&ListUsersOptions::default())
        .await
        .expect("trusted now");
    assert!(!users.is_empty());
    assert!(front.handshakes() >= 1);
}
