//! Items and folders as kept in a snapshot.
//!
//! Everything Atlas backs up is an *item of a kind* ([`ItemKind`]): a mail message, a
//! calendar event, a contact, a task, a note, a piece of mailbox configuration. Every item
//! has the same skeleton — an id, a change key, a folder, one or more stored content blobs
//! ([`ContentRef`]: the MIME of a message, a full-fidelity export stream, a JSON
//! representation) — and metadata of its kind. The backup and restore pipelines work on
//! that skeleton, so a new kind is a new adapter and a new [`ItemKind`], not a second
//! pipeline.
//!
//! The records live only inside encrypted folder item lists, so subjects and addresses
//! never reach key names.
//!
//! # Mail on disk
//!
//! Mail was the only kind when the format was written, and its records keep exactly that
//! shape (docs/FORMAT.md §5.5, pinned by a golden test): the mail metadata fields sit at
//! the top level, the primary content is `mime`/`mimeSize`/`mimeSha256`, and the fields
//! that only other kinds need (`kind`, `content`) are left out when they hold their mail
//! defaults. A folder item list's content id is a keyed hash of this JSON, so an unchanged
//! mail folder keeps sharing its list with every snapshot written before.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{ContentId, FolderId, ItemId};

/// What an item is: mail, or one of the other kinds of the whole mailbox (calendar,
/// contacts, tasks, notes, configuration), which the Graph adapter backs up as their
/// full-fidelity export stream plus a readable JSON (notes: the stream only, Graph v1.0
/// has no readable note) and restores through import sessions (configuration: its
/// readable JSON only, restored through the settings endpoints).
///
/// These serde names (singular: `contact`, `task`, `note`) are the on-disk spelling in
/// folder item lists (docs/FORMAT.md §5.5) and must not change; users see only the plural
/// spelling of [`ItemKind::name`] — in `--kinds`, text and every JSON document, whose
/// fields serialize through [`ItemKind::serialize_name`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ItemKind {
    /// A mail message (`IPF.Note`). Its primary content is its raw MIME.
    #[default]
    Mail,
    /// A calendar item (`IPF.Appointment`): single, series or exception.
    Calendar,
    /// A contact (`IPF.Contact`).
    Contact,
    /// A task (`IPF.Task`).
    Task,
    /// A sticky note (`IPF.StickyNote`).
    Note,
    /// Mailbox configuration: inbox rules, master categories, automatic replies, working
    /// hours.
    Config,
}

impl ItemKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::Mail,
        Self::Calendar,
        Self::Contact,
        Self::Task,
        Self::Note,
        Self::Config,
    ];

    /// Whether this is mail (the default, left out of records).
    pub fn is_mail(&self) -> bool {
        *self == Self::Mail
    }

    /// The name used on the command line (`--kinds mail,calendar,…`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Calendar => "calendar",
            Self::Contact => "contacts",
            Self::Task => "tasks",
            Self::Note => "notes",
            Self::Config => "config",
        }
    }

    /// Serializes a kind by its user-facing [`name`](Self::name) (`contacts`, not the
    /// on-disk `contact`), for every report and `--json` document:
    /// `#[serde(serialize_with = "ItemKind::serialize_name")]` on a field of a struct users
    /// see. The derived serde names stay the on-disk spelling (docs/FORMAT.md §5.5), so
    /// repositories written so far read unchanged, while users meet one spelling — the one
    /// they type after `--kinds` — in flags, text and JSON alike (docs/JSON.md).
    ///
    /// # Errors
    ///
    /// Whatever the serializer returns for a string.
    pub fn serialize_name<S: serde::Serializer>(kind: &Self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    /// Whether stored content of an item may be reused for a newer version of it that the
    /// source reports with a different change key. Mail content is immutable in Exchange
    /// except for drafts (a read flag or a move changes the change key, not the MIME), so
    /// a known sent message costs a metadata update instead of a download; every other
    /// kind can be edited in place, so only an equal change key proves stored content
    /// current.
    pub fn content_is_immutable(self, is_draft: bool) -> bool {
        self == Self::Mail && !is_draft
    }

    /// Which representation an item of this kind keeps as its primary content: the MIME
    /// of a message, the export stream of a mailbox item, the JSON of configuration (which
    /// is not a mailbox item and has no export stream).
    pub fn primary_content(self) -> ContentKind {
        match self {
            Self::Mail => ContentKind::Mime,
            Self::Config => ContentKind::Json,
            Self::Calendar | Self::Contact | Self::Task | Self::Note => ContentKind::Export,
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown kind name, with the names that are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown item kind {given:?}: use one of mail, calendar, contacts, tasks, notes, config")]
pub struct UnknownKind {
    /// What was given.
    pub given: String,
}

impl FromStr for ItemKind {
    type Err = UnknownKind;

    /// Accepts the command-line names and their singular or plural forms, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "mail" | "message" | "messages" => Self::Mail,
            "calendar" | "calendars" | "event" | "events" => Self::Calendar,
            "contact" | "contacts" => Self::Contact,
            "task" | "tasks" => Self::Task,
            "note" | "notes" => Self::Note,
            "config" | "configuration" | "settings" => Self::Config,
            _ => {
                return Err(UnknownKind {
                    given: s.to_owned(),
                });
            }
        })
    }
}

