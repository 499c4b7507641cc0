//! What a request is for. One tag drives the permission named in a 403, whether a failed
//! attempt may be repeated, and how a 404 is read.

/// The Graph operations Atlas performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST {authority}/{tenant}/oauth2/v2.0/token`.
    Token,
    /// `GET /users` (paged).
    ListUsers,
    /// `GET /users/{id}`.
    GetUser,
    /// `GET /users/{id}?$select=mailboxSettings`.
    MailboxSettings,
    /// `GET …/mailFolders`, `…/childFolders`, `…/mailFolders/{id}`.
    ListFolders,
    /// `GET …/messages/delta`.
    MessageDelta,
    /// `GET …/messages/{id}` and message listings.
    GetMessage,
    /// `GET …/messages/{id}/$value`.
    MessageMime,
    /// `GET …/attachments`, `…/attachments/{id}`, `…/$value`.
    Attachments,
    /// `POST …/mailFolders` or `…/childFolders`.
    CreateFolder,
    /// `POST …/messages`.
    CreateMessage,
    /// `POST …/messages/{id}/attachments`.
    AddAttachment,
    /// `POST …/attachments/createUploadSession`.
    CreateUploadSession,
    /// `PUT {uploadUrl}` (pre-authenticated, no bearer token).
    UploadChunk,
    /// `GET /reports/getMailboxUsageDetail(…)` and the CSV download it redirects to.
    Reports,
    /// `GET /users/{id}/settings/exchange` (the mailbox id of the import/export API).
    ExchangeSettings,
    /// `GET /admin/exchange/mailboxes/{id}/folders…` (list, get, delta).
    MailboxFolders,
    /// `POST /admin/exchange/mailboxes/{id}/folders` or `…/childFolders`.
    CreateMailboxFolder,
    /// `GET …/folders/{id}/items` and `…/items/delta`.
    MailboxItems,
    /// `POST …/exportItems` (reads only: repeating it is harmless).
    ExportItems,
    /// `POST …/createImportSession` (a second session is harmless).
    CreateImportSession,
    /// `POST {importUrl}` (pre-authenticated, no bearer token).
    ImportItem,
    /// `GET …/calendars`, `…/events`, `…/instances`, event attachments.
    Events,
    /// `GET …/contactFolders`, `…/contacts`, contact photos.
    Contacts,
    /// `POST …/contactFolders`, `…/contacts`, `PUT …/photo/$value`.
    WriteContacts,
    /// `GET …/todo/lists`, `…/tasks`.
    Todo,
    /// `POST …/todo/lists`, `…/tasks`.
    WriteTodo,
    /// `GET …/mailFolders/inbox/messageRules` and `…/outlook/masterCategories`.
    MailboxConfig,
    /// `POST …/messageRules`, `POST …/outlook/masterCategories`, `PATCH …/mailboxSettings`
    /// (configuration restore).
    WriteMailboxConfig,
}

impl Endpoint {
    /// Whether repeating the request after an unclear failure cannot change the outcome.
    /// A `PUT` of a byte range writes the same bytes at the same place; a `POST` may create
    /// a second folder, message or attachment.
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Self::CreateFolder
                | Self::CreateMessage
                | Self::AddAttachment
                | Self::CreateUploadSession
                | Self::CreateMailboxFolder
                | Self::ImportItem
                | Self::WriteContacts
                | Self::WriteTodo
                | Self::WriteMailboxConfig
        )
    }

    /// The least application permission this endpoint needs, named in a 403 so an
    /// administrator knows what to grant (SPEC §2 table).
    pub fn permission_hint(self) -> &'static str {
        match self {
            Self::Token => "(none: sign-in)",
            Self::ListUsers | Self::GetUser | Self::ExchangeSettings => "User.Read.All",
            Self::MailboxSettings | Self::MailboxConfig => "MailboxSettings.Read",
            Self::ListFolders
            | Self::MessageDelta
            | Self::GetMessage
            | Self::MessageMime
            | Self::Attachments => "Mail.Read",
            Self::CreateFolder
            | Self::CreateMessage
            | Self::AddAttachment
            | Self::CreateUploadSession
            | Self::UploadChunk => "Mail.ReadWrite",
            Self::Reports => "Reports.Read.All",
            Self::MailboxFolders => "MailboxFolder.Read.All",
            Self::CreateMailboxFolder => "MailboxFolder.ReadWrite.All",
            Self::MailboxItems => "MailboxItem.Read.All",
            Self::ExportItems => "MailboxItem.Export.All",
            Self::CreateImportSession | Self::ImportItem => "MailboxItem.ImportExport.All",
            Self::Events => "Calendars.Read",
            Self::Contacts => "Contacts.Read",
            Self::WriteContacts => "Contacts.ReadWrite",
            Self::Todo => "Tasks.Read.All",
            Self::WriteTodo => "Tasks.ReadWrite.All",
            Self::WriteMailboxConfig => "MailboxSettings.ReadWrite",
        }
    }

    /// Whether the path is inside a mailbox (`/users/{id}/mail…`), where a missing user
    /// shows up as `ErrorInvalidUser` or `MailboxNotEnabledForRESTAPI`.
    pub fn is_mailbox_scoped(self) -> bool {
        !matches!(self, Self::Token | Self::ListUsers | Self::Reports)
    }

    /// Short name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::ListUsers => "list_users",
            Self::GetUser => "get_user",
            Self::MailboxSettings => "mailbox_settings",
            Self::ListFolders => "list_folders",
            Self::MessageDelta => "message_delta",
            Self::GetMessage => "get_message",
            Self::MessageMime => "message_mime",
            Self::Attachments => "attachments",
            Self::CreateFolder => "create_folder",
            Self::CreateMessage => "create_message",
            Self::AddAttachment => "add_attachment",
            Self::CreateUploadSession => "create_upload_session",
            Self::UploadChunk => "upload_chunk",
            Self::Reports => "reports",
            Self::ExchangeSettings => "exchange_settings",
            Self::MailboxFolders => "mailbox_folders",
            Self::CreateMailboxFolder => "create_mailbox_folder",
            Self::MailboxItems => "mailbox_items",
            Self::ExportItems => "export_items",
            Self::CreateImportSession => "create_import_session",
            Self::ImportItem => "import_item",
            Self::Events => "events",
            Self::Contacts => "contacts",
            Self::WriteContacts => "write_contacts",
            Self::Todo => "todo",
            Self::WriteTodo => "write_todo",
            Self::MailboxConfig => "mailbox_config",
            Self::WriteMailboxConfig => "write_mailbox_config",
        }
    }
}
