use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::SeedableRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{self, error_code};
use atlas_sim::{SimConfig, roles};

async fn token_form(ctx: &common::Ctx, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = ctx
        .http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", ctx.sim.base_url()))
        .form(form)
        .send()
        .await
        .expect("token");
    let s = r.status().as_u16();
    (s, r.json().await.expect("json"))
}

fn assert_aad_error(v: &Value, error: &str, code: u64) {
    assert_eq!(v["error"], error, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .expect("description")
            .starts_with(&format!("AADSTS{code}:")),
        "{v}"
    );
    assert_eq!(v["error_codes"][0], code);
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k} in {v}");
    }
}

#[tokio::test]
async fn secret_token_has_documented_shape_and_tolerates_msal_fields() {
    let ctx = common::small().await;
    let (cid, secret) = (ctx.sim.client_id(), ctx.sim.client_secret());
    let (s, v) = token_form(
        &ctx,
        &ctx.sim.tenant_domain(),
        &[
            ("client_id", &cid),
            ("client_secret", &secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
            ("x-client-SKU", "MSAL.Rust"),
            ("x-ms-lib-capability", "retry-after, h429"),
            ("client-request-id", "3a1c8e3e-0000-0000-0000-000000000000"),
            (
                "claims",
                r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#,
            ),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().is_some());
    assert_eq!(v["ext_expires_in"], v["expires_in"]);
    assert!(v.get("refresh_token").is_none());
}

#[tokio::test]
async fn token_errors_use_aadsts_codes() {
    let ctx = common::small().await;
    let cid = ctx.sim.client_id();
    let tid = ctx.sim.tenant_id();
    let scope = "https://graph.microsoft.com/.default";
    let (s, v) = token_form(
        &ctx,
        &tid,
        &[
            ("client_id", &cid),
            ("client_secret", "wrong"),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_aad_error(&v, "invalid_client", 7_000_215);

    let (s, v) = token_form(
        &ctx,
        &tid,
        &[
            ("client_id", "00000000-1111-2222-3333-444444444444"),
            ("client_secret", "x"),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_aad_error(&v, "unauthorized_client", 700_016);

    let (s, v) = token_form(
        &ctx,
        "not-a-tenant.example",
        &[
            ("client_id", &cid),
            ("client_secret", "x"),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error_codes"][0], 90002);

    let (s, v) = token_form(
        &ctx,
        &tid,
        &[
            ("client_id", &cid),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(s, 401);
    assert_aad_error(&v, "invalid_client", 7_000_218);

    let (s, v) = token_form(
        &ctx,
        &tid,
        &[
            ("client_id", &cid),
            ("client_secret", "x"),
            ("scope", "Mail.Read"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_aad_error(&v, "invalid_scope", 1_002_012);
}

/// Entra ID issues app-only tokens only for a resource's `/.default` scope, and Graph's
/// resource is Graph's, wherever the Graph requests are sent (graph-api.md §1.1, §1.6):
/// a simulator, a gateway or a proxy in front of Graph is not a resource of the tenant.
#[tokio::test]
async fn only_graph_resources_get_tokens_whatever_host_serves_graph() {
    let ctx = common::small().await;
    let (cid, secret, tid) = (
        ctx.sim.client_id(),
        ctx.sim.client_secret(),
        ctx.sim.tenant_id(),
    );
    let ask = |scope: String| {
        let (cid, secret, tid) = (cid.clone(), secret.clone(), tid.clone());
        let ctx = &ctx;
        async move {
            token_form(
                ctx,
                &tid,
                &[
                    ("client_id", &cid),
                    ("client_secret", &secret),
                    ("scope", &scope),
                    ("grant_type", "client_credentials"),
                ],
            )
            .await
        }
    };
    for ok in [
        "https://graph.microsoft.com/.default",
        "https://GRAPH.microsoft.com//.default",
        "00000003-0000-0000-c000-000000000000/.default",
        "https://graph.microsoft.us/.default",
        "https://dod-graph.microsoft.us/.default",
        "https://microsoftgraph.chinacloudapi.cn/.default",
    ] {
        let (s, v) = ask(ok.to_owned()).await;
        assert_eq!(s, 200, "{ok}: {v}");
    }
    // The simulator's own URL is where Graph is served, not a resource.
    let (s, v) = ask(format!("{}/.default", ctx.sim.base_url())).await;
    assert_eq!(s, 400, "{v}");
    assert_aad_error(&v, "invalid_resource", 500_011);
    let (s, v) = ask("https://graph.example.com/.default".to_owned()).await;
    assert_eq!(s, 400);
    assert_aad_error(&v, "invalid_resource", 500_011);
    let (s, v) = ask("https://graph.microsoft.com/Mail.Read".to_owned()).await;
    assert_eq!(s, 400);
    assert_aad_error(&v, "invalid_scope", 1_002_012);
    let (s, v) = ask(
        "https://graph.microsoft.com/.default https://outlook.office365.com/.default".to_owned(),
    )
    .await;
    assert_eq!(s, 400);
    assert_aad_error(&v, "invalid_scope", 700_022);
}

#[tokio::test]
async fn msal_discovery_documents_point_at_the_simulator() {
    let ctx = common::small().await;
    let base = ctx.sim.base_url();
    let v: Value = ctx.http.get(format!("{base}/common/discovery/instance?api-version=1.1&authorization_endpoint={base}/common/oauth2/v2.0/authorize")).send().await.expect("get").json().await.expect("json");
    assert!(
        v["tenant_discovery_endpoint"]
            .as_str()
            .expect("endpoint")
            .starts_with(&base)
    );
    assert!(v["metadata"].as_array().is_some_and(|m| !m.is_empty()));
    let r = ctx
        .http
        .get(format!(
            "{base}/{}/v2.0/.well-known/openid-configuration",
            ctx.sim.tenant_id()
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["token_endpoint"],
        format!("{base}/{}/oauth2/v2.0/token", ctx.sim.tenant_id())
    );
    let r = ctx
        .http
        .get(format!(
            "{base}/nope.example/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"], "invalid_tenant");
}

#[tokio::test]
async fn graph_rejects_missing_malformed_and_expired_tokens() {
    let ctx = common::small().await;
    let r = ctx.http.get(ctx.url("/users")).send().await.expect("get");
    assert!(r.headers().get("www-authenticate").is_some());
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert!(v["error"]["innerError"]["request-id"].is_string());

    let r = ctx
        .http
        .get(ctx.url("/users"))
        .bearer_auth("garbage")
        .send()
        .await
        .expect("get");
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));

    assert_eq!(ctx.get("/users").await.status(), 200);
    ctx.sim.expire_tokens();
    let (s, code, v) = error_code(ctx.get("/users").await).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert_eq!(
        v["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    let fresh = common::fetch_token(&ctx.http, &ctx.sim).await;
    let r = ctx
        .http
        .get(ctx.url("/users"))
        .bearer_auth(&fresh)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn missing_permissions_give_403() {
    let mut cfg = SimConfig::with_size(3, 3, 5);
    cfg.granted_roles = [roles::USER_READ_ALL, roles::MAIL_READ]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let ctx = common::start(cfg).await;
    let u = ctx.mailbox_user();
    assert_eq!(
        ctx.get(&format!("/users/{u}/mailFolders")).await.status(),
        200
    );
    let (s, code, _) = error_code(
        ctx.post_json(
            &format!("/users/{u}/mailFolders"),
            &json!({"displayName": "X"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
    let (s, _, _) = error_code(ctx.get("/reports/getMailboxUsageDetail(period='D7')").await).await;
    assert_eq!(s, 403);
}

fn jwt(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = sign(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn certificate_assertions_rs256_and_ps256() {
    let ctx = common::small().await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("key");
    // The simulator only hashes the DER for the thumbprint, so any stable bytes stand in for it.
    let der = b"test certificate DER bytes".to_vec();
    ctx.sim.register_certificate(&der, key.to_public_key());
    let x5t = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
    let x5t256 = URL_SAFE_NO_PAD.encode(Sha256::digest(&der));
    let tid = ctx.sim.tenant_id();
    let cid = ctx.sim.client_id();
    let aud = format!("{}/{tid}/oauth2/v2.0/token", ctx.sim.base_url());
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, iss: &str, exp: i64| json!({"aud": aud, "iss": iss, "sub": iss, "jti": "1", "nbf": now - 10, "iat": now - 10, "exp": exp});
    let rs = |c: &Value| {
        let k = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
        jwt(&json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}), c, |m| {
            k.sign(m).to_vec()
        })
    };
    let ps = |c: &Value| {
        let k = rsa::pss::BlindedSigningKey::<Sha256>::new(key.clone());
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        jwt(
            &json!({"alg": "PS256", "typ": "JWT", "x5t#S256": x5t256}),
            c,
            |m| k.sign_with_rng(&mut r, m).to_vec(),
        )
    };
    let form = |assertion: &str| {
        vec![
            ("client_id".to_owned(), cid.clone()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), assertion.to_owned()),
            (
                "scope".to_owned(),
                "https://graph.microsoft.com/.default".to_owned(),
            ),
            ("grant_type".to_owned(), "client_credentials".to_owned()),
        ]
    };
    let post = |f: Vec<(String, String)>| {
        let http = ctx.http.clone();
        let url = format!("{}/{tid}/oauth2/v2.0/token", ctx.sim.base_url());
        async move {
            let r = http.post(url).form(&f).send().await.expect("post");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }
    };
    let good = claims(&aud, &cid, now + 600);
    assert_eq!(post(form(&rs(&good))).await.0, 200);
    assert_eq!(post(form(&ps(&good))).await.0, 200);
    let (s, v) = post(form(&rs(&claims(&aud, &cid, now - 3600)))).await;
    assert_eq!(s, 401);
    assert_aad_error(&v, "invalid_client", 700_024);
    let (_, v) = post(form(&rs(&claims(
        "https://elsewhere/token",
        &cid,
        now + 600,
    ))))
    .await;
    assert_aad_error(&v, "invalid_client", 700_023);
    let (_, v) = post(form(&rs(&claims(&aud, "someone-else", now + 600)))).await;
    assert_aad_error(&v, "invalid_client", 700_021);
    let mut forged = rs(&good);
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let (_, v) = post(form(&forged)).await;
    assert_aad_error(&v, "invalid_client", 700_027);
}
