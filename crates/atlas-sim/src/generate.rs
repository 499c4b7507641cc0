//! Deterministic tenant generation: same seed and sizes give a byte-identical tenant.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::mime::html_escape;
use crate::model::{
    AccountKind, Addr, Attachment, AttachmentKind, Body, Content, ItemMessage, Mailbox, Message,
    MessageContent, ROOT_FOLDER, Tenant, User,
};

const GIVEN: &[&str] = &[
    "Adele",
    "Alex",
    "Zoë",
    "José",
    "Björn",
    "Søren",
    "Łukasz",
    "François",
    "Aiko",
    "Priya",
    "Mohammed",
    "Grady",
    "Isaiah",
    "Johanna",
    "Lee",
    "Megan",
    "Nestor",
    "Patti",
    "Pradeep",
    "Lynne",
    "Diego",
    "Henrietta",
    "Miriam",
    "Chloé",
    "Ömer",
    "Anaïs",
    "Wei",
    "Yuki",
    "Ngozi",
    "Sven",
];
const SURNAMES: &[&str] = &[
    "Vance",
    "Wilber",
    "Müller",
    "García",
    "Østergaard",
    "Kowalski",
    "Dubois",
    "Tanaka",
    "Sharma",
    "Al-Farsi",
    "Archie",
    "Gonzales",
    "Lindqvist",
    "Bowen",
    "Cortez",
    "Fernandez",
    "Gupta",
    "Steward",
    "Núñez",
    "Mendoza",
    "Brennan",
    "Öztürk",
    "Chen",
    "Sato",
    "Okafor",
    "Larsen",
];
const TITLES: &[&str] = &[
    "Product Manager",
    "Engineer",
    "Counsel",
    "Marketing Lead",
    "CFO",
    "Designer",
    "Sales Rep",
];
const SUBJECTS: &[&str] = &[
    "Quarterly budget review",
    "Réunion budgétaire — ordre du jour",
    "会议纪要：第三季度规划",
    "Встреча по проекту",
    "🚀 Launch checklist",
    "Lunch on Friday?",
    "Contract draft v3 (please review)",
    "Travel itinerary: Zürich → São Paulo",
    "Invoice #48213",
    "Weekly status",
    "Ärger mit dem Drucker",
    "Offsite photos 📸",
    "Security review findings",
    "Re-org announcement",
    "Customer escalation: Fabrikam",
];
const WORDS: &[&str] = &[
    "the",
    "project",
    "budget",
    "meeting",
    "customer",
    "deadline",
    "review",
    "please",
    "attached",
    "update",
    "schedule",
    "numbers",
    "forecast",
    "team",
    "thanks",
    "next",
    "week",
    "Monday",
    "draft",
    "final",
    "approve",
    "résumé",
    "naïve",
    "café",
    "Straße",
    "日本",
    "данные",
    "ok",
    "launch",
    "risk",
];
const CATEGORIES: &[&str] = &[
    "Red category",
    "Blue category",
    "Green category",
    "Projects",
    "Personal",
];

struct FileKind {
    ext: &'static str,
    content_type: &'static str,
    prefix: &'static [u8],
}
const FILE_KINDS: &[FileKind] = &[
    FileKind {
        ext: "pdf",
        content_type: "application/pdf",
        prefix: b"%PDF-1.7\n",
    },
    FileKind {
        ext: "docx",
        content_type: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        prefix: b"PK\x03\x04",
    },
    FileKind {
        ext: "csv",
        content_type: "text/csv",
        prefix: b"date,amount\r\n",
    },
    FileKind {
        ext: "zip",
        content_type: "application/x-zip-compressed",
        prefix: b"PK\x03\x04",
    },
    FileKind {
        ext: "txt",
        content_type: "text/plain",
        prefix: b"",
    },
];
const PNG_PREFIX: &[u8] = b"\x89PNG\r\n\x1a\n";

fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

