//! The Graph v1.0 route table: an axum [`Router`] that names, for every documented path
//! and method, the handler, the application permissions it needs and the counter it is
//! accounted under.
//!
//! Direct requests and the inner requests of a `$batch` are dispatched through the same
//! router ([`dispatch`]), so both run the one pipeline of [`Sim::pipeline`] (faults →
//! token → permission → mailbox → throttling → handler). Handlers are plain functions of
//! a [`Call`] that return a transport-neutral [`Resp`]; the router carries it back in a
//! [`Routed`] extension so `$batch` can embed it as JSON.
//!
//! Graph accepts spellings a path router cannot express, so paths are normalised first
//! ([`normalize`]): OData key syntax (`users('id')` = `users/id`), case-insensitive
//! segment names, `microsoft.graph.`-qualified actions, and nested `childFolders` chains
//! (only the last folder of `mailFolders/a/childFolders/b/…` matters).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path};
use axum::http::{Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower::ServiceExt as _;

use crate::config::roles;
use crate::http::{Req, Resp, decode_segment};
use crate::json::MsgView;
use crate::server::Sim;

/// Which application permissions (app roles) admit a request, and the error otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    /// Any one of these roles is enough; empty means no role is needed.
    pub any_of: &'static [&'static str],
    pub code: &'static str,
    pub message: &'static str,
}

impl Access {
    pub fn check(&self, granted: &[String]) -> Result<(), Resp> {
        let ok = self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|r| granted.iter().any(|g| g.eq_ignore_ascii_case(r)));
        if ok {
            Ok(())
        } else {
            Err(Resp::error(StatusCode::FORBIDDEN, self.code, self.message))
        }
    }
}

const MAIL_DENIED: &str = "Access is denied. Check credentials and try again.";

/// `/users` and `/users/{id}` (graph-api.md §3.1).
pub(crate) const DIRECTORY: Access = Access {
    any_of: &[
        roles::USER_READ_ALL,
        "User.ReadWrite.All",
        roles::DIRECTORY_READ_ALL,
        "Directory.ReadWrite.All",
    ],
    code: "Authorization_RequestDenied",
    message: "Insufficient privileges to complete the operation.",
};

/// Usage reports (graph-api.md §11).
pub(crate) const REPORTS: Access = Access {
    any_of: &[roles::REPORTS_READ_ALL],
    code: "accessDenied",
    message: "Access denied: the application lacks the Reports.Read.All permission.",
};

/// Folder listings, message metadata and delta: `Mail.ReadBasic.All` is enough (§4.1, §5.1).
pub(crate) const MAIL_BASIC: Access = Access {
    any_of: &[
        roles::MAIL_READ_BASIC_ALL,
        roles::MAIL_READ,
        roles::MAIL_READ_WRITE,
    ],
    code: "ErrorAccessDenied",
    message: MAIL_DENIED,
};

/// Message content: MIME and attachments need `Mail.Read` (§6.3, §7).
pub(crate) const MAIL_READ: Access = Access {
    any_of: &[roles::MAIL_READ, roles::MAIL_READ_WRITE],
    code: "ErrorAccessDenied",
    message: MAIL_DENIED,
};

/// Every mail write (§8).
pub(crate) const MAIL_WRITE: Access = Access {
    any_of: &[roles::MAIL_READ_WRITE],
    code: "ErrorAccessDenied",
    message: MAIL_DENIED,
};

const fn denied(any_of: &'static [&'static str]) -> Access {
    Access {
        any_of,
        code: "ErrorAccessDenied",
        message: MAIL_DENIED,
    }
}

/// Calendars (api/user-list-events.md et al.: Calendars.Read / Calendars.ReadWrite).
pub(crate) const CAL_READ: Access = denied(&[roles::CALENDARS_READ, roles::CALENDARS_READ_WRITE]);
pub(crate) const CAL_WRITE: Access = denied(&[roles::CALENDARS_READ_WRITE]);
/// Contacts (api/user-list-contacts.md: Contacts.Read / Contacts.ReadWrite).
pub(crate) const CONTACTS_READ: Access =
    denied(&[roles::CONTACTS_READ, roles::CONTACTS_READ_WRITE]);