/// A set of [`ItemKind`]s: what a backup covers (`--kinds`), what a listing shows.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// No kind.
    pub const NONE: Self = Self(0);
    /// Mail only: what Atlas backed up before it knew other kinds, and what an app with
    /// only the mail permissions can read.
    pub const MAIL: Self = Self(1);
    /// Every kind.
    pub const ALL: Self = Self(0b11_1111);

    const fn bit(kind: ItemKind) -> u8 {
        match kind {
            ItemKind::Mail => 1,
            ItemKind::Calendar => 2,
            ItemKind::Contact => 4,
            ItemKind::Task => 8,
            ItemKind::Note => 16,
            ItemKind::Config => 32,
        }
    }

    /// A set of these kinds.
    pub fn of(kinds: impl IntoIterator<Item = ItemKind>) -> Self {
        kinds.into_iter().fold(Self::NONE, Self::with)
    }

    /// This set and `kind`.
    #[must_use]
    pub fn with(self, kind: ItemKind) -> Self {
        Self(self.0 | Self::bit(kind))
    }

    /// This set without `kind`.
    #[must_use]
    pub const fn without(self, kind: ItemKind) -> Self {
        Self(self.0 & !Self::bit(kind))
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: ItemKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// Whether the set holds no kind.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the set holds a kind other than mail.
    pub fn beyond_mail(self) -> bool {
        !self.without(ItemKind::Mail).is_empty()
    }

    /// The kinds in the set, in [`ItemKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ItemKind> {
        ItemKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl Default for KindSet {
    /// Mail only, so a caller that never heard of kinds keeps its behaviour.
    fn default() -> Self {
        Self::MAIL
    }
}

impl fmt::Debug for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(ItemKind::name))
            .finish()
    }
}

impl fmt::Display for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(ItemKind::name).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for KindSet {
    type Err = UnknownKind;

    /// A comma-separated list of kind names (`mail,calendar`), or `all`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Self::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                set = Self::ALL;
            } else {
                set = set.with(part.parse()?);
            }
        }
        if set.is_empty() {
            return Err(UnknownKind {
                given: s.to_owned(),
            });
        }
        Ok(set)
    }
}

/// How much of a mail message a backup keeps (`atlas backup --fidelity`).
///
/// MIME is the canonical copy of a message and what every reader (export, `read`, EML)
/// uses. It does not carry everything Exchange knows about a message (flags, categories,
/// extended properties, the exact server-side dates), so `Full` also keeps the mailbox
/// export API's opaque stream of each message, from which Exchange recreates the message
/// exactly. Other kinds always keep their stream; this setting is about mail only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fidelity {
    /// The raw MIME of each message (the default).
    #[default]
    Mime,
    /// The raw MIME and the full-fidelity export stream of each message.
    Full,
}

