//! Users and mailbox discovery (graph-api.md §3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::model::MailboxId;

/// Properties requested for every user: the defaults lack `accountEnabled`,
/// `createdDateTime` and `assignedPlans`, which discovery needs.
pub const USER_SELECT: &str =
    "id,userPrincipalName,mail,displayName,accountEnabled,createdDateTime,assignedPlans";

/// Exchange Online service plans that give a user mailbox (graph-api.md §3.3).
const EXCHANGE_MAILBOX_PLANS: &[&str] = &[
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c", // EXCHANGE_S_STANDARD (Plan 1)
    "efb87545-963c-4e0d-99df-69c6916d9eb0", // EXCHANGE_S_ENTERPRISE (Plan 2)
    "4a82b400-a79f-41a4-b4e2-e94f5787b113", // EXCHANGE_S_DESKLESS (Kiosk)
    "1126bef5-da20-4f07-b45e-ad25d2581aa8", // EXCHANGE_S_ESSENTIALS
];
/// Present in many SKUs without giving a mailbox by itself.
const EXCHANGE_FOUNDATION_PLAN: &str = "113feb6c-3fe4-4440-bddc-54d774bf0318";

/// A directory user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Object id (GUID).
    pub id: String,
    /// User principal name.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Primary SMTP address; `None` for users without Exchange attributes.
    #[serde(default)]
    pub mail: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether sign-in is enabled.
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// Creation time.
    #[serde(default)]
    pub created_date_time: Option<DateTime<Utc>>,
    /// Service plans, used to recognise an Exchange Online licence.
    #[serde(default)]
    pub assigned_plans: Vec<AssignedPlan>,
}

impl User {
    /// The address to show: `mail`, else the UPN, else the id.
    pub fn address(&self) -> &str {
        self.mail
            .as_deref()
            .or(self.user_principal_name.as_deref())
            .unwrap_or(&self.id)
    }

    /// The user's mailbox in the core's vocabulary: its address (lower-cased) and the
    /// directory object id, which Graph calls use because it survives renames. This is
    /// the one place a Graph user becomes a [`MailboxId`].
    pub fn mailbox_id(&self) -> MailboxId {
        MailboxId::new(self.address()).with_graph_user_id(self.id.clone())
    }
}