pub(crate) const CONTACTS_WRITE: Access = denied(&[roles::CONTACTS_READ_WRITE]);
/// To Do (api/todo-list-lists.md: Tasks.Read.All / Tasks.ReadWrite.All).
pub(crate) const TASKS_READ: Access = denied(&[roles::TASKS_READ_ALL, roles::TASKS_READ_WRITE_ALL]);
pub(crate) const TASKS_WRITE: Access = denied(&[roles::TASKS_READ_WRITE_ALL]);
/// Mailbox settings, inbox rules, master categories (MailboxSettings.Read / .ReadWrite).
pub(crate) const SETTINGS_READ: Access = denied(&[
    roles::MAILBOX_SETTINGS_READ,
    roles::MAILBOX_SETTINGS_READ_WRITE,
]);
pub(crate) const SETTINGS_WRITE: Access = denied(&[roles::MAILBOX_SETTINGS_READ_WRITE]);
/// Mailbox import/export API: folders.
pub(crate) const MBX_FOLDER_READ: Access = denied(&[
    roles::MAILBOX_FOLDER_READ_ALL,
    roles::MAILBOX_FOLDER_READ_WRITE_ALL,
]);
pub(crate) const MBX_FOLDER_WRITE: Access = denied(&[roles::MAILBOX_FOLDER_READ_WRITE_ALL]);
/// Mailbox import/export API: items (list, get, delta, delete).
pub(crate) const MBX_ITEM_READ: Access = denied(&[
    roles::MAILBOX_ITEM_READ_ALL,
    roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL,
]);
pub(crate) const MBX_ITEM_WRITE: Access = denied(&[roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL]);
/// exportItems: MailboxItem.Export.All (least) or MailboxItem.ImportExport.All.
pub(crate) const MBX_EXPORT: Access = denied(&[
    roles::MAILBOX_ITEM_EXPORT_ALL,
    roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL,
]);
/// createImportSession: MailboxItem.ImportExport.All.
pub(crate) const MBX_IMPORT: Access = denied(&[roles::MAILBOX_ITEM_IMPORT_EXPORT_ALL]);

/// What an endpoint needs before its handler runs, and the counter it is accounted under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    /// Request-accounting kind (see [`crate::RequestCounters`]).
    pub kind: &'static str,
    pub access: Access,
    /// Whether the path's `{user}` names a mailbox: checked for existence and throttled
    /// per mailbox (graph-api.md §9.1).
    pub mailbox: bool,
}

const fn ep(kind: &'static str, access: Access) -> Endpoint {
    Endpoint {
        kind,
        access,
        mailbox: true,
    }
}

const fn directory(kind: &'static str, access: Access) -> Endpoint {
    Endpoint {
        kind,
        access,
        mailbox: false,
    }
}

/// One routed request as a handler sees it.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub sim: &'a Arc<Sim>,
    pub req: &'a Req,
    pub view: MsgView,
    params: &'a BTreeMap<String, String>,
}

impl<'a> Call<'a> {
    pub fn new(
        sim: &'a Arc<Sim>,
        req: &'a Req,
        view: MsgView,
        params: &'a BTreeMap<String, String>,
    ) -> Self {
        Self {
            sim,
            req,
            view,
            params,
        }
    }

    /// A path parameter by its name in the route table (decoded).
    pub fn p(&self, name: &str) -> &str {
        debug_assert!(self.params.contains_key(name), "no path parameter {name}");
        self.params.get(name).map_or("", String::as_str)
    }

    /// The `{user}` segment.
    pub fn user(&self) -> &str {
        self.p("user")
    }
}

/// A handler: synchronous, because every handler works on the tenant under its lock.
pub(crate) type Handler = fn(&Call) -> Resp;

/// The request a routed handler serves, carried through the router as an extension.
#[derive(Debug, Clone)]
struct Dispatch {
    sim: Arc<Sim>,
    req: Arc<Req>,
}

/// What the router hands back: the handler's response and the accounting kind.
#[derive(Debug, Clone)]
pub(crate) struct Routed {
    pub resp: Resp,
    pub kind: &'static str,
}

impl IntoResponse for Routed {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::empty());
        r.extensions_mut().insert(self);
        r
    }
}

fn handle(filter: MethodFilter, e: Endpoint, h: Handler) -> MethodRouter {
    on(
        filter,
        move |Extension(d): Extension<Dispatch>, params: Option<Path<BTreeMap<String, String>>>| async move {
            let params = params.map(|Path(p)| p).unwrap_or_default();
            let resp = d.sim.pipeline(e, &d.req, &params, h).await;
            Routed { resp, kind: e.kind }
        },
    )
}