fn ascii_local(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ä' | 'à' | 'á' => 'a',
            'ö' | 'ø' | 'Ö' | 'Ø' => 'o',
            'ü' | 'ú' => 'u',
            'é' | 'è' | 'ë' => 'e',
            'ï' | 'í' => 'i',
            'ç' => 'c',
            'ñ' => 'n',
            'ł' | 'Ł' => 'l',
            c => c,
        })
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Builds the whole tenant from the configuration.
pub(crate) fn generate(cfg: &SimConfig) -> Tenant {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let tenant_id = cfg.tenant_id.clone().unwrap_or_else(|| uuid_from(&mut rng));
    let client_id = cfg.client_id.clone().unwrap_or_else(|| uuid_from(&mut rng));
    let client_secret = cfg.client_secret.clone().unwrap_or_else(|| {
        let mut s = String::from("sim~");
        for _ in 0..36 {
            let c = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
                [rng.gen_range(0..64)];
            s.push(char::from(c));
        }
        s
    });
    let domain = cfg.tenant_domain.clone();
    let now = cfg.generated_at;

    let mut users = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let mut push_user = |rng: &mut ChaCha8Rng, kind: AccountKind, users: &mut Vec<User>| {
        let id = uuid_from(rng);
        let created = now - Duration::days(rng.gen_range(200..2000));
        let (display, given, sur, upn) = if kind == AccountKind::Shared {
            let names = [
                "Support",
                "Sales Team",
                "Accounts Payable",
                "Reception",
                "HR Help",
            ];
            let n = names[users
                .iter()
                .filter(|u: &&User| u.kind == AccountKind::Shared)
                .count()
                % names.len()];
            let mut local = ascii_local(n);
            while !used.insert(local.clone()) {
                local.push('2');
            }
            (n.to_owned(), None, None, format!("{local}@{domain}"))
        } else {
            let g = *GIVEN.choose(rng).expect("invariant: non-empty");
            let s = *SURNAMES.choose(rng).expect("invariant: non-empty");
            let mut local = format!("{}.{}", ascii_local(g), ascii_local(s));
            while !used.insert(local.clone()) {
                local.push_str(&rng.gen_range(2..99).to_string());
            }
            (
                format!("{g} {s}"),
                Some(g.to_owned()),
                Some(s.to_owned()),
                format!("{local}@{domain}"),
            )
        };
        let job = (kind != AccountKind::Shared)
            .then(|| (*TITLES.choose(rng).expect("invariant: non-empty")).to_owned());
        let office = (kind != AccountKind::Shared)
            .then(|| format!("{}/{}", rng.gen_range(1..40), rng.gen_range(1000..3000)));
        users.push(User {
            id,
            upn,
            display_name: display,
            given_name: given,
            surname: sur,
            job_title: job,
            office,
            kind,
            created,
        });
    };
    for i in 0..cfg.users {
        let kind = if i >= cfg.users.saturating_sub(cfg.shared_mailboxes) {
            AccountKind::Shared
        } else if i == 1 && cfg.users >= 3 {
            AccountKind::Disabled
        } else {
            AccountKind::User
        };
        push_user(&mut rng, kind, &mut users);
    }
    if cfg.accounts_without_mailbox {
        push_user(&mut rng, AccountKind::Unlicensed, &mut users);
        push_user(&mut rng, AccountKind::NoMailbox, &mut users);
    }

    let mut mailboxes = BTreeMap::new();
    for (idx, u) in users.iter().enumerate() {
        if u.kind.has_mailbox() {
            mailboxes.insert(idx, Mailbox::new(u32::try_from(idx).unwrap_or(u32::MAX)));
        }
    }
    let mut g = Gen {
        rng,
        cfg,
        users: &users,
        domain: cfg.tenant_domain.clone(),
        big_budget: 3,
        broken_left: cfg.broken_mime_messages,
    };
    let shared_pool = g.shared_pool();
    for (&idx, mbx) in &mut mailboxes {
        g.fill_mailbox(idx, mbx, &shared_pool);
    }
    // After all mail, with its own random stream: the mail of a seed stays what it was.
    for (&idx, mbx) in &mut mailboxes {
        crate::pim_gen::fill(cfg, &users, idx, mbx);
    }
    Tenant {
        id: tenant_id,
        domain: cfg.tenant_domain.clone(),
        client_id,
        client_secret,
        users,
        mailboxes,
    }
}

struct Gen<'a> {
    rng: ChaCha8Rng,
    cfg: &'a SimConfig,
    users: &'a [User],
    domain: String,
    big_budget: usize,
    broken_left: usize,
}

