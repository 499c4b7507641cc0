//! The source and target conformance suites against the memory tenant, and proof that the
//! suites can fail: deliberately broken ports, each wrapping a sound memory tenant and
//! breaking one rule of the contract, are rejected.

use atlas_core::testing::{MemoryTenant, conformance};

#[tokio::test]
async fn the_memory_tenant_passes_the_source_suite() {
    conformance::source::run_all(&MemoryTenant::generate(3, 2, 15)).await;
}

#[tokio::test]
async fn the_memory_tenant_passes_the_every_kind_check() {
    use atlas_core::model::{ContentKind, ItemKind};
    let tenant = MemoryTenant::generate(5, 1, 4);
    let address = tenant.addresses().remove(0);
    tenant
        .add_folder(&address, "", "Calendar", ItemKind::Calendar)
        .unwrap();
    tenant
        .add_folder(&address, "", "Contacts", ItemKind::Contact)
        .unwrap();
    for n in 0..25u8 {
        let (folder, kind) = if n % 2 == 0 {
            ("Calendar", ItemKind::Calendar)
        } else {
            ("Contacts", ItemKind::Contact)
        };
        tenant
            .add_item(
                &address,
                folder,
                kind,
                "item",
                vec![
                    (ContentKind::Export, bytes::Bytes::from(vec![n; 9])),
                    (ContentKind::Json, bytes::Bytes::from("{}")),
                ],
            )
            .unwrap();
    }
    conformance::source::every_kind(&tenant, &address).await;
}

#[tokio::test]
async fn the_memory_tenant_passes_the_target_suite() {
    conformance::target::run_all(&MemoryTenant::generate(4, 2, 3)).await;
}

mod the_suites_catch {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use atlas_core::model::{ContentKind, FolderId, ItemId, MailboxId};
    use atlas_core::ports::{
        ContentStream, DeltaCursor, DeltaPage, FolderOptions, MailSource, MailTarget,
        RestoreAttachment, RestoreMark, RestoreMessage, SourceError, SourceFolder, SourceItem,
        SourceMailbox, TargetAttachment, TargetError, TargetFolder, TargetItem,
    };
    use atlas_core::testing::MemoryTenant;
    use atlas_core::testing::conformance::{
        self, FixtureMessage, FixtureTargetMessage, SourceFixture, TargetFixture,
    };
    use bytes::Bytes;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flaw {
        /// Delta forgets deletions and moves out.
        ForgetsRemovals,
        /// A link works once only.
        ConsumesLinks,
        /// Content loses its last chunk.
        TruncatesContent,
        /// Folders come children first.
        ChildrenFirst,
        /// A created message does not carry its mark.
        DropsTheMark,
        /// The completion mark set at creation is lost.
        IgnoresComplete,
        /// `ensure_folder` creates a second folder of the same name.
        DuplicatesFolders,
    }

    #[derive(Debug, Clone)]
    struct Broken {
        inner: MemoryTenant,
        flaw: Flaw,
        used: Arc<Mutex<HashSet<String>>>,
    }

    struct Truncated(Box<dyn ContentStream>, Option<Bytes>);