fn get(e: Endpoint, h: Handler) -> MethodRouter {
    handle(MethodFilter::GET, e, h)
}
fn post(e: Endpoint, h: Handler) -> MethodRouter {
    handle(MethodFilter::POST, e, h)
}
fn patch(e: Endpoint, h: Handler) -> MethodRouter {
    handle(MethodFilter::PATCH, e, h)
}
fn delete(e: Endpoint, h: Handler) -> MethodRouter {
    handle(MethodFilter::DELETE, e, h)
}

/// Errors for paths Graph rejects before any mailbox work (no faults, no token check).
fn fixed(resp: fn() -> Resp) -> MethodRouter {
    axum::routing::any(move || async move {
        Routed {
            resp: resp(),
            kind: "other",
        }
    })
}

/// The route table. Paths are normalised (see [`normalize`]) before they get here.
fn graph_router() -> Router {
    let users = directory("users", DIRECTORY);
    let folders = ep("folders", MAIL_BASIC);
    let create_folder = ep("create_folder", MAIL_WRITE);
    let messages = ep("messages", MAIL_BASIC);
    let create_message = ep("create_message", MAIL_WRITE);
    let message = ep("message", MAIL_BASIC);
    let update_message = ep("update_message", MAIL_WRITE);
    let attachments = ep("attachments", MAIL_READ);
    let create_attachment = ep("create_attachment", MAIL_WRITE);
    Router::new()
        .route("/me", fixed(me_error))
        .route("/me/{*rest}", fixed(me_error))
        .route("/users", get(users, |c| c.sim.list_users(c.req)))
        .route(
            "/users/{user}",
            get(users, |c| c.sim.get_user(c.req, c.user())),
        )
        .route(
            "/users/{user}/mailFolders",
            get(folders, |c| c.sim.list_folders(c.req, c.user(), None))
                .merge(post(create_folder, |c| {
                    c.sim.create_folder(c.req, c.user(), None)
                })),
        )
        .route(
            "/users/{user}/mailFolders/delta",
            get(ep("folder_delta", MAIL_BASIC), |c| {
                c.sim.folder_delta(c.req, c.user())
            }),
        )
        .route(
            "/users/{user}/mailFolders/{folder}",
            get(folders, |c| c.sim.get_folder(c.user(), c.p("folder")))
                .merge(delete(create_folder, |c| {
                    c.sim.delete_folder_req(c.user(), c.p("folder"))
                })),
        )
        .route(
            "/users/{user}/mailFolders/{folder}/childFolders",
            get(folders, |c| {
                c.sim.list_folders(c.req, c.user(), Some(c.p("folder")))
            })
            .merge(post(create_folder, |c| {
                c.sim.create_folder(c.req, c.user(), Some(c.p("folder")))
            })),
        )
        .route(
            "/users/{user}/mailFolders/{folder}/messages",
            get(messages, |c| {
                c.sim
                    .list_messages(c.req, c.user(), Some(c.p("folder")), c.view)
            })
            .merge(post(create_message, |c| {
                c.sim
                    .create_message(c.req, c.user(), Some(c.p("folder")), c.view)
            })),
        )
        .route(
            "/users/{user}/mailFolders/{folder}/messages/delta",
            get(ep("delta", MAIL_BASIC), |c| {
                c.sim.delta(c.req, c.user(), c.p("folder"), c.view)
            }),
        )
        .route(
            "/users/{user}/messages",
            get(messages, |c| {
                c.sim.list_messages(c.req, c.user(), None, c.view)
            })
            .merge(post(create_message, |c| {
                c.sim.create_message(c.req, c.user(), None, c.view)
            })),
        )
        .route("/users/{user}/messages/delta", fixed(delta_needs_folder))
        .route(
            "/users/{user}/messages/{msg}",
            get(message, |c| {
                c.sim.get_message(c.req, c.user(), c.p("msg"), c.view)
            })
            .merge(patch(update_message, |c| {
                c.sim.patch_message(c.req, c.user(), c.p("msg"), c.view)
            }))
            .merge(delete(update_message, |c| {
                c.sim.delete_message_req(c.user(), c.p("msg"))
            })),
        )
        .route(
            "/users/{user}/messages/{msg}/$value",
            get(ep("mime", MAIL_READ), |c| {
                c.sim.get_mime(c.user(), c.p("msg"))
            }),
        )
        .route(
            "/users/{user}/messages/{msg}/move",
            post(update_message, |c| {
                c.sim.move_message_req(c.req, c.user(), c.p("msg"), c.view)
            }),
        )
        .route(
            "/users/{user}/messages/{msg}/attachments",
            get(attachments, |c| {
                c.sim.list_attachments(c.req, c.user(), c.p("msg"))
            })
            .merge(post(create_attachment, |c| {
                c.sim.create_attachment(c.req, c.user(), c.p("msg"))
            })),
        )
        .route(
            "/users/{user}/messages/{msg}/attachments/createUploadSession",
            post(ep("upload_session", MAIL_WRITE), |c| {
                c.sim.create_upload_session(c.req, c.user(), c.p("msg"))
            }),
        )
        .route(
            "/users/{user}/messages/{msg}/attachments/{att}",
            get(attachments, |c| {
                c.sim
                    .get_attachment(c.req, c.user(), c.p("msg"), c.p("att"))
            }),
        )
        .route(
            "/users/{user}/messages/{msg}/attachments/{att}/$value",
            get(ep("attachment_value", MAIL_READ), |c| {
                c.sim.get_attachment_value(c.user(), c.p("msg"), c.p("att"))
            }),
        )
        .merge(pim_routes())
        .merge(mailbox_api_routes())
        .route(
            "/reports/{call}",
            get(directory("reports", REPORTS), |c| c.sim.report(c.p("call"))),
        )
        .fallback(unknown_segment)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Calendars, contacts, To Do, mailbox settings, inbox rules and master categories.
fn pim_routes() -> Router {
    let cal = ep("calendars", CAL_READ);
    let events = ep("events", CAL_READ);
    let write_events = ep("write_events", CAL_WRITE);
    let contacts = ep("contacts", CONTACTS_READ);
    let write_contacts = ep("write_contacts", CONTACTS_WRITE);
    let todo = ep("todo", TASKS_READ);
    let write_todo = ep("write_todo", TASKS_WRITE);
    let settings = ep("mailbox_settings", SETTINGS_READ);
    let write_settings = ep("write_mailbox_settings", SETTINGS_WRITE);
    Router::new()
        .route(
            "/users/{user}/calendars",
            get(cal, |c| c.sim.list_calendars(c.req, c.user())),
        )
        .route(
            "/users/{user}/calendar",
            get(cal, |c| c.sim.get_calendar(c.req, c.user(), None)),
        )
        .route(
            "/users/{user}/calendars/{cal}",
            get(cal, |c| {
                c.sim.get_calendar(c.req, c.user(), Some(c.p("cal")))
            }),
        )
        .route(
            "/users/{user}/calendars/{cal}/events",
            get(events, |c| {
                c.sim.list_events(c.req, c.user(), Some(c.p("cal")), false)
            })
            .merge(post(write_events, |c| {
                c.sim.create_event(c.req, c.user(), Some(c.p("cal")))
            })),
        )
        .route(
            "/users/{user}/calendar/events",
            get(events, |c| c.sim.list_events(c.req, c.user(), None, false))
                .merge(post(write_events, |c| {
                    c.sim.create_event(c.req, c.user(), None)
                })),
        )
        .route(
            "/users/{user}/events",
            get(events, |c| c.sim.list_events(c.req, c.user(), None, true))
                .merge(post(write_events, |c| {
                    c.sim.create_event(c.req, c.user(), None)
                })),
        )
        .route(
            "/users/{user}/events/{event}",
            get(events, |c| c.sim.get_event(c.req, c.user(), c.p("event")))
                .merge(patch(write_events, |c| {
                    c.sim.update_event(c.req, c.user(), c.p("event"))
                }))
                .merge(delete(write_events, |c| {
                    c.sim.delete_event(c.user(), c.p("event"))
                })),
        )
        .route(
            "/users/{user}/events/{event}/instances",
            get(events, |c| {
                c.sim.event_instances(c.req, c.user(), c.p("event"))
            }),
        )
        .route(
            "/users/{user}/events/{event}/attachments",
            get(events, |c| {
                c.sim.list_item_attachments(c.req, c.user(), c.p("event"))
            })
            .merge(post(write_events, |c| {
                c.sim.add_item_attachment(c.req, c.user(), c.p("event"))
            })),
        )
        .route(
            "/users/{user}/events/{event}/attachments/{att}",
            get(events, |c| {
                c.sim
                    .get_item_attachment(c.req, c.user(), c.p("event"), c.p("att"), false)
            }),
        )
        .route(
            "/users/{user}/events/{event}/attachments/{att}/$value",
            get(events, |c| {
                c.sim
                    .get_item_attachment(c.req, c.user(), c.p("event"), c.p("att"), true)
            }),
        )
        .route(
            "/users/{user}/contactFolders",
            get(contacts, |c| {
                c.sim.list_contact_folders(c.req, c.user(), None)
            })
            .merge(post(write_contacts, |c| {
                c.sim
                    .create_pim_folder(c.req, c.user(), None, crate::model::class::CONTACTS)
            })),
        )
        .route(
            "/users/{user}/contactFolders/{folder}",
            get(contacts, |c| {
                c.sim.get_contact_folder(c.req, c.user(), c.p("folder"))
            }),
        )
        .route(
            "/users/{user}/contactFolders/{folder}/childFolders",
            get(contacts, |c| {
                c.sim
                    .list_contact_folders(c.req, c.user(), Some(c.p("folder")))
            })
            .merge(post(write_contacts, |c| {
                c.sim.create_pim_folder(
                    c.req,
                    c.user(),
                    Some(c.p("folder")),
                    crate::model::class::CONTACTS,
                )
            })),
        )
        .route(
            "/users/{user}/contactFolders/{folder}/contacts",
            get(contacts, |c| {
                c.sim.list_contacts(c.req, c.user(), Some(c.p("folder")))
            })
            .merge(post(write_contacts, |c| {
                c.sim.create_contact(c.req, c.user(), Some(c.p("folder")))
            })),
        )
        .route(
            "/users/{user}/contacts",
            get(contacts, |c| c.sim.list_contacts(c.req, c.user(), None))
                .merge(post(write_contacts, |c| {
                    c.sim.create_contact(c.req, c.user(), None)
                })),
        )
        .route(
            "/users/{user}/contacts/{contact}",
            get(contacts, |c| {
                c.sim.get_contact(c.req, c.user(), c.p("contact"))
            })
            .merge(patch(write_contacts, |c| {
                c.sim.update_item(
                    c.req,
                    c.user(),
                    c.p("contact"),
                    crate::items::item_class::CONTACT,
                )
            }))
            .merge(delete(write_contacts, |c| {
                c.sim
                    .delete_item(c.user(), c.p("contact"), crate::items::item_class::CONTACT)
            })),
        )
        .route(
            "/users/{user}/contacts/{contact}/photo",
            get(contacts, |c| {
                c.sim.get_contact_photo(c.user(), c.p("contact"), false)
            }),
        )
        .route(
            "/users/{user}/contacts/{contact}/photo/$value",
            get(contacts, |c| {
                c.sim.get_contact_photo(c.user(), c.p("contact"), true)
            })
            .merge(handle(MethodFilter::PUT, write_contacts, |c| {
                c.sim.put_contact_photo(c.req, c.user(), c.p("contact"))
            })),
        )
        .route(
            "/users/{user}/todo/lists",
            get(todo, |c| c.sim.list_todo_lists(c.req, c.user())).merge(post(write_todo, |c| {
                c.sim
                    .create_pim_folder(c.req, c.user(), None, crate::model::class::TASKS)
            })),
        )
        .route(
            "/users/{user}/todo/lists/{list}",
            get(todo, |c| c.sim.get_todo_list(c.req, c.user(), c.p("list"))),
        )
        .route(
            "/users/{user}/todo/lists/{list}/tasks",
            get(todo, |c| c.sim.list_tasks(c.req, c.user(), c.p("list")))
                .merge(post(write_todo, |c| {
                    c.sim.create_task(c.req, c.user(), c.p("list"))
                })),
        )
        .route(
            "/users/{user}/todo/lists/{list}/tasks/{task}",
            get(todo, |c| c.sim.get_task(c.req, c.user(), c.p("task")))
                .merge(patch(write_todo, |c| {
                    c.sim
                        .update_item(c.req, c.user(), c.p("task"), crate::items::item_class::TASK)
                }))
                .merge(delete(write_todo, |c| {
                    c.sim
                        .delete_item(c.user(), c.p("task"), crate::items::item_class::TASK)
                })),
        )
        .route(
            "/users/{user}/mailboxSettings",
            get(settings, |c| c.sim.get_mailbox_settings(c.user(), None))
                .merge(patch(write_settings, |c| {
                    c.sim.update_mailbox_settings(c.req, c.user())
                })),
        )
        .route(
            "/users/{user}/mailboxSettings/{setting}",
            get(settings, |c| {
                c.sim.get_mailbox_settings(c.user(), Some(c.p("setting")))
            }),
        )
        .route(
            "/users/{user}/mailFolders/{folder}/messageRules",
            get(settings, |c| {
                c.sim.list_rules(c.req, c.user(), c.p("folder"))
            })
            .merge(post(write_settings, |c| {
                c.sim.write_rule(c.req, c.user(), c.p("folder"), None)
            })),
        )
        .route(
            "/users/{user}/mailFolders/{folder}/messageRules/{rule}",
            get(settings, |c| {
                c.sim.get_rule(c.req, c.user(), c.p("folder"), c.p("rule"))
            })
            .merge(patch(write_settings, |c| {
                c.sim
                    .write_rule(c.req, c.user(), c.p("folder"), Some(c.p("rule")))
            }))
            .merge(delete(write_settings, |c| {
                c.sim.delete_rule(c.user(), c.p("folder"), c.p("rule"))
            })),
        )
        .route(
            "/users/{user}/outlook/masterCategories",
            get(settings, |c| c.sim.list_categories(c.req, c.user()))
                .merge(post(write_settings, |c| {
                    c.sim.write_category(c.req, c.user(), None)
                })),
        )
        .route(
            "/users/{user}/outlook/masterCategories/{category}",
            get(settings, |c| {
                c.sim.get_category(c.req, c.user(), c.p("category"))
            })
            .merge(patch(write_settings, |c| {
                c.sim.write_category(c.req, c.user(), Some(c.p("category")))
            }))
            .merge(delete(write_settings, |c| {
                c.sim.delete_category(c.user(), c.p("category"))
            })),
        )
}

/// The mailbox import and export API (see [`crate::mailbox_api`]).
fn mailbox_api_routes() -> Router {
    let folders = ep("mailbox_folders", MBX_FOLDER_READ);
    let write_folders = ep("write_mailbox_folders", MBX_FOLDER_WRITE);
    let items = ep("mailbox_items", MBX_ITEM_READ);
    let root = "/admin/exchange/mailboxes/{mailbox}";
    Router::new()
        .route(
            "/users/{user}/settings/exchange",
            get(ep("exchange_settings", DIRECTORY), |c| {
                c.sim.exchange_settings(c.user())
            }),
        )
        .route(
            &format!("{root}/folders"),
            get(folders, |c| {
                c.sim.mbx_list_folders(c.req, c.p("mailbox"), None)
            })
            .merge(post(write_folders, |c| {
                c.sim.mbx_create_folder(c.req, c.p("mailbox"), None)
            })),
        )
        .route(
            &format!("{root}/folders/delta"),
            get(ep("mailbox_folder_delta", MBX_FOLDER_READ), |c| {
                c.sim.mbx_folder_delta(c.req, c.p("mailbox"), None)
            }),
        )
        .route(
            &format!("{root}/folders/{{folder}}"),
            get(folders, |c| {
                c.sim.mbx_get_folder(c.req, c.p("mailbox"), c.p("folder"))
            })
            .merge(patch(write_folders, |c| {
                c.sim
                    .mbx_update_folder(c.req, c.p("mailbox"), c.p("folder"))
            }))
            .merge(delete(write_folders, |c| {
                c.sim.mbx_delete_folder(c.p("mailbox"), c.p("folder"))
            })),
        )
        .route(
            &format!("{root}/folders/{{folder}}/childFolders"),
            get(folders, |c| {
                c.sim
                    .mbx_list_folders(c.req, c.p("mailbox"), Some(c.p("folder")))
            })
            .merge(post(write_folders, |c| {
                c.sim
                    .mbx_create_folder(c.req, c.p("mailbox"), Some(c.p("folder")))
            })),
        )
        .route(
            &format!("{root}/folders/{{folder}}/childFolders/delta"),
            get(ep("mailbox_folder_delta", MBX_FOLDER_READ), |c| {
                c.sim
                    .mbx_folder_delta(c.req, c.p("mailbox"), Some(c.p("folder")))
            }),
        )
        .route(
            &format!("{root}/folders/{{folder}}/items"),
            get(items, |c| {
                c.sim.mbx_list_items(c.req, c.p("mailbox"), c.p("folder"))
            }),
        )
        .route(
            &format!("{root}/folders/{{folder}}/items/delta"),
            get(ep("mailbox_item_delta", MBX_ITEM_READ), |c| {
                c.sim.mbx_item_delta(c.req, c.p("mailbox"), c.p("folder"))
            }),
        )
        .route(
            &format!("{root}/folders/{{folder}}/items/{{item}}"),
            get(items, |c| {
                c.sim
                    .mbx_get_item(c.req, c.p("mailbox"), c.p("folder"), c.p("item"))
            })
            .merge(delete(ep("write_mailbox_items", MBX_ITEM_WRITE), |c| {
                c.sim
                    .mbx_delete_item(c.p("mailbox"), c.p("folder"), c.p("item"))
            })),
        )
        .route(
            &format!("{root}/exportItems"),
            post(ep("export_items", MBX_EXPORT), |c| {
                c.sim.mbx_export(c.req, c.p("mailbox"))
            }),
        )
        .route(
            &format!("{root}/createImportSession"),
            post(ep("create_import_session", MBX_IMPORT), |c| {
                c.sim.mbx_create_import_session(c.p("mailbox"))
            }),
        )
}

/// Built once: the table is the same for every simulator (the simulator travels with the
/// request, not in router state).
static GRAPH: LazyLock<Router> = LazyLock::new(graph_router);

/// Runs one Graph request (path below `/v1.0`) through the route table; returns the
/// response and its accounting kind.
pub(crate) async fn dispatch(sim: &Arc<Sim>, req: Req) -> (Resp, &'static str) {
    let path = normalize(&req.path);
    let uri = path
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let mut http = Request::new(Body::empty());
    *http.method_mut() = req.method.clone();
    *http.uri_mut() = uri;
    http.extensions_mut().insert(Dispatch {
        sim: sim.clone(),
        req: Arc::new(req),
    });
    let routed = match GRAPH.clone().oneshot(http).await {
        Ok(r) => r.extensions().get::<Routed>().cloned(),
        Err(never) => match never {},
    };
    match routed {
        Some(r) => (r.resp, r.kind),
        // Only an extractor rejection (a path parameter that is not UTF-8) gets here.
        None => (
            Resp::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The request URL is not valid.",
            ),
            "other",
        ),
    }
}

