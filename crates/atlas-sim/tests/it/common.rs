use atlas_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

pub struct Ctx {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn start(cfg: SimConfig) -> Ctx {
    let sim = Simulator::start(cfg).await.expect("start simulator");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let token = fetch_token(&http, &sim).await;
    Ctx { sim, http, token }
}

pub async fn small() -> Ctx {
    start(SimConfig::with_size(7, 4, 30)).await
}

pub async fn fetch_token(http: &reqwest::Client, sim: &SimHandle) -> String {
    let resp = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.base_url(),
            sim.tenant_id()
        ))
        .form(&[
            ("client_id", sim.client_id().as_str()),
            ("client_secret", sim.client_secret().as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("token json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

impl Ctx {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1.0{path}", self.sim.base_url())
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self.http.get(self.url(path)).bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// A user with a regular licensed mailbox.
    pub fn mailbox_user(&self) -> String {
        self.sim
            .users()
            .into_iter()
            .find(|u| u.kind == "user")
            .expect("a licensed user")
            .id
    }
}

/// Asserts the documented Graph error shape and returns the code.
pub async fn error_code(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("request-id"));
    let v: Value = resp.json().await.expect("error json");
    let code = v["error"]["code"].as_str().expect("error.code").to_owned();
    assert!(v["error"]["message"].is_string(), "error.message: {v}");
    (status, code, v)
}