/// One entry of `assignedPlans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedPlan {
    /// When it was assigned.
    #[serde(default)]
    pub assigned_date_time: Option<DateTime<Utc>>,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted`, `LockedOut`.
    #[serde(default)]
    pub capability_status: Option<String>,
    /// Service name, e.g. `exchange`.
    #[serde(default)]
    pub service: Option<String>,
    /// Service plan GUID.
    #[serde(default)]
    pub service_plan_id: Option<String>,
}

/// What `assignedPlans` says about Exchange Online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeLicense {
    /// An enabled Exchange plan that gives a mailbox.
    Licensed,
    /// Only the Exchange "foundation" plan is enabled (no mailbox by itself).
    FoundationOnly,
    /// No enabled Exchange plan.
    None,
}

/// Classify plans. Looks at *every* plan (the old tool took the first Exchange plan, so a
/// `Deleted` plan listed before an `Enabled` one hid a licensed mailbox) and does not count
/// the foundation plan as a mailbox licence.
pub fn exchange_license(plans: &[AssignedPlan]) -> ExchangeLicense {
    let mut foundation = false;
    for plan in plans {
        let exchange = plan
            .service
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("exchange"));
        let enabled = plan
            .capability_status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("enabled"));
        if !exchange || !enabled {
            continue;
        }
        let id = plan
            .service_plan_id
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        if id == EXCHANGE_FOUNDATION_PLAN {
            foundation = true;
        } else if EXCHANGE_MAILBOX_PLANS.contains(&id.as_str()) || !id.is_empty() {
            // Unknown Exchange plan ids (new SKUs) are taken as mailbox plans: a false
            // positive costs one MailboxNotEnabled at backup time, a false negative loses mail.
            return ExchangeLicense::Licensed;
        }
    }
    if foundation {
        ExchangeLicense::FoundationOnly
    } else {
        ExchangeLicense::None
    }
}

/// The kind of mailbox behind a directory user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    /// A user with an Exchange Online licence.
    Licensed,
    /// A user mailbox without a licence (e.g. licence recently removed from a leaver).
    Unlicensed,
    /// A shared mailbox.
    Shared,
    /// A room mailbox.
    Room,
    /// An equipment mailbox.
    Equipment,
    /// No usable mailbox (unlicensed without mailbox, guest, on-premises, soft-deleted).
    NoMailbox,
    /// Could not tell (e.g. `MailboxSettings.Read` not granted).
    Unknown,
}

/// `mailboxSettings` fields Atlas uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MailboxSettings {
    /// `user`, `linked`, `shared`, `room`, `equipment`, `others`.
    #[serde(default)]
    pub user_purpose: Option<String>,
    /// Mailbox time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Id of the archive folder (One-Click Archive).
    #[serde(default)]
    pub archive_folder: Option<String>,
}

/// Options for [`GraphClient::list_users`].
#[derive(Debug, Clone, Default)]
pub struct ListUsersOptions {
    /// `$top` (page size; Graph allows up to 999 for `/users`).
    pub page_size: Option<u32>,
    /// `$select`; defaults to [`USER_SELECT`].
    pub select: Option<String>,
}

impl GraphClient {
    /// Every user in the directory, following `@odata.nextLink`.
    pub async fn list_users(&self, opts: &ListUsersOptions) -> Result<Vec<User>, GraphError> {
        let top = opts.page_size.unwrap_or(999).clamp(1, 999).to_string();
        let select = opts.select.as_deref().unwrap_or(USER_SELECT);
        let url = self.url(&["users"], &[("$select", select), ("$top", &top)]);
        self.collect_pages(Req::get(Endpoint::ListUsers, url, None))
            .await
    }

    /// One user by object id or UPN. An unknown user is `MailboxNotFound`.
    pub async fn get_user(&self, id_or_upn: &MailboxId) -> Result<User, GraphError> {
        let url = self.url(
            &["users", crate::api::user_segment(id_or_upn)],
            &[("$select", USER_SELECT)],
        );
        self.fetch_json(&Req::get(Endpoint::GetUser, url, Some(id_or_upn)))
            .await
    }

    /// The mailbox's settings (`userPurpose` tells shared from user mailboxes). Read as
    /// `GET /users/{id}?$select=mailboxSettings`, the form the user resource documents
    /// ("returned only on `$select`, supported on Get user"); it needs MailboxSettings.Read.
    pub async fn mailbox_settings(
        &self,
        mailbox: &MailboxId,
    ) -> Result<MailboxSettings, GraphError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wrapper {
            #[serde(default)]
            mailbox_settings: Option<MailboxSettings>,
        }
        let url = self.url(
            &["users", crate::api::user_segment(mailbox)],
            &[("$select", "mailboxSettings")],
        );
        let wrapper: Wrapper = self
            .fetch_json(&Req::get(Endpoint::MailboxSettings, url, Some(mailbox)))
            .await?;
        Ok(wrapper.mailbox_settings.unwrap_or_default())
    }

    /// Licensed / shared / no mailbox, the way graph-api.md §3.3 describes: the licence from
    /// `assignedPlans` (no request), otherwise `mailboxSettings.userPurpose`, where
    /// `MailboxNotEnabledForRESTAPI` means there is no mailbox.
    pub async fn classify_mailbox(&self, user: &User) -> Result<MailboxKind, GraphError> {
        if exchange_license(&user.assigned_plans) == ExchangeLicense::Licensed {
            return Ok(MailboxKind::Licensed);
        }
        match self.mailbox_settings(&user.mailbox_id()).await {
            Ok(settings) => Ok(kind_from_purpose(settings.user_purpose.as_deref())),
            Err(
                GraphError::MailboxNotEnabled { .. }
                | GraphError::MailboxNotFound { .. }
                | GraphError::NotFound { .. },
            ) => Ok(MailboxKind::NoMailbox),
            Err(GraphError::PermissionDenied { .. }) => Ok(MailboxKind::Unknown),
            Err(e) => Err(e),
        }
    }
}

fn kind_from_purpose(purpose: Option<&str>) -> MailboxKind {
    match purpose.map(str::to_ascii_lowercase).as_deref() {
        Some("shared") => MailboxKind::Shared,
        Some("room") => MailboxKind::Room,
        Some("equipment") => MailboxKind::Equipment,
        Some("user" | "linked") => MailboxKind::Unlicensed,
        _ => MailboxKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(service: &str, status: &str, id: &str) -> AssignedPlan {
        AssignedPlan {
            assigned_date_time: None,
            capability_status: Some(status.into()),
            service: Some(service.into()),
            service_plan_id: Some(id.into()),
        }
    }

    #[test]
    fn licence_from_assigned_plans() {
        assert_eq!(exchange_license(&[]), ExchangeLicense::None);
        // A deleted plan before an enabled one (the old tool's false negative).
        assert_eq!(
            exchange_license(&[
                plan("exchange", "Deleted", EXCHANGE_MAILBOX_PLANS[0]),
                plan("exchange", "Enabled", EXCHANGE_MAILBOX_PLANS[1]),
            ]),
            ExchangeLicense::Licensed
        );
        // Foundation only is not a mailbox licence (the old tool's false positive).
        assert_eq!(
            exchange_license(&[plan("exchange", "Enabled", EXCHANGE_FOUNDATION_PLAN)]),
            ExchangeLicense::FoundationOnly
        );
        assert_eq!(
            exchange_license(&[plan(
                "SharePoint",
                "Enabled",
                "5dbe027f-2339-4123-9542-606e4d348a72"
            )]),
            ExchangeLicense::None
        );
        assert_eq!(
            exchange_license(&[plan("exchange", "Suspended", EXCHANGE_MAILBOX_PLANS[0])]),
            ExchangeLicense::None
        );
    }

    #[test]
    fn user_json_from_the_documentation_parses_and_ignores_unknown_fields() {
        let json = r#"{"@odata.context":"x","value":[{"businessPhones":[],"displayName":"Adele Vance",
            "id":"87d349ed-44d7-43e1-9a83-5f2406dee5bd","mail":"AdeleV@contoso.com",
            "userPrincipalName":"AdeleV@contoso.com","accountEnabled":true,
            "createdDateTime":"2021-03-01T10:00:00Z","futureField":{"a":1},
            "assignedPlans":[{"assignedDateTime":"2022-01-01T00:00:00Z","capabilityStatus":"Enabled",
            "service":"exchange","servicePlanId":"efb87545-963c-4e0d-99df-69c6916d9eb0"}]}],
            "@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=X%27abc%27"}"#;
        let page: crate::api::Page<User> = serde_json::from_str(json).expect("page");
        assert_eq!(page.value.len(), 1);
        let u = &page.value[0];
        assert_eq!(u.address(), "AdeleV@contoso.com");
        assert_eq!(u.account_enabled, Some(true));
        assert_eq!(
            exchange_license(&u.assigned_plans),
            ExchangeLicense::Licensed
        );
        assert!(page.next_link.is_some());
    }

    #[test]
    fn purpose_mapping() {
        assert_eq!(kind_from_purpose(Some("shared")), MailboxKind::Shared);
        assert_eq!(kind_from_purpose(Some("Room")), MailboxKind::Room);
        assert_eq!(kind_from_purpose(Some("user")), MailboxKind::Unlicensed);
        assert_eq!(kind_from_purpose(None), MailboxKind::Unknown);
    }
}