fn me_error() -> Resp {
    Resp::error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "/me request is only valid with delegated authentication flow.",
    )
}

fn delta_needs_folder() -> Resp {
    Resp::error(
        StatusCode::BAD_REQUEST,
        "ErrorInvalidRequest",
        "Delta sync is only supported on a mail folder's messages.",
    )
}

async fn unknown_segment(uri: Uri) -> Routed {
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let seg = first_unknown(&segs).unwrap_or("v1.0").to_owned();
    Routed {
        resp: Resp::error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{seg}'."),
        ),
        kind: "other",
    }
}

async fn method_not_allowed(method: Method) -> Routed {
    Routed {
        resp: Resp::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            &format!("The HTTP method '{method}' is not supported for this resource."),
        ),
        kind: "other",
    }
}

/// Segment names of the route table, in their canonical spelling.
const NAMES: &[&str] = &[
    "users",
    "me",
    "reports",
    "mailFolders",
    "childFolders",
    "messages",
    "delta",
    "move",
    "attachments",
    "createUploadSession",
    "calendars",
    "calendar",
    "events",
    "instances",
    "contactFolders",
    "contacts",
    "photo",
    "todo",
    "lists",
    "tasks",
    "mailboxSettings",
    "messageRules",
    "outlook",
    "masterCategories",
    "settings",
    "exchange",
    "admin",
    "mailboxes",
    "folders",
    "items",
    "exportItems",
    "createImportSession",
];