impl Gen<'_> {
    fn person(&mut self) -> Addr {
        if self.rng.gen_bool(0.7) && !self.users.is_empty() {
            self.users[self.rng.gen_range(0..self.users.len())].address()
        } else {
            let g = *GIVEN.choose(&mut self.rng).expect("invariant: non-empty");
            let s = *SURNAMES
                .choose(&mut self.rng)
                .expect("invariant: non-empty");
            let dom = ["fabrikam.com", "example.org", "tailspin.net", "adatum.de"]
                [self.rng.gen_range(0..4)];
            Addr {
                name: format!("{g} {s}"),
                address: format!("{}.{}@{dom}", ascii_local(g), ascii_local(s)),
            }
        }
    }

    fn sentence(&mut self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(WORDS.choose(&mut self.rng).expect("invariant: non-empty"));
        }
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
            None => s,
        }
    }

    fn subject(&mut self) -> String {
        let r = self.rng.gen_range(0..100);
        let base = (*SUBJECTS
            .choose(&mut self.rng)
            .expect("invariant: non-empty"))
        .to_owned();
        if r < 4 {
            let mut s = base;
            while s.len() < 300 {
                s.push_str(" — ");
                s.push_str(&self.sentence(6));
            }
            s
        } else if r < 8 {
            String::new()
        } else {
            base
        }
    }

    fn body(&mut self, greeting: &str) -> Body {
        let paras = self.rng.gen_range(1..6);
        let mut texts = vec![format!("Hi {greeting},")];
        for _ in 0..paras {
            let n = self.rng.gen_range(8..60);
            texts.push(self.sentence(n));
        }
        texts.push("Best regards".into());
        if self.rng.gen_bool(0.75) {
            let mut html = String::from(
                "<html><head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n</head>\r\n<body>\r\n",
            );
            for t in &texts {
                let _ = write!(html, "<p>{}</p>\r\n", html_escape(t));
            }
            html.push_str("</body>\r\n</html>\r\n");
            Body {
                html: true,
                content: html.into(),
            }
        } else {
            Body {
                html: false,
                content: texts.join("\r\n\r\n").into(),
            }
        }
    }

    fn file_attachment(&mut self, when: DateTime<Utc>) -> Attachment {
        let kind = FILE_KINDS
            .choose(&mut self.rng)
            .expect("invariant: non-empty");
        let cap = self.cfg.max_attachment_bytes.max(16);
        let len = if self.cfg.large_attachments && self.big_budget > 0 && self.rng.gen_bool(0.05) {
            self.big_budget -= 1;
            cap
        } else {
            match self.rng.gen_range(0..10) {
                0 => self.rng.gen_range(1..64),
                1..=6 => self.rng.gen_range(1_000..60_000),
                _ => self.rng.gen_range(60_000..400_000),
            }
            .min(cap)
        };
        let stem = [
            "report",
            "Übersicht",
            "notes",
            "scan_0042",
            "budget 2025",
            "contract-final",
        ][self.rng.gen_range(0..6)];
        Attachment {
            name: format!("{stem}.{}", kind.ext),
            content_type: Some(kind.content_type.to_owned()),
            kind: AttachmentKind::File(Content::Pattern {
                seed: self.rng.next_u64(),
                len,
                prefix: kind.prefix,
            }),
            is_inline: false,
            content_id: None,
            last_modified: when,
        }
    }

    /// `showcase` forces every attachment kind (file, inline image, item, reference) so each
    /// mailbox has at least one such message whatever the seed.
    fn message_content(
        &mut self,
        owner: &User,
        outgoing: bool,
        when: DateTime<Utc>,
        showcase: bool,
    ) -> MessageContent {
        let me = owner.address();
        let other = self.person();
        let (from, mut to) = if outgoing {
            (me.clone(), vec![other])
        } else {
            (other, vec![me.clone()])
        };
        let mut cc = Vec::new();
        let r = self.rng.gen_range(0..100);
        if r < 5 {
            for _ in 0..self.rng.gen_range(30..60) {
                to.push(self.person());
            }
        } else if r < 35 {
            for _ in 0..self.rng.gen_range(1..4) {
                cc.push(self.person());
            }
        }
        let greeting = to[0].name.split(' ').next().unwrap_or("there").to_owned();
        let mut body = self.body(&greeting);
        if showcase && !body.html {
            body = Body {
                html: true,
                content: format!(
                    "<html><body><p>{}</p></body></html>",
                    html_escape(&body.content)
                )
                .into(),
            };
        }
        let mut attachments = Vec::new();
        let a = self.rng.gen_range(0..100);
        if a < 25 || showcase {
            for _ in 0..self.rng.gen_range(1..4) {
                attachments.push(self.file_attachment(when));
            }
        }
        if body.html && (self.rng.gen_range(0..100) < 10 || showcase) {
            let cid = format!(
                "image{:03}@{:08x}",
                self.rng.gen_range(1..999),
                self.rng.next_u32()
            );
            let html = body.content.replace(
                "</body>",
                &format!("<p><img src=\"cid:{cid}\" alt=\"logo\"></p>\r\n</body>"),
            );
            body = Body {
                html: true,
                content: html.into(),
            };
            attachments.push(Attachment {
                name: "image001.png".into(),
                content_type: Some("image/png".into()),
                kind: AttachmentKind::File(Content::Pattern {
                    seed: self.rng.next_u64(),
                    len: self.rng.gen_range(200..20_000),
                    prefix: PNG_PREFIX,
                }),
                is_inline: true,
                content_id: Some(cid),
                last_modified: when,
            });
        }
        if self.rng.gen_range(0..100) < 4 || showcase {
            let inner_when = when - Duration::days(3);
            let inner = MessageContent {
                subject: "Original message".into(),
                from: Some(self.person()),
                to: vec![me.clone()],
                cc: vec![],
                bcc: vec![],
                reply_to: vec![],
                body: Body {
                    html: false,
                    content: format!("{}\r\n", self.sentence(20)).into(),
                },
                internet_message_id: format!("<{:016x}@{}>", self.rng.next_u64(), self.domain),
                in_reply_to: None,
                references: vec![],
                extra_headers: vec![],
                importance: "normal",
                attachments: vec![],
                raw_mime: None,
            };
            attachments.push(Attachment {
                name: "Original message".into(),
                content_type: None,
                kind: AttachmentKind::Item(Arc::new(ItemMessage {
                    content: inner,
                    sent: inner_when,
                    received: inner_when,
                })),
                is_inline: false,
                content_id: None,
                last_modified: when,
            });
        }
        if self.rng.gen_range(0..100) < 2 || showcase {
            attachments.push(Attachment {
                name: "Shared plan.docx".into(),
                content_type: None,
                kind: AttachmentKind::Reference {
                    source_url: format!(
                        "https://contoso.sharepoint.com/sites/team/Shared%20Documents/plan-{}.docx",
                        self.rng.next_u32()
                    ),
                },
                is_inline: false,
                content_id: None,
                last_modified: when,
            });
        }
        let importance = match self.rng.gen_range(0..20) {
            0 => "high",
            1 => "low",
            _ => "normal",
        };
        MessageContent {
            subject: self.subject(),
            from: Some(from),
            to,
            cc,
            bcc: vec![],
            reply_to: vec![],
            body,
            internet_message_id: format!(
                "<{:016x}{:08x}@{}>",
                self.rng.next_u64(),
                self.rng.next_u32(),
                self.domain.to_ascii_uppercase()
            ),
            in_reply_to: None,
            references: vec![],
            extra_headers: vec![],
            importance,
            attachments,
            raw_mime: None,
        }
    }

    /// Messages delivered identically to several mailboxes (e.g. an all-hands mail).
    fn shared_pool(&mut self) -> Vec<(Arc<MessageContent>, DateTime<Utc>)> {
        let n = (self.cfg.messages_per_user / 20).max(1);
        let Some(sender) = self.users.first().cloned() else {
            return Vec::new();
        };
        (0..n)
            .map(|_| {
                let when = self.cfg.generated_at
                    - Duration::minutes(self.rng.gen_range(60..60 * 24 * 300));
                let mut c = self.message_content(&sender, true, when, false);
                c.to = self
                    .users
                    .iter()
                    .filter(|u| u.kind.has_mailbox())
                    .map(User::address)
                    .collect();
                (Arc::new(c), when)
            })
            .collect()
    }

    fn fill_mailbox(
        &mut self,
        idx: usize,
        mbx: &mut Mailbox,
        shared: &[(Arc<MessageContent>, DateTime<Utc>)],
    ) {
        let owner = self.users[idx].clone();
        let inbox = mbx.add_folder(ROOT_FOLDER, "Inbox", Some("inbox"), false);
        let drafts = mbx.add_folder(ROOT_FOLDER, "Drafts", Some("drafts"), false);
        let sent = mbx.add_folder(ROOT_FOLDER, "Sent Items", Some("sentitems"), false);
        let deleted = mbx.add_folder(ROOT_FOLDER, "Deleted Items", Some("deleteditems"), false);
        let junk = mbx.add_folder(ROOT_FOLDER, "Junk Email", Some("junkemail"), false);
        mbx.add_folder(ROOT_FOLDER, "Outbox", Some("outbox"), false);
        let archive = mbx.add_folder(ROOT_FOLDER, "Archive", Some("archive"), false);
        mbx.add_folder(
            ROOT_FOLDER,
            "Conversation History",
            Some("conversationhistory"),
            false,
        );
        let sync = mbx.add_folder(ROOT_FOLDER, "Sync Issues", Some("syncissues"), false);
        mbx.add_folder(sync, "Conflicts", Some("conflicts"), false);
        mbx.add_folder(sync, "Local Failures", Some("localfailures"), false);
        mbx.add_folder(sync, "Server Failures", Some("serverfailures"), false);
        let yammer = mbx.add_folder(ROOT_FOLDER, "Yammer Root", None, true);
        mbx.add_folder(yammer, "Feeds", None, true);
        let projects = mbx.add_folder(inbox, "Projects", None, false);
        let alpha = mbx.add_folder(projects, "Alpha", None, false);
        let deep = mbx.add_folder(alpha, "2024", None, false);
        let q4 = mbx.add_folder(deep, "Q4 — Überblick", None, false);
        let receipts = mbx.add_folder(inbox, "Receipts", None, false);
        let arch23 = mbx.add_folder(archive, "2023", None, false);
        let personal = mbx.add_folder(ROOT_FOLDER, "Personal & Family", None, false);
        let newsletters = mbx.add_folder(ROOT_FOLDER, "Newsletters", None, false);
        let targets = [
            (inbox, 40),
            (sent, 15),
            (archive, 6),
            (arch23, 6),
            (projects, 6),
            (alpha, 5),
            (deep, 3),
            (q4, 2),
            (receipts, 5),
            (personal, 4),
            (newsletters, 3),
            (deleted, 4),
            (junk, 2),
            (drafts, 2),
        ];
        let total_weight: u32 = targets.iter().map(|t| t.1).sum();
        let mut previous: Vec<Arc<MessageContent>> = Vec::new();
        let shared_for_me: Vec<_> = if owner.kind == AccountKind::Shared {
            Vec::new()
        } else {
            shared.to_vec()
        };
        let n = self.cfg.messages_per_user;
        for i in 0..n {
            let when =
                self.cfg.generated_at - Duration::minutes(self.rng.gen_range(10..60 * 24 * 400));
            let mut pick = self.rng.gen_range(0..total_weight);
            let mut folder = inbox;
            for (f, w) in targets {
                if pick < w {
                    folder = f;
                    break;
                }
                pick -= w;
            }
            let (content, when) = if i < shared_for_me.len() {
                folder = inbox;
                (shared_for_me[i].0.clone(), shared_for_me[i].1)
            } else {
                let outgoing = folder == sent || folder == drafts;
                let mut c = self.message_content(&owner, outgoing, when, i == shared_for_me.len());
                if !previous.is_empty() && self.rng.gen_range(0..100) < 20 {
                    let parent = previous[self.rng.gen_range(0..previous.len())].clone();
                    c.subject = format!("RE: {}", parent.subject);
                    c.in_reply_to = Some(parent.internet_message_id.clone());
                    let mut refs = parent.references.clone();
                    refs.push(parent.internet_message_id.clone());
                    c.references = refs;
                }
                let c = Arc::new(c);
                previous.push(c.clone());
                (c, when)
            };
            let is_shared = i < shared_for_me.len();
            let sent_offset = self.rng.gen_range(1..120);
            let key = mbx.alloc_key();
            let seq = mbx.bump();
            let is_draft = folder == drafts;
            let categories = if self.rng.gen_range(0..10) == 0 {
                vec![
                    (*CATEGORIES
                        .choose(&mut self.rng)
                        .expect("invariant: non-empty"))
                    .to_owned(),
                ]
            } else {
                Vec::new()
            };
            let flag_status = match self.rng.gen_range(0..15) {
                0 => "flagged",
                1 => "complete",
                _ => "notFlagged",
            };
            let broken = self.broken_left > 0 && i == n / 2;
            if broken {
                self.broken_left -= 1;
            }
            mbx.messages.insert(
                key,
                Message {
                    key,
                    folder,
                    location_gen: 0,
                    version: 0,
                    seq,
                    added_seq: seq,
                    content,
                    is_read: is_draft || folder == sent || self.rng.gen_bool(0.7),
                    is_draft,
                    flag_status: flag_status.to_owned(),
                    categories,
                    received: when,
                    sent: if is_shared {
                        when - Duration::seconds(30)
                    } else {
                        when - Duration::seconds(sent_offset)
                    },
                    created: when,
                    modified: when,
                    ext_props: Vec::new(),
                    broken_value: broken,
                },
            );
        }
    }
}
