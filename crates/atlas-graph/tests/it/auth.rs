//! Sign-in: secret, certificate, explained failures, token refresh on 401.

use atlas_graph::{
    AssertionAlgorithm, AuthErrorKind, Credential, GraphClient, GraphError, SecretString,
};
use base64::Engine;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::{client, config, mailbox, mailbox_user, small_tenant, start};

fn auth_kind(err: &GraphError) -> AuthErrorKind {
    match err {
        GraphError::Auth(a) => a.kind,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[tokio::test]
async fn secret_sign_in_works_and_mistakes_are_explained_without_the_secret() {
    let sim = start(small_tenant()).await;
    client(&sim)
        .check_sign_in()
        .await
        .expect("sign-in with the right secret");

    let wrong = "wrong-secret-value-123";
    let c = GraphClient::new(config(&sim, Credential::Secret(wrong.into()))).expect("client");
    let err = c.check_sign_in().await.expect_err("wrong secret fails");
    assert_eq!(auth_kind(&err), AuthErrorKind::InvalidSecret);
    let text = err.to_string();
    assert!(text.contains("not its Secret ID"), "{text}");
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );

    let mut cfg = config(&sim, Credential::Secret(sim.client_secret().into()));
    cfg.tenant_id = "no-such-tenant.onmicrosoft.com".into();
    let err = GraphClient::new(cfg)
        .expect("client")
        .check_sign_in()
        .await
        .expect_err("tenant");
    assert_eq!(auth_kind(&err), AuthErrorKind::WrongTenant);

    let mut cfg = config(&sim, Credential::Secret(sim.client_secret().into()));
    cfg.client_id = "00000000-0000-0000-0000-000000000001".into();
    let err = GraphClient::new(cfg)
        .expect("client")
        .check_sign_in()
        .await
        .expect_err("client");
    assert_eq!(auth_kind(&err), AuthErrorKind::WrongClientId);
}

/// The simulator is a non-Graph host that refuses scopes Entra ID refuses: signing in
/// works only because the client asks for Graph's resource, not the simulator's address.
#[tokio::test]
async fn sign_in_asks_for_graphs_resource_and_a_wrong_scope_is_explained() {
    let sim = start(small_tenant()).await;
    let cfg = config(&sim, Credential::Secret(sim.client_secret().into()));
    assert!(cfg.scope.is_none());
    assert_eq!(cfg.token_scope(), "https://graph.microsoft.com/.default");
    GraphClient::new(cfg)
        .expect("client")
        .check_sign_in()
        .await
        .expect("a token for Graph from a simulator's endpoint");

    for (scope, code) in [
        (format!("{}/.default", sim.base_url()), 500_011),
        (
            "https://graph.microsoft.com/Mail.Read".to_owned(),
            1_002_012,
        ),
    ] {
        let mut cfg = config(&sim, Credential::Secret(sim.client_secret().into()));
        cfg.scope = Some(scope.clone());
        let err = GraphClient::new(cfg)
            .expect("client")
            .check_sign_in()
            .await
            .expect_err("wrong scope");
        assert_eq!(auth_kind(&err), AuthErrorKind::InvalidScope, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("AADSTS{code}"))
                && text.contains(&scope)
                && text.contains("https://graph.microsoft.com/.default"),
            "{text}"
        );
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

#[tokio::test]
async fn certificate_sign_in_with_ps256_and_rs256() {
    let sim = start(small_tenant()).await;
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    // The simulator identifies the certificate by the thumbprint of its DER bytes.
    let cert_der = b"atlas-graph test certificate DER".to_vec();
    sim.register_certificate(&cert_der, key.to_public_key());
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();

    for algorithm in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
        let cred = Credential::Certificate {
            cert_pem: pem("CERTIFICATE", &cert_der),
            key_pem: SecretString::new(key_pem.clone()),
            algorithm,
        };
        let c = GraphClient::new(config(&sim, cred)).expect("client");
        let user = mailbox_user(&sim);
        c.list_top_folders(&mailbox(&user), false)
            .await
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
    }

    // A certificate the app registration does not know.
    let other = pem("CERTIFICATE", b"some other certificate");
    let c =
        GraphClient::new(config(&sim, Credential::certificate(other, key_pem))).expect("client");
    let err = c.check_sign_in().await.expect_err("unknown certificate");
    assert_eq!(auth_kind(&err), AuthErrorKind::BadCertificate);
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_request_succeeds() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    c.list_top_folders(&mailbox(&user), false)
        .await
        .expect("first call");
    assert_eq!(c.stats().token_refreshes, 1);
    sim.expire_tokens();
    c.list_top_folders(&mailbox(&user), false)
        .await
        .expect("call after expiry");
    assert_eq!(c.stats().token_refreshes, 2);
}