/// Names followed by an id in a path (`users/{id}`, `messages/{id}`, …).
const TAKES_ID: &[&str] = &[
    "users",
    "mailFolders",
    "childFolders",
    "messages",
    "attachments",
    "calendars",
    "events",
    "contactFolders",
    "contacts",
    "lists",
    "tasks",
    "messageRules",
    "masterCategories",
    "mailboxes",
    "folders",
    "items",
    "mailboxSettings",
];

fn canonical(seg: &str) -> Option<&'static str> {
    let bare = seg.strip_prefix("microsoft.graph.").unwrap_or(seg);
    NAMES.iter().copied().find(|n| n.eq_ignore_ascii_case(bare))
}

/// The first segment a path router would not know: used to name it in the 400.
fn first_unknown(segs: &[String]) -> Option<&str> {
    let mut i = 0;
    while i < segs.len() {
        let s = segs[i].as_str();
        match canonical(s) {
            None if s == "$value" => i += 1,
            None => return Some(s),
            Some(name) => i += if TAKES_ID.contains(&name) { 2 } else { 1 },
        }
    }
    segs.last().map(String::as_str)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Rewrites a Graph path (below `/v1.0`, percent-encoded) into the route table's spelling.
pub(crate) fn normalize(path: &str) -> String {
    let mut segs: Vec<String> = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = decode_segment(raw);
        if let Some(open) = decoded.find("('")
            && decoded.ends_with("')")
            && !decoded[..open].contains('=')
        {
            let name = &decoded[..open];
            segs.push(canonical(name).map_or_else(|| encode_segment(name), str::to_owned));
            let id = decoded[open + 2..decoded.len() - 2].replace("''", "'");
            segs.push(encode_segment(&id));
        } else if let Some(name) = canonical(&decoded) {
            segs.push(name.to_owned());
        } else {
            segs.push(raw.to_owned());
        }
    }
    collapse(&mut segs);
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Folds nested folder chains and folder-scoped item paths to the form the table lists:
/// `mailFolders/a/childFolders/b/…` → `mailFolders/b/…` (ids are unique in a mailbox) and
/// `mailFolders/f/messages/{id}/…` → `messages/{id}/…` (an item is addressed by its id).
fn collapse(segs: &mut Vec<String>) {
    let mut i = 2;
    while i + 1 < segs.len() {
        let container = segs[i - 2].as_str();
        if segs[i] == "childFolders"
            && matches!(container, "mailFolders" | "contactFolders" | "folders")
            && segs[i + 1] != "delta"
        {
            segs.drain(i - 1..=i);
            i = 2;
            continue;
        }
        i += 1;
    }
    // An item is addressed by its id, whichever folder or calendar the path names.
    for (container, kind) in [
        ("mailFolders", "messages"),
        ("contactFolders", "contacts"),
        ("calendars", "events"),
    ] {
        if let Some(p) = segs.iter().position(|s| s == container)
            && segs.get(p + 2).is_some_and(|s| s == kind)
            && segs.get(p + 3).is_some_and(|s| s != "delta")
        {
            segs.drain(p..p + 2);
        }
    }
    if let Some(p) = segs.iter().position(|s| s == "calendar")
        && segs.get(p + 1).is_some_and(|s| s == "events")
        && segs.get(p + 2).is_some()
    {
        segs.remove(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_keys_case_and_qualified_actions_normalise() {
        assert_eq!(
            normalize("/users('a%40b.com')/MailFolders('inbox')/messages/delta"),
            "/users/a%40b.com/mailFolders/inbox/messages/delta"
        );
        assert_eq!(
            normalize("/users/u/messages/m/microsoft.graph.move"),
            "/users/u/messages/m/move"
        );
        assert_eq!(
            normalize("/users/u/mailFolders/a/childFolders/b/childFolders/c/messages"),
            "/users/u/mailFolders/c/messages"
        );
        assert_eq!(
            normalize("/users/u/mailFolders/a/childFolders"),
            "/users/u/mailFolders/a/childFolders"
        );
        assert_eq!(
            normalize("/users/u/mailFolders/f/messages/m/$value"),
            "/users/u/messages/m/$value"
        );
        assert_eq!(normalize(""), "/");
    }

    #[test]
    fn items_are_addressed_by_id_whatever_container_the_path_names() {
        assert_eq!(
            normalize("/users/u/calendars/c/events/e/instances"),
            "/users/u/events/e/instances"
        );
        assert_eq!(normalize("/users/u/calendar/events/e"), "/users/u/events/e");
        assert_eq!(
            normalize("/users/u/calendar/events"),
            "/users/u/calendar/events"
        );
        assert_eq!(
            normalize("/users/u/contactFolders/a/childFolders/b/contacts/c/photo/$value"),
            "/users/u/contacts/c/photo/$value"
        );
        assert_eq!(
            normalize("/admin/exchange/mailboxes('MBX:a@b')/folders/x/childFolders/y/items"),
            "/admin/exchange/mailboxes/MBX%3Aa%40b/folders/y/items"
        );
        assert_eq!(
            normalize("/admin/exchange/mailboxes/m/folders/x/childFolders/delta"),
            "/admin/exchange/mailboxes/m/folders/x/childFolders/delta"
        );
    }

    #[test]
    fn odata_key_ids_are_reencoded_so_slashes_stay_one_segment() {
        assert_eq!(normalize("/users('a%2Fb')"), "/users/a%2Fb");
        assert_eq!(normalize("/users('o''brien')"), "/users/o%27brien");
    }
}
