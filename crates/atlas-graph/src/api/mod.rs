//! Typed Graph operations, grouped by resource. Each submodule adds methods to
//! [`crate::GraphClient`] and defines the wire DTOs it needs (tolerant of unknown fields).

pub mod attachments;
pub mod folders;
pub mod mailbox;
pub mod messages;
pub mod pim;
pub mod reports;
pub mod restore;
pub mod users;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::messages::DeltaLink;
use crate::client::{GraphClient, Req};
use crate::endpoint::Endpoint;
use crate::error::GraphError;
use atlas_core::model::MailboxId;

/// How Graph addresses a mailbox in `/users/{…}`: by its directory object id when known
/// (it survives renames of the address), by its address otherwise. Graph accepts either.
pub(crate) fn user_segment(mailbox: &MailboxId) -> &str {
    mailbox.graph_user_id().unwrap_or(mailbox.address())
}

/// An OData collection page.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// One page of a delta round (graph-api.md §5.2): exactly one of the two links.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct DeltaPageWire<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

impl GraphClient {
    /// Run one delta round from `first` (an initial request or a saved `deltaLink`) to its
    /// `@odata.deltaLink`: every entry of every page in the order given (`@removed` ones
    /// too: the caller's type decides what it keeps) and the link for the next round.
    /// `nextLink`s are followed verbatim and only to the configured Graph host; the
    /// `Prefer` header is sent again with every page (Graph does not carry it over).
    pub(crate) async fn delta_round<T: DeserializeOwned>(
        &self,
        first: Req<'_>,
    ) -> Result<(Vec<T>, DeltaLink), GraphError> {
        let mut out = Vec::new();
        let endpoint: Endpoint = first.endpoint;
        let mailbox: Option<&MailboxId> = first.mailbox;
        let prefer = first.prefer.clone();
        let mut req = first;
        loop {
            let page: DeltaPageWire<T> = self.fetch_json(&req).await?;
            out.extend(page.value);
            match (page.next_link, page.delta_link) {
                (Some(link), _) => {
                    let url = self.check_link(&link, endpoint)?;
                    req = Req::get(endpoint, url, mailbox);
                    req.prefer.clone_from(&prefer);
                }
                (None, Some(link)) => {
                    // Checked like a nextLink: the next run sends its token with it.
                    self.check_link(&link, endpoint)?;
                    return Ok((out, DeltaLink::new(link)));
                }
                (None, None) => {
                    return Err(GraphError::protocol(
                        endpoint,
                        "a delta page had neither a nextLink nor a deltaLink",
                    ));
                }
            }
        }
    }

    /// Follow `@odata.nextLink` verbatim until the collection ends (graph-api.md §13).
    pub(crate) async fn collect_pages<T: DeserializeOwned>(
        &self,
        first: Req<'_>,
    ) -> Result<Vec<T>, GraphError> {
        let mut out = Vec::new();
        let endpoint: Endpoint = first.endpoint;
        let mailbox: Option<&MailboxId> = first.mailbox;
        let prefer = first.prefer.clone();
        let mut req = first;
        loop {
            let page: Page<T> = self.fetch_json(&req).await?;
            out.extend(page.value);
            match page.next_link {
                Some(link) => {
                    let url = self.check_link(&link, endpoint)?;
                    req = Req::get(endpoint, url, mailbox);
                    // Headers are not carried into later pages by Graph: send them again.
                    req.prefer.clone_from(&prefer);
                }
                None => return Ok(out),
            }
        }
    }
}
