//! Path spellings Graph accepts (graph-api.md §2, OData conventions) and the errors for
//! paths and methods it does not serve.

use serde_json::json;

use crate::common::{self, error_code};

#[tokio::test]
async fn odata_key_syntax_and_segment_case_address_the_same_resources() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let plain = ctx
        .get_json(&format!("/users/{u}/mailFolders/inbox/messages?$top=3"))
        .await;
    let keyed = ctx
        .get_json(&format!(
            "/users('{u}')/MailFolders('inbox')/Messages?$top=3"
        ))
        .await;
    assert_eq!(plain["value"], keyed["value"]);
    let id = plain["value"][0]["id"].as_str().expect("id");
    // A message is addressed by its id, with or without its folder in the path.
    let direct = ctx.get_json(&format!("/users/{u}/messages/{id}")).await;
    let in_folder = ctx
        .get_json(&format!("/users/{u}/mailFolders/inbox/messages/{id}"))
        .await;
    assert_eq!(direct["id"], in_folder["id"]);
    // Qualified action names are the same action.
    let batch = json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/users('{u}')/mailFolders('inbox')")},
    ]});
    let r = ctx.post_json("/$batch", &batch).await;
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["responses"][0]["status"], 200, "{v}");
    assert_eq!(v["responses"][0]["body"]["displayName"], "Inbox");
}

#[tokio::test]
async fn unknown_segments_name_the_segment_and_wrong_methods_get_405() {
    let ctx = common::small().await;
    let u = ctx.mailbox_user();
    let (s, code, v) = error_code(ctx.get(&format!("/users/{u}/calendarz/events")).await).await;
    assert_eq!((s, code.as_str()), (400, "BadRequest"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'calendarz'")),
        "{v}"
    );
    let r = ctx
        .http
        .put(ctx.url(&format!("/users/{u}/messages")))
        .bearer_auth(&ctx.token)
        .body("{}")
        .send()
        .await
        .expect("PUT");
    let (s, _, _) = error_code(r).await;
    assert_eq!(s, 405);
    let (s, code, _) = error_code(ctx.get("/me/messages").await).await;
    assert_eq!((s, code.as_str()), (400, "BadRequest"));
    let (s, code, _) = error_code(ctx.get(&format!("/users/{u}/messages/delta")).await).await;
    assert_eq!((s, code.as_str()), (400, "ErrorInvalidRequest"));
}