    #[async_trait]
    impl ContentStream for Truncated {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
            // Hold one chunk back; at the end, drop it.
            loop {
                let next = self.0.next_chunk().await?;
                match (self.1.take(), next) {
                    (Some(held), Some(n)) => {
                        self.1 = Some(n);
                        return Ok(Some(held));
                    }
                    (None, Some(n)) => self.1 = Some(n),
                    (_, None) => return Ok(None),
                }
            }
        }
    }

    #[async_trait]
    impl MailSource for Broken {
        async fn list_mailboxes(&self) -> Result<Vec<SourceMailbox>, SourceError> {
            self.inner.list_mailboxes().await
        }
        async fn resolve_mailbox(&self, a: &str) -> Result<SourceMailbox, SourceError> {
            MailSource::resolve_mailbox(&self.inner, a).await
        }
        async fn list_folders(
            &self,
            m: &SourceMailbox,
            o: FolderOptions,
        ) -> Result<Vec<SourceFolder>, SourceError> {
            let mut folders = self.inner.list_folders(m, o).await?;
            if self.flaw == Flaw::ChildrenFirst {
                folders.reverse();
            }
            Ok(folders)
        }
        async fn delta_page(
            &self,
            m: &SourceMailbox,
            f: &FolderId,
            c: &DeltaCursor,
            p: u32,
        ) -> Result<DeltaPage, SourceError> {
            if let (Flaw::ConsumesLinks, DeltaCursor::Link(link)) = (self.flaw, c)
                && !self.used.lock().unwrap().insert(link.clone())
            {
                return Err(SourceError::DeltaExpired);
            }
            let mut page = self.inner.delta_page(m, f, c, p).await?;
            if self.flaw == Flaw::ForgetsRemovals {
                page.removed.clear();
            }
            Ok(page)
        }
        async fn open_content(
            &self,
            m: &SourceMailbox,
            i: &SourceItem,
            k: ContentKind,
        ) -> Result<Box<dyn ContentStream>, SourceError> {
            let stream = self.inner.open_content(m, i, k).await?;
            Ok(if self.flaw == Flaw::TruncatesContent {
                Box::new(Truncated(stream, None))
            } else {
                stream
            })
        }
    }

    #[async_trait]
    impl MailTarget for Broken {
        async fn resolve_mailbox(&self, a: &str) -> Result<MailboxId, TargetError> {
            MailTarget::resolve_mailbox(&self.inner, a).await
        }
        async fn check_write_access(&self, m: &MailboxId) -> Result<(), TargetError> {
            self.inner.check_write_access(m).await
        }
        async fn well_known_folder(
            &self,
            m: &MailboxId,
            w: &str,
        ) -> Result<Option<TargetFolder>, TargetError> {
            self.inner.well_known_folder(m, w).await
        }
        async fn ensure_folder(
            &self,
            m: &MailboxId,
            p: Option<&FolderId>,
            n: &str,
        ) -> Result<TargetFolder, TargetError> {
            if self.flaw == Flaw::DuplicatesFolders {
                let unique = format!("{n}\u{200b}{}", uuid::Uuid::new_v4().simple());
                let mut f = self.inner.ensure_folder(m, p, &unique).await?;
                n.clone_into(&mut f.display_name);
                return Ok(f);
            }
            self.inner.ensure_folder(m, p, n).await
        }
        async fn list_items(
            &self,
            m: &MailboxId,
            f: &FolderId,
        ) -> Result<Vec<TargetItem>, TargetError> {
            let mut items = self.inner.list_items(m, f).await?;
            if self.flaw == Flaw::DropsTheMark {
                for i in &mut items {
                    i.source_id = None;
                }
            }
            Ok(items)
        }
        async fn create_message(
            &self,
            m: &MailboxId,
            f: &FolderId,
            msg: &RestoreMessage,
            a: &[RestoreAttachment],
            mark: &RestoreMark,
            complete: bool,
        ) -> Result<ItemId, TargetError> {
            let complete = complete && self.flaw != Flaw::IgnoresComplete;
            self.inner
                .create_message(m, f, msg, a, mark, complete)
                .await
        }
        async fn list_attachments(
            &self,
            m: &MailboxId,
            i: &ItemId,
        ) -> Result<Vec<TargetAttachment>, TargetError> {
            self.inner.list_attachments(m, i).await
        }
        async fn add_attachment(
            &self,
            m: &MailboxId,
            i: &ItemId,
            a: &RestoreAttachment,
        ) -> Result<(), TargetError> {
            self.inner.add_attachment(m, i, a).await
        }
        async fn mark_complete(
            &self,
            m: &MailboxId,
            i: &ItemId,
            msg: &RestoreMessage,
        ) -> Result<(), TargetError> {
            self.inner.mark_complete(m, i, msg).await
        }
        fn inline_attachment_budget(&self) -> u64 {
            self.inner.inline_attachment_budget()
        }
    }

    impl SourceFixture for Broken {
        fn source(&self) -> Arc<dyn MailSource> {
            Arc::new(self.clone())
        }
        fn mailbox(&self) -> String {
            SourceFixture::mailbox(&self.inner)
        }
        fn messages(&self, address: &str) -> Vec<FixtureMessage> {
            self.inner.messages(address)
        }
        fn add_message(&self, address: &str, folder: &str, subject: &str) {
            SourceFixture::add_message(&self.inner, address, folder, subject);
        }
        fn set_read(&self, address: &str, id: &ItemId, read: bool) {
            self.inner.set_read(address, id, read);
        }
        fn move_message(&self, address: &str, id: &ItemId, folder: &str) {
            self.inner.move_message(address, id, folder);
        }
        fn delete_message(&self, address: &str, id: &ItemId) {
            self.inner.delete_message(address, id);
        }
        fn fail_content(&self, address: &str, id: &ItemId, fail: bool) {
            self.inner.fail_content(address, id, fail);
        }
        fn expire_delta_links(&self) {
            SourceFixture::expire_delta_links(&self.inner);
        }
    }

    impl TargetFixture for Broken {
        fn target(&self) -> Arc<dyn MailTarget> {
            Arc::new(self.clone())
        }
        fn mailbox(&self) -> String {
            TargetFixture::mailbox(&self.inner)
        }
        fn user_without_mailbox(&self) -> Option<String> {
            self.inner.user_without_mailbox()
        }
        fn message_count(&self, address: &str) -> usize {
            self.inner.message_count(address)
        }
        fn messages_in(&self, address: &str, path: &str) -> Vec<FixtureTargetMessage> {
            self.inner.messages_in(address, path)
        }
    }

    fn broken(flaw: Flaw) -> Broken {
        Broken {
            inner: MemoryTenant::generate(5, 2, 15),
            flaw,
            used: Arc::default(),
        }
    }

    /// Run a check in its own task and report whether it failed (panicked).
    async fn fails<F, Fut>(fixture: Broken, check: F) -> bool
    where
        F: FnOnce(Broken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move { check(fixture).await })
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_delta_that_forgets_removals() {
        let f = broken(Flaw::ForgetsRemovals);
        assert!(
            fails(f, |f| async move {
                conformance::source::incremental_round(&f).await;
            })
            .await
        );
    }

    #[tokio::test]
    async fn links_that_work_once() {
        let f = broken(Flaw::ConsumesLinks);
        assert!(
            fails(f, |f| async move {
                conformance::source::incremental_round(&f).await;
            })
            .await
        );
    }

    #[tokio::test]
    async fn content_that_loses_bytes() {
        let f = broken(Flaw::TruncatesContent);
        assert!(
            fails(f, |f| async move {
                conformance::source::content_is_byte_exact(&f).await;
            })
            .await
        );
    }

    #[tokio::test]
    async fn a_folder_tree_with_children_first() {
        let f = broken(Flaw::ChildrenFirst);
        assert!(
            fails(
                f,
                |f| async move { conformance::source::folder_tree(&f).await }
            )
            .await
        );
    }

    #[tokio::test]
    async fn a_create_that_drops_the_mark() {
        let f = broken(Flaw::DropsTheMark);
        assert!(
            fails(f, |f| async move {
                conformance::target::marks_and_completion(&f).await;
            })
            .await
        );
    }

    #[tokio::test]
    async fn a_create_that_ignores_complete() {
        let f = broken(Flaw::IgnoresComplete);
        assert!(
            fails(f, |f| async move {
                conformance::target::marks_and_completion(&f).await;
            })
            .await
        );
    }

    #[tokio::test]
    async fn folders_created_twice() {
        let f = broken(Flaw::DuplicatesFolders);
        assert!(
            fails(f, |f| async move {
                conformance::target::folders_are_idempotent(&f).await;
            })
            .await
        );
    }

    /// And the very same checks pass on the sound tenant the broken ones wrap.
    #[tokio::test]
    async fn but_not_the_sound_tenant() {
        for flaw in [Flaw::ForgetsRemovals, Flaw::DropsTheMark] {
            let sound = broken(flaw).inner;
            let f = Broken {
                inner: sound,
                flaw: Flaw::ChildrenFirst,
                used: Arc::default(),
            };
            // Only folder_tree looks at what ChildrenFirst breaks; the rest must pass.
            assert!(
                !fails(f, |f| async move {
                    conformance::source::incremental_round(&f).await;
                    conformance::source::content_is_byte_exact(&f).await;
                    conformance::target::marks_and_completion(&f).await;
                    conformance::target::folders_are_idempotent(&f).await;
                })
                .await
            );
        }
    }
}

