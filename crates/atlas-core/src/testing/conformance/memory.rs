//! [`MemoryTenant`] as its own fixture: the first mailbox of the tenant is the one the
//! suites work on.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{
    FixtureAttachment, FixtureMessage, FixtureTargetMessage, SourceFixture, TargetFixture,
};
use crate::model::{ContentKind, ItemId};
use crate::ports::{MailSource, MailTarget, MailboxKind, RestoreAttachment};
use crate::testing::{MemoryTenant, MessageSpec};

fn first_mailbox(tenant: &MemoryTenant) -> String {
    tenant
        .addresses()
        .into_iter()
        .next()
        .expect("the memory tenant has a mailbox (MemoryTenant::generate makes some)")
}

fn must(result: Result<(), String>) {
    if let Err(e) = result {
        panic!("memory tenant fixture: {e}");
    }
}

impl SourceFixture for MemoryTenant {
    fn source(&self) -> Arc<dyn MailSource> {
        Arc::new(self.clone())
    }

    fn mailbox(&self) -> String {
        first_mailbox(self)
    }

    fn messages(&self, address: &str) -> Vec<FixtureMessage> {
        let dump = self.dump(address).unwrap_or_else(|e| panic!("{e}"));
        dump.items
            .iter()
            .filter_map(|i| {
                Some(FixtureMessage {
                    id: i.id.clone(),
                    folder_path: i.folder_path.clone(),
                    is_read: i.mail()?.is_read,
                    mime: i.content(ContentKind::Mime)?.to_vec(),
                })
            })
            .collect()
    }

    fn add_message(&self, address: &str, folder: &str, subject: &str) {
        if let Err(e) =
            MemoryTenant::add_message(self, address, folder, MessageSpec::text(subject, "x"))
        {
            panic!("memory tenant fixture: {e}");
        }
    }

    fn set_read(&self, address: &str, id: &ItemId, read: bool) {
        must(self.update_message(address, id, |m| m.is_read = read));
    }

    fn move_message(&self, address: &str, id: &ItemId, folder: &str) {
        must(self.move_item(address, id, folder));
    }

    fn delete_message(&self, address: &str, id: &ItemId) {
        must(self.delete_item(address, id));
    }

    fn fail_content(&self, address: &str, id: &ItemId, fail: bool) {
        must(self.set_content_failure(address, id, fail));
    }

    fn expire_delta_links(&self) {
        MemoryTenant::expire_delta_links(self);
    }
}

impl TargetFixture for MemoryTenant {
    fn target(&self) -> Arc<dyn MailTarget> {
        Arc::new(self.clone())
    }

    fn mailbox(&self) -> String {
        first_mailbox(self)
    }

    fn user_without_mailbox(&self) -> Option<String> {
        self.users()
            .into_iter()
            .find(|(_, k)| *k == MailboxKind::NoMailbox)
            .map(|(a, _)| a)
    }

    fn message_count(&self, address: &str) -> usize {
        self.dump(address).map_or(0, |d| d.items.len())
    }

    fn messages_in(&self, address: &str, path: &str) -> Vec<FixtureTargetMessage> {
        let dump = self.dump(address).unwrap_or_else(|e| panic!("{e}"));
        dump.in_folder(path)
            .filter_map(|i| {
                let mail = i.mail()?;
                let mut attachments: Vec<FixtureAttachment> = i
                    .restored
                    .iter()
                    .flat_map(|r| r.attachments.iter())
                    .filter_map(|a| match a {
                        RestoreAttachment::File {
                            name,
                            bytes,
                            is_inline,
                            ..
                        } => Some(FixtureAttachment {
                            name: name.clone(),
                            inline: *is_inline,
                            sha256: hex::encode(Sha256::digest(bytes)),
                        }),
                        RestoreAttachment::Item { .. } => None,
                    })
                    .collect();
                attachments.sort();
                let mut item_attachments: Vec<String> = i
                    .restored
                    .iter()
                    .flat_map(|r| r.attachments.iter())
                    .filter_map(|a| match a {
                        RestoreAttachment::Item { name, .. } => Some(name.clone()),
                        RestoreAttachment::File { .. } => None,
                    })
                    .collect();
                item_attachments.sort();
                Some(FixtureTargetMessage {
                    subject: mail.subject.clone().unwrap_or_default(),
                    is_read: mail.is_read,
                    is_draft: mail.is_draft,
                    flag: mail.flag,
                    categories: mail.categories.clone(),
                    received: mail.received.map(|t| t.timestamp()),
                    sent: mail.sent.map(|t| t.timestamp()),
                    attachments,
                    item_attachments,
                })
            })
            .collect()
    }
}
