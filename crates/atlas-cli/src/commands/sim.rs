//! `atlas sim serve`: the Microsoft Graph simulator as a standalone server, so Atlas (or
//! any Graph client) can be tried without a tenant.

use std::time::Duration;

use anyhow::Context as _;
use atlas_sim::{SimConfig, Simulator, banner};
use serde::Serialize;

use crate::cli::SimServeArgs;
use crate::exit::Exit;
use crate::output::Output;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Ready {
    base_url: String,
    graph_endpoint: String,
    authority_host: String,
    tenant_id: String,
    tenant_domain: String,
    client_id: String,
    /// The simulator's own test secret; printed on purpose so a client can connect.
    client_secret: String,
}

fn sim_config(args: &SimServeArgs) -> SimConfig {
    let mut config = SimConfig::default();
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(users) = args.users {
        config.users = users;
    }
    if let Some(shared) = args.shared_mailboxes {
        config.shared_mailboxes = shared;
    }
    if let Some(messages) = args.messages_per_user {
        config.messages_per_user = messages;
    }
    if let Some(ms) = args.latency_ms {
        config.faults.latency = Duration::from_millis(ms);
    }
    if let Some(rate) = args.error_rate {
        config.faults.error_rate = rate;
    }
    if let Some(secs) = args.retry_after {
        config.faults.retry_after_secs = secs;
    }
    if let Some(rate) = args.hang_rate {
        config.faults.hang_rate = rate;
    }
    if let Some(ms) = args.hang_ms {
        config.faults.hang_delay = Some(Duration::from_millis(ms));
    }
    config
}

/// Start the simulator, print how to connect, serve until Ctrl+C or an admin shutdown.
pub async fn serve(args: &SimServeArgs, output: Output) -> anyhow::Result<Exit> {
    let handle = Simulator::start_on(sim_config(args), args.port)
        .await
        .context("starting the simulator")?;
    let ready = Ready {
        base_url: handle.base_url(),
        graph_endpoint: handle.base_url(),
        authority_host: handle.base_url(),
        tenant_id: handle.tenant_id(),
        tenant_domain: handle.tenant_domain(),
        client_id: handle.client_id(),
        client_secret: handle.client_secret(),
    };
    output.result(&ready, || {
        format!("{}\nPress Ctrl+C to stop.", banner(&handle))
    })?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl+C")?;
            tracing::info!("stopping the simulator");
            handle.shutdown();
        }
        () = handle.wait() => {}
    }
    handle.wait().await;
    Ok(Exit::Success)
}