/// The configuration port in memory, as the configuration conformance suite sees it.
struct ConfigInMemory {
    target: atlas_core::testing::MemoryConfig,
    mailbox: atlas_core::model::MailboxId,
}

impl ConfigInMemory {
    fn new() -> Self {
        let target = atlas_core::testing::MemoryConfig::new();
        let mailbox = atlas_core::model::MailboxId::new("adele@contoso.com");
        target.add_mailbox(
            &mailbox,
            &[("Inbox", Some("inbox")), ("Inbox/Receipts", None)],
        );
        Self { target, mailbox }
    }
}

impl conformance::config::ConfigFixture for ConfigInMemory {
    fn target(&self) -> &dyn atlas_core::ports::ConfigTarget {
        &self.target
    }
    fn mailbox(&self) -> atlas_core::model::MailboxId {
        self.mailbox.clone()
    }
    fn category_names(&self) -> Vec<String> {
        names(&self.target.dump(&self.mailbox).categories)
    }
    fn rule_names(&self) -> Vec<String> {
        names(&self.target.dump(&self.mailbox).rules)
    }
}

fn names(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| v["displayName"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_memory_configuration_passes_the_configuration_suite() {
    conformance::config::run_all(&ConfigInMemory::new()).await;
}

/// What the memory configuration injects, it injects as the contract says: a missing
/// permission refuses before anything is written; a lost answer follows a write that took
/// effect, so only a second look tells.
#[tokio::test]
async fn the_memory_configuration_refuses_without_permission_and_loses_answers_after_writing() {
    use atlas_core::ports::{ConfigTarget, TargetError};
    let c = ConfigInMemory::new();
    let m = &c.mailbox;
    c.target.set_denied(true);
    assert!(matches!(
        c.target.check_config_access(m).await,
        Err(TargetError::PermissionDenied { .. })
    ));
    let cat = serde_json::json!({"displayName": "Blue", "color": "preset7"});
    assert!(c.target.create_category(m, &cat).await.is_err());
    assert_eq!(c.target.writes(), 0);
    c.target.set_denied(false);
    c.target.lose_answers(1);
    assert!(matches!(
        c.target.create_category(m, &cat).await,
        Err(TargetError::OutcomeUnknown(_))
    ));
    assert_eq!(
        names(&c.target.master_categories(m).await.unwrap()),
        ["Blue"]
    );
    assert!(
        matches!(
            c.target.create_category(m, &cat).await,
            Err(TargetError::Rejected(_))
        ),
        "a duplicate name is refused"
    );
}