impl Fidelity {
    /// The name used on the command line and in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mime => "mime",
            Self::Full => "full",
        }
    }

    /// Whether mail keeps its export stream too.
    pub fn keeps_mail_stream(self) -> bool {
        self == Self::Full
    }
}

impl fmt::Display for Fidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown fidelity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fidelity {given:?}: use mime or full")]
pub struct UnknownFidelity {
    /// What was given.
    pub given: String,
}

impl FromStr for Fidelity {
    type Err = UnknownFidelity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mime" => Ok(Self::Mime),
            "full" => Ok(Self::Full),
            _ => Err(UnknownFidelity {
                given: s.to_owned(),
            }),
        }
    }
}

/// Which representation of an item a content blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ContentKind {
    /// Raw RFC 5322 MIME, byte for byte as the source served it (mail).
    Mime,
    /// The source's opaque full-fidelity export stream (Graph `exportItems`): stored byte
    /// for byte, never parsed; restore imports it as is.
    Export,
    /// A readable JSON representation (Graph's resource JSON), so browse and export work
    /// offline for kinds without MIME.
    Json,
}

/// Where one representation of an item is stored, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentRef {
    /// Which representation.
    pub kind: ContentKind,
    /// Its content id (may name a chunk list; `Repository::read_blob` reassembles).
    pub id: ContentId,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, hex, so readers can check what they hand out: written by
    /// repositories before format 4 (and checked whenever present); empty and absent on
    /// disk in format 4, whose readers check the content id instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

/// A name and address as Graph reports `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    /// Display name (may be empty).
    #[serde(default)]
    pub name: String,
    /// SMTP address.
    #[serde(default)]
    pub address: String,
}

/// Graph `flag.flagStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagStatus {
    /// Not flagged.
    #[default]
    NotFlagged,
    /// Flagged for follow-up.
    Flagged,
    /// Follow-up complete.
    Complete,
    /// A value this build does not know (kept readable rather than failing the list).
    #[serde(other)]
    Unknown,
}

/// Graph `importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Importance {
    /// Low.
    Low,
    /// Normal (Graph's default).
    #[default]
    Normal,
    /// High.
    High,
    /// A value this build does not know.
    #[serde(other)]
    Unknown,
}

