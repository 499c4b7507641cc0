//! Throttling and transient failures.

use std::time::Duration;

use atlas_core::model::FolderId;
use atlas_graph::{Credential, GraphClient, GraphError, NewMessage};
use atlas_sim::FaultConfig;

use crate::{client, mailbox, mailbox_user, small_tenant, start};

#[tokio::test]
async fn retry_after_on_429_is_honoured_and_every_request_succeeds() {
    let mut cfg = small_tenant();
    cfg.limits.requests_per_window = 3;
    cfg.limits.request_window = Duration::from_secs(2);
    let sim = start(cfg).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    for _ in 0..6 {
        c.get_folder(&mailbox(&user), &FolderId::from("inbox"))
            .await
            .expect("throttled request eventually succeeds");
    }
    let stats = c.stats();
    assert!(stats.throttled >= 1, "{stats:?}");
    assert!(
        stats.throttle_waits >= 1,
        "the mailbox was paused: {stats:?}"
    );
    let sim_folders = sim.counters().kind("folders");
    assert_eq!(sim_folders.requests - sim_folders.throttled, 6);
    // Retries with the test's 20 ms backoff instead of Retry-After would pile up dozens of
    // 429s here (the simulator counts throttled requests against the window, as Exchange does).
    assert!(sim_folders.throttled <= 8, "{sim_folders:?}");
}

/// Four workers share one client; its per-mailbox budget, set to the service's limit,
/// keeps all of them under it instead of each discovering it through 429s.
#[tokio::test]
async fn concurrent_workers_on_one_mailbox_stay_inside_the_shared_budget() {
    let mut cfg = small_tenant();
    cfg.limits.requests_per_window = 4;
    cfg.limits.request_window = Duration::from_secs(2);
    let sim = start(cfg).await;
    let mut client_cfg = crate::config(&sim, Credential::Secret(sim.client_secret().into()));
    client_cfg.limiter.requests_per_window = 4;
    client_cfg.limiter.request_window = Duration::from_secs(2);
    let c = GraphClient::new(client_cfg).expect("client");
    let user = mailbox_user(&sim);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c: GraphClient = c.clone();
        let mbx = mailbox(&user);
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                c.get_folder(&mbx, &FolderId::from("inbox"))
                    .await
                    .expect("request");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let sim_folders = sim.counters().kind("folders");
    assert_eq!(sim_folders.requests - sim_folders.throttled, 12);
    // Arrival jitter on loopback may let one request through early; never a storm.
    assert!(sim_folders.throttled <= 2, "{sim_folders:?}");
    assert!(c.stats().throttle_waits >= 1);
}

#[tokio::test]
async fn storms_of_503_429_and_504_are_retried_for_reads() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    sim.set_faults(FaultConfig {
        error_rate: 0.5,
        retry_after_secs: 1,
        ..FaultConfig::default()
    });
    for _ in 0..4 {
        c.list_top_folders(&mailbox(&user), false)
            .await
            .expect("retried to success");
    }
    sim.set_faults(FaultConfig::default());
    assert!(c.stats().retries >= 1, "{:?}", c.stats());
}

#[tokio::test]
async fn concurrent_first_calls_share_one_token_request() {
    let sim = start(small_tenant()).await;
    let c = client(&sim);
    let user = mailbox_user(&sim);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        let mbx = mailbox(&user);
        tasks.push(tokio::spawn(async move {
            c.get_folder(&mbx, &FolderId::from("inbox"))
                .await
                .expect("request");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(c.stats().token_refreshes, 1);
    assert_eq!(sim.counters().kind("token").requests, 1);
}

#[tokio::test]
async fn a_post_without_answer_is_outcome_unknown_and_a_get_times_out() {
    let sim = start(small_tenant()).await;
    let mut cfg = crate::config(&sim, Credential::Secret(sim.client_secret().into()));
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry.max_attempts = 2;
    let c = GraphClient::new(cfg).expect("client");
    c.check_sign_in().await.expect("token before the hang");
    let user = mailbox_user(&sim);
    sim.set_faults(FaultConfig {
        hang_rate: 1.0,
        hang_delay: Some(Duration::from_secs(2)),
        ..FaultConfig::default()
    });
    let body = serde_json::json!({"subject": "x", "body": {"contentType": "text", "content": "y"}});
    let err = c
        .create_message(&mailbox(&user), None, &NewMessage::Json(body))
        .await
        .expect_err("no answer");
    assert!(matches!(err, GraphError::OutcomeUnknown { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = c
        .get_folder(&mailbox(&user), &FolderId::from("inbox"))
        .await
        .expect_err("no answer");
    assert!(
        matches!(err, GraphError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    sim.set_faults(FaultConfig::default());
}

/// Regression: an endpoint whose host name does not resolve was retried as if the network
/// were down (eight attempts of backoff, then "could not connect"). It is named at once, by
/// host, and not retried — for Graph and for the token endpoint alike.
#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_named_at_once_and_not_retried() {
    let sim = start(small_tenant()).await;
    let unresolvable = "http://graph.nothing-here.invalid";

    // Graph itself (sign-in against the simulator works).
    let cfg = crate::config(&sim, Credential::Secret(sim.client_secret().into()))
        .with_endpoints(unresolvable, sim.base_url());
    let c = GraphClient::new(cfg).expect("client");
    let err = c
        .list_users(&atlas_graph::ListUsersOptions::default())
        .await
        .expect_err("the host does not resolve");
    match &err {
        GraphError::Dns { host, .. } => assert_eq!(host, "graph.nothing-here.invalid"),
        other => panic!("expected a DNS error, got {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("does not resolve"), "{err}");
    assert_eq!(c.stats().retries, 0, "retried: {err}");

    // The token endpoint.
    let cfg = crate::config(&sim, Credential::Secret(sim.client_secret().into()))
        .with_endpoints(sim.base_url(), unresolvable);
    let c = GraphClient::new(cfg).expect("client");
    let err = c
        .check_sign_in()
        .await
        .expect_err("the host does not resolve");
    assert!(
        err.to_string()
            .contains("graph.nothing-here.invalid does not resolve"),
        "{err}"
    );
    assert_eq!(c.stats().retries, 0, "retried: {err}");
}
