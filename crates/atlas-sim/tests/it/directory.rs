use serde_json::Value;

use crate::common::{self, error_code};

#[tokio::test]
async fn users_default_properties_select_paging_and_filter() {
    let ctx = common::small().await;
    let v = ctx.get_json("/users").await;
    let first = &v["value"][0];
    assert!(first["userPrincipalName"].is_string() && first["id"].is_string());
    assert!(
        first.get("accountEnabled").is_none(),
        "not a default property"
    );

    let mut url = "/users?$select=id,accountEnabled,assignedPlans&$top=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let page = ctx.get_json(&url).await;
        for u in page["value"].as_array().expect("value") {
            assert!(u.get("accountEnabled").is_some() && u.get("displayName").is_none());
            seen.push(u["id"].as_str().expect("id").to_owned());
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => next.clone_into(&mut url),
            None => break,
        }
    }
    assert_eq!(seen.len(), ctx.sim.users().len());

    let disabled = ctx
        .get_json("/users?$filter=accountEnabled eq false&$select=id,userPrincipalName")
        .await;
    assert!(!disabled["value"].as_array().expect("value").is_empty());
    let (s, code, _) = error_code(ctx.get("/users?$top=1000").await).await;
    assert_eq!((s, code.as_str()), (400, "Request_BadRequest"));
}

#[tokio::test]
async fn unknown_user_and_user_without_mailbox() {
    let ctx = common::small().await;
    let (s, code, _) = error_code(ctx.get("/users/nobody@contoso.onmicrosoft.com").await).await;
    assert_eq!((s, code.as_str()), (404, "Request_ResourceNotFound"));
    let users = ctx.sim.users();
    let upn = &users.iter().find(|u| u.kind == "user").expect("user").upn;
    let v: Value = ctx.get_json(&format!("/users/{upn}")).await;
    assert_eq!(v["userPrincipalName"].as_str(), Some(upn.as_str()));
    for kind in ["unlicensed", "no_mailbox"] {
        let u = users.iter().find(|u| u.kind == kind).expect(kind);
        let (s, code, _) = error_code(ctx.get(&format!("/users/{}/mailFolders", u.id)).await).await;
        assert_eq!((s, code.as_str()), (404, "MailboxNotEnabledForRESTAPI"));
    }
    let shared = users.iter().find(|u| u.kind == "shared").expect("shared");
    let v = ctx
        .get_json(&format!("/users/{}?$select=assignedLicenses", shared.id))
        .await;
    assert_eq!(v["assignedLicenses"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        ctx.get(&format!("/users/{}/mailFolders", shared.id))
            .await
            .status(),
        200
    );
}