/// One item in a folder item list.
///
/// The fields fall in three groups: the skeleton every kind has (`id`, `kind`,
/// `change_key`, `last_modified`, `parent_folder_id`, the primary content in
/// `mime`/`mime_size`/`mime_sha256` and further representations in `content`), mail's
/// metadata (`internet_message_id` … `is_draft`; other kinds leave them at their defaults
/// and put a title in `subject`), and counters for listing (`size`, `attachment_count`).
/// The primary content keeps its mail field names because that is what is on disk; use
/// [`ItemMeta::primary`] and [`ItemMeta::contents`] to treat every kind alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemMeta {
    /// Graph immutable id.
    pub id: ItemId,
    /// RFC 5322 Message-ID header, as Graph reports it.
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// Graph conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Subject (the title of an item of another kind). Sensitive: only ever stored
    /// encrypted.
    #[serde(default)]
    pub subject: Option<String>,
    /// Sender.
    #[serde(default)]
    pub from: Option<EmailAddress>,
    /// `receivedDateTime`.
    #[serde(default)]
    pub received: Option<DateTime<Utc>>,
    /// `sentDateTime`.
    #[serde(default)]
    pub sent: Option<DateTime<Utc>>,
    /// Size Graph reports (bytes), if any.
    #[serde(default)]
    pub size: Option<u64>,
    /// Read state.
    #[serde(default)]
    pub is_read: bool,
    /// Follow-up flag.
    #[serde(default)]
    pub flag_status: FlagStatus,
    /// Importance.
    #[serde(default)]
    pub importance: Importance,
    /// Outlook categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Graph `hasAttachments` (false for inline-only attachments, per Graph).
    #[serde(default)]
    pub has_attachments: bool,
    /// Number of attachments seen in the MIME or via Graph.
    #[serde(default)]
    pub attachment_count: u32,
    /// Draft (the one kind of message whose content may change).
    #[serde(default)]
    pub is_draft: bool,
    /// Graph `changeKey`: changes whenever the item changes.
    #[serde(default)]
    pub change_key: Option<String>,
    /// `lastModifiedDateTime`.
    #[serde(default)]
    pub last_modified: Option<DateTime<Utc>>,
    /// The folder the item was in.
    pub parent_folder_id: FolderId,
    /// Where the primary content is stored: the raw MIME of a message, the export stream
    /// of an item of another kind (may be a chunk list; `Repository::read_blob`
    /// reassembles).
    pub mime: ContentId,
    /// Length of the primary content in bytes.
    pub mime_size: u64,
    /// SHA-256 of the primary content, hex. Kept only in this encrypted list (never in
    /// key names) so export and restore can check what they hand out. Written by
    /// repositories before format 4 (and checked whenever present); empty and absent on
    /// disk in format 4, where reading the content checks its content id (a keyed
    /// SHA-256 of the same bytes) and a second hash would check the same thing again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime_sha256: String,
    /// The item's kind; absent on disk for mail.
    #[serde(default, skip_serializing_if = "ItemKind::is_mail")]
    pub kind: ItemKind,
    /// Representations stored besides the primary one (a JSON representation, or the
    /// full-fidelity stream of a message); absent on disk when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ContentRef>,
}

/// Mail's name for an [`ItemMeta`]: the record of an item of kind [`ItemKind::Mail`].
pub type MessageMeta = ItemMeta;

impl ItemMeta {
    /// Which representation the primary content (`mime` …) holds for this kind.
    pub fn primary_kind(&self) -> ContentKind {
        self.kind.primary_content()
    }

    /// The primary content as a [`ContentRef`].
    pub fn primary(&self) -> ContentRef {
        ContentRef {
            kind: self.primary_kind(),
            id: self.mime,
            size: self.mime_size,
            sha256: self.mime_sha256.clone(),
        }
    }

    /// Every stored representation, the primary one first.
    pub fn contents(&self) -> impl Iterator<Item = ContentRef> + '_ {
        std::iter::once(self.primary()).chain(self.content.iter().cloned())
    }

    /// The content ids this item keeps alive: what prune, verify, Object Lock and
    /// replication must follow from a folder item list.
    pub fn content_ids(&self) -> impl Iterator<Item = ContentId> + '_ {
        std::iter::once(self.mime).chain(self.content.iter().map(|c| c.id))
    }

    /// The stored representation of `kind`, if there is one.
    pub fn content_of(&self, kind: ContentKind) -> Option<ContentRef> {
        self.contents().find(|c| c.kind == kind)
    }
}

