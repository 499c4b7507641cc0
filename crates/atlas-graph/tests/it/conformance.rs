//! The core's source and target conformance suites against the Graph adapter
//! ([`GraphSource`], [`GraphTarget`]) over HTTP against the simulator: the same checks the
//! memory tenant passes, so service tests on the memory tenant hold for Graph too.

use std::sync::Arc;

use atlas_core::model::{FlagStatus, ItemId};
use atlas_core::ports::{MailSource, MailTarget};
use atlas_core::testing::conformance::{
    self, FixtureAttachment, FixtureMessage, FixtureTargetMessage, SourceFixture, TargetFixture,
};
use atlas_graph::{GraphSource, GraphTarget};
use atlas_sim::{MessageUpdate, NewMessage, SimConfig, SimHandle};

/// The simulator seen through its admin API.
struct Sim {
    handle: SimHandle,
    source: Arc<GraphSource>,
    target: Arc<GraphTarget>,
}

impl Sim {
    async fn start() -> Self {
        let sim = super::start(SimConfig::with_size(17, 3, 20)).await;
        let client = super::client(&sim);
        Self {
            source: Arc::new(GraphSource::new(client.clone())),
            target: Arc::new(GraphTarget::new(client)),
            handle: sim,
        }
    }

    /// The simulator's own id of a message the port reports by its immutable id.
    fn admin_id(&self, address: &str, id: &ItemId) -> String {
        self.handle
            .dump_mailbox(address)
            .expect("dump")
            .messages
            .into_iter()
            .find(|m| m.immutable_id == id.as_str())
            .map_or_else(|| panic!("no message {id} in {address}"), |m| m.id)
    }
}

impl SourceFixture for Sim {
    fn source(&self) -> Arc<dyn MailSource> {
        self.source.clone()
    }

    fn mailbox(&self) -> String {
        super::mailbox_user(&self.handle).upn
    }

    fn messages(&self, address: &str) -> Vec<FixtureMessage> {
        self.handle
            .dump_mailbox(address)
            .expect("dump")
            .messages
            .into_iter()
            .map(|m| FixtureMessage {
                id: ItemId::new(m.immutable_id),
                folder_path: m.folder_path,
                is_read: m.is_read,
                mime: m.mime.unwrap_or_default(),
            })
            .collect()
    }

    fn add_message(&self, address: &str, folder: &str, subject: &str) {
        self.handle
            .add_message(address, folder, NewMessage::text(subject, "conformance"))
            .expect("add_message");
    }

    fn set_read(&self, address: &str, id: &ItemId, read: bool) {
        let update = MessageUpdate {
            is_read: Some(read),
            ..MessageUpdate::default()
        };
        self.handle
            .update_message(address, &self.admin_id(address, id), &update)
            .expect("update_message");
    }

    fn move_message(&self, address: &str, id: &ItemId, folder: &str) {
        self.handle
            .move_message(address, &self.admin_id(address, id), folder)
            .expect("move_message");
    }

    fn delete_message(&self, address: &str, id: &ItemId) {
        self.handle
            .delete_message(address, &self.admin_id(address, id))
            .expect("delete_message");
    }

    fn fail_content(&self, address: &str, id: &ItemId, fail: bool) {
        self.handle
            .set_mime_failure(address, &self.admin_id(address, id), fail)
            .expect("set_mime_failure");
    }

    fn expire_delta_links(&self) {
        self.handle.expire_delta_tokens();
    }
}

impl TargetFixture for Sim {
    fn target(&self) -> Arc<dyn MailTarget> {
        self.target.clone()
    }

    fn mailbox(&self) -> String {
        super::mailbox_user(&self.handle).upn
    }

    fn user_without_mailbox(&self) -> Option<String> {
        self.handle
            .users()
            .into_iter()
            .find(|u| !u.has_mailbox)
            .map(|u| u.upn)
    }

    fn message_count(&self, address: &str) -> usize {
        self.handle
            .dump_mailbox(address)
            .expect("dump")
            .messages
            .len()
    }

    fn messages_in(&self, address: &str, path: &str) -> Vec<FixtureTargetMessage> {
        self.handle
            .dump_mailbox(address)
            .expect("dump")
            .messages
            .into_iter()
            .filter(|m| m.folder_path == path)
            .map(|m| {
                let mut attachments: Vec<FixtureAttachment> = m
                    .attachments
                    .iter()
                    .filter(|a| a.kind == "file")
                    .map(|a| FixtureAttachment {
                        name: a.name.clone(),
                        inline: a.is_inline,
                        sha256: a.sha256.clone(),
                    })
                    .collect();
                attachments.sort();
                let mut item_attachments: Vec<String> = m
                    .attachments
                    .iter()
                    .filter(|a| a.kind == "item")
                    .map(|a| a.name.clone())
                    .collect();
                item_attachments.sort();
                FixtureTargetMessage {
                    subject: m.subject,
                    is_read: m.is_read,
                    is_draft: m.is_draft,
                    flag: match m.flag_status.as_str() {
                        "flagged" => FlagStatus::Flagged,
                        "complete" => FlagStatus::Complete,
                        _ => FlagStatus::NotFlagged,
                    },
                    categories: m.categories,
                    received: Some(m.received.timestamp()),
                    sent: Some(m.sent.timestamp()),
                    attachments,
                    item_attachments,
                }
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_source_passes_the_source_suite() {
    conformance::source::run_all(&Sim::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_target_passes_the_target_suite() {
    conformance::target::run_all(&Sim::start().await).await;
}

/// `GraphTarget` as the configuration port over the simulator, with an app that may write
/// the mailbox configuration.
struct ConfigOverGraph {
    sim: SimHandle,
    target: GraphTarget,
    upn: String,
    mailbox: atlas_core::model::MailboxId,
}

impl conformance::config::ConfigFixture for ConfigOverGraph {
    fn target(&self) -> &dyn atlas_core::ports::ConfigTarget {
        &self.target
    }
    fn mailbox(&self) -> atlas_core::model::MailboxId {
        self.mailbox.clone()
    }
    fn category_names(&self) -> Vec<String> {
        self.sim
            .dump_pim(&self.upn)
            .expect("dump")
            .categories
            .into_iter()
            .map(|c| c.display_name)
            .collect()
    }
    fn rule_names(&self) -> Vec<String> {
        self.sim
            .dump_pim(&self.upn)
            .expect("dump")
            .rules
            .iter()
            .filter_map(|r| r["displayName"].as_str().map(str::to_owned))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_target_passes_the_configuration_suite() {
    let mut cfg = SimConfig::with_size(17, 2, 2);
    cfg.granted_roles = [
        atlas_sim::roles::USER_READ_ALL,
        atlas_sim::roles::MAIL_READ,
        atlas_sim::roles::MAILBOX_SETTINGS_READ_WRITE,
    ]
    .iter()
    .map(|r| (*r).to_owned())
    .collect();
    let sim = crate::start(cfg).await;
    let user = crate::mailbox_user(&sim);
    let fixture = ConfigOverGraph {
        target: GraphTarget::new(crate::client(&sim)),
        upn: user.upn.clone(),
        mailbox: crate::mailbox(&user),
        sim,
    };
    conformance::config::run_all(&fixture).await;
}
