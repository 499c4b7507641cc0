use std::time::Duration;

use crate::common::{self, error_code};
use atlas_sim::{FaultConfig, SimConfig};

#[tokio::test]
async fn mailbox_concurrency_limit_answers_429_with_retry_after() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    ctx.sim.set_faults(FaultConfig {
        latency: Duration::from_millis(400),
        ..FaultConfig::default()
    });
    let futs: Vec<_> = (0..8)
        .map(|_| {
            let (http, token, url) = (
                ctx.http.clone(),
                ctx.token.clone(),
                ctx.url(&format!("/users/{u}/mailFolders/inbox")),
            );
            async move { http.get(url).bearer_auth(token).send().await.expect("GET") }
        })
        .collect();
    let mut throttled = 0;
    for r in futures_join(futs).await {
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let v: serde_json::Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], "ApplicationThrottled");
            assert_eq!(
                v["error"]["message"],
                "Application is over its MailboxConcurrency limit."
            );
            throttled += 1;
        } else {
            assert_eq!(r.status(), 200);
        }
    }
    assert!(
        throttled >= 1,
        "8 concurrent requests to one mailbox must exceed the limit of 4"
    );
    assert!(ctx.sim.counters().kind("folders").throttled >= 1);
}

async fn futures_join<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

#[tokio::test]
async fn request_window_limit_and_random_faults() {
    let mut cfg = SimConfig::with_size(1, 3, 5);
    cfg.limits.requests_per_window = 3;
    let ctx = common::start(cfg).await;
    let u = ctx.mailbox_user();
    for _ in 0..3 {
        assert_eq!(
            ctx.get(&format!("/users/{u}/mailFolders/inbox"))
                .await
                .status(),
            200
        );
    }
    let r = ctx.get(&format!("/users/{u}/mailFolders/inbox")).await;
    let ra: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!(ra >= 1);
    let (s, code, v) = error_code(r).await;
    assert_eq!((s, code.as_str()), (429, "ApplicationThrottled"));
    assert_eq!(
        v["error"]["message"],
        "Application is over its Request limit."
    );
    // Other mailboxes are unaffected.
    let other = ctx
        .sim
        .users()
        .into_iter()
        .filter(|x| x.has_mailbox)
        .nth(1)
        .expect("second mailbox")
        .id;
    assert_eq!(
        ctx.get(&format!("/users/{other}/mailFolders/inbox"))
            .await
            .status(),
        200
    );

    ctx.sim.set_faults(FaultConfig {
        error_rate: 1.0,
        retry_after_secs: 2,
        ..FaultConfig::default()
    });
    for _ in 0..6 {
        let r = ctx.get("/users").await;
        let s = r.status().as_u16();
        assert!([429, 503, 504].contains(&s), "status {s}");
        if s != 504 {
            assert_eq!(
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                Some("2")
            );
        }
    }
    ctx.sim.set_faults(FaultConfig {
        hang_rate: 1.0,
        hang_delay: Some(Duration::from_millis(50)),
        ..FaultConfig::default()
    });
    assert_eq!(
        ctx.get("/users").await.status(),
        200,
        "a delayed hang still answers"
    );
    ctx.sim.set_faults(FaultConfig::default());
    let c = ctx.sim.counters();
    assert!(c.kind("users").requests >= 7 && c.kind("token").requests >= 1);
    assert!(c.kind("users").bytes_out > 0);
}