/// A folder as recorded in a snapshot, complete enough that restore and export never
/// need the source mailbox to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderRecord {
    /// Graph folder id.
    pub id: FolderId,
    /// Parent folder id (`None` for the root's children's parent, i.e. the message root).
    #[serde(default)]
    pub parent_id: Option<FolderId>,
    /// Display name.
    pub display_name: String,
    /// Names from the top of the tree down to this folder, inclusive.
    pub path: Vec<String>,
    /// Graph well-known name (`inbox`, `sentitems`, …) if this is a well-known folder.
    #[serde(default)]
    pub well_known_name: Option<String>,
    /// Graph `totalItemCount` when the folder was enumerated.
    #[serde(default)]
    pub total_item_count: Option<u64>,
    /// The kind of item the folder holds (its container class); absent on disk for mail
    /// folders.
    #[serde(default, skip_serializing_if = "ItemKind::is_mail")]
    pub kind: ItemKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip_and_plurals_are_accepted() {
        for k in ItemKind::ALL {
            assert_eq!(k.name().parse::<ItemKind>(), Ok(k));
        }
        assert_eq!("Events".parse::<ItemKind>(), Ok(ItemKind::Calendar));
        assert_eq!("contact".parse::<ItemKind>(), Ok(ItemKind::Contact));
        let err = "mails!".parse::<ItemKind>().unwrap_err();
        assert!(err.to_string().contains("calendar"), "{err}");
    }

    #[test]
    fn users_see_the_plural_name_while_the_disk_keeps_the_singular() {
        #[derive(Serialize)]
        struct Shown {
            #[serde(serialize_with = "ItemKind::serialize_name")]
            kind: ItemKind,
        }
        for k in ItemKind::ALL {
            let shown = serde_json::to_value(Shown { kind: k }).unwrap();
            assert_eq!(shown["kind"], k.name());
        }
        // The on-disk spelling (docs/FORMAT.md §5.5) is the derived one, unchanged.
        let disk: Vec<String> = ItemKind::ALL
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            disk,
            ["mail", "calendar", "contact", "task", "note", "config"]
        );
    }

    #[test]
    fn kind_sets_parse_lists_and_all() {
        let s: KindSet = "mail, Calendar,contacts".parse().unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [ItemKind::Mail, ItemKind::Calendar, ItemKind::Contact]
        );
        assert!(s.beyond_mail() && !KindSet::MAIL.beyond_mail());
        assert_eq!("all".parse::<KindSet>(), Ok(KindSet::ALL));
        assert_eq!(
            KindSet::ALL.to_string(),
            "mail,calendar,contacts,tasks,notes,config"
        );
        assert!("".parse::<KindSet>().is_err() && "mail,x".parse::<KindSet>().is_err());
        assert_eq!(KindSet::default(), KindSet::MAIL);
    }

    #[test]
    fn fidelity_names_round_trip() {
        for f in [Fidelity::Mime, Fidelity::Full] {
            assert_eq!(f.name().parse::<Fidelity>(), Ok(f));
        }
        assert_eq!(" FULL ".parse::<Fidelity>(), Ok(Fidelity::Full));
        assert!("exact".parse::<Fidelity>().is_err());
        assert_eq!(Fidelity::default(), Fidelity::Mime);
        assert!(Fidelity::Full.keeps_mail_stream() && !Fidelity::Mime.keeps_mail_stream());
    }

    #[test]
    fn only_sent_mail_is_immutable() {
        assert!(ItemKind::Mail.content_is_immutable(false));
        assert!(!ItemKind::Mail.content_is_immutable(true));
        assert!(!ItemKind::Contact.content_is_immutable(false));
    }

    #[test]
    fn an_item_of_another_kind_names_its_kind_and_every_blob() {
        let json = ContentRef {
            kind: ContentKind::Json,
            id: ContentId::from_bytes([2; 32]),
            size: 3,
            sha256: "cd".into(),
        };
        let item: ItemMeta = serde_json::from_value(serde_json::json!({
            "id": "e1", "parentFolderId": "cal", "kind": "calendar",
            "mime": ContentId::from_bytes([1; 32]), "mimeSize": 9, "mimeSha256": "ab",
            "content": [json],
        }))
        .unwrap();
        assert_eq!(item.kind, ItemKind::Calendar);
        assert_eq!(item.primary().kind, ContentKind::Export);
        assert_eq!(
            item.content_ids().collect::<Vec<_>>(),
            [
                ContentId::from_bytes([1; 32]),
                ContentId::from_bytes([2; 32])
            ]
        );
        assert_eq!(item.content_of(ContentKind::Json).map(|c| c.size), Some(3));
        let back = serde_json::to_value(&item).unwrap();
        assert_eq!(back["kind"], "calendar");
    }
}
