//! Integration tests: the Graph client over HTTP against the `atlas-sim` simulator.

mod auth;
mod conformance;
mod export_readback;
mod fidelity;
mod folder_tree;
mod import_target;
mod kinds;
mod read;
mod resilience;
mod services;
mod tls;
mod write;

use std::time::Duration;

use atlas_core::model::MailboxId;
use atlas_graph::{Credential, GraphClient, GraphConfig, RetryPolicy};
use atlas_sim::{SimConfig, SimHandle, Simulator, UserInfo};

/// A small tenant: a few mailboxes, enough messages for several delta pages.
pub fn small_tenant() -> SimConfig {
    SimConfig::with_size(7, 4, 25)
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).await.expect("simulator starts")
}

/// Client config for `sim` with the given credential and short retry steps.
pub fn config(sim: &SimHandle, credential: Credential) -> GraphConfig {
    let mut cfg = GraphConfig::new(sim.tenant_id(), sim.client_id(), credential)
        .with_endpoints(sim.base_url(), sim.base_url());
    cfg.retry = RetryPolicy {
        max_attempts: 10,
        max_total: Duration::from_secs(60),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    cfg.request_timeout = Duration::from_secs(20);
    cfg
}

pub fn client(sim: &SimHandle) -> GraphClient {
    GraphClient::new(config(sim, Credential::Secret(sim.client_secret().into()))).expect("client")
}

/// The first licensed user with a mailbox.
pub fn mailbox_user(sim: &SimHandle) -> UserInfo {
    sim.users()
        .into_iter()
        .find(|u| u.kind == "user" && u.has_mailbox)
        .expect("tenant has a licensed user")
}

/// The user's mailbox as the core names it; Graph calls address it by the object id.
pub fn mailbox(user: &UserInfo) -> MailboxId {
    MailboxId::new(&user.upn).with_graph_user_id(user.id.clone())
}
