//! The simulated tenant in a child process (`atlas-bench sim-child`), driven over its
//! admin API, so the simulator's CPU and memory are measured apart from Atlas's.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atlas_graph::{Credential, GraphClient, GraphConfig, RetryPolicy};
use atlas_sim::{
    FaultConfig, MailboxDump, MessageUpdate, NewMessage, RequestCounters, SimConfig, UserInfo,
};
use serde::Deserialize;

use crate::error::BenchError;

const READY: &str = "ATLAS-BENCH-SIM-READY ";

/// Entry point of the child: reads a `SimConfig` (JSON) from the first line of stdin,
/// serves it, prints the ready line, and exits when stdin closes (the parent ended or
/// dropped its handle), so no simulator outlives a benchmark.
pub fn child_main() -> Result<(), BenchError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| BenchError::io("stdin", e))?;
    let config: SimConfig = serde_json::from_str(&line)
        .map_err(|e| BenchError::Simulator(format!("bad config on stdin: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("tokio runtime", e))?;
    rt.block_on(async move {
        let handle = atlas_sim::Simulator::start(config)
            .await
            .map_err(|e| BenchError::Simulator(e.to_string()))?;
        println!("{READY}{}", handle.base_url());
        std::io::stdout()
            .flush()
            .map_err(|e| BenchError::io("stdout", e))?;
        // Blocks until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
        })
        .await
        .map_err(|e| BenchError::Simulator(e.to_string()))?;
        handle.shutdown();
        Ok(())
    })
}

#[derive(Deserialize)]
struct Info {
    tenant_id: String,
    client_id: String,
    client_secret: String,
}

/// A running simulator child and an HTTP client for its admin API.
#[derive(Debug)]
pub struct SimProcess {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl SimProcess {
    /// Starts a child simulator with `config` and waits until it serves (tenant generated).
    pub fn spawn(config: &SimConfig) -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
        let mut child = Command::new(exe)
            .arg("sim-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| BenchError::io("spawn simulator child", e))?;
        let json =
            serde_json::to_string(config).map_err(|e| BenchError::Simulator(e.to_string()))?;
        let stdin = child
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Simulator("child has no stdin".into()))?;
        writeln!(stdin, "{json}").map_err(|e| BenchError::io("child stdin", e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Simulator("child has no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| BenchError::io("child stdout", e))?;
        let Some(base) = line.trim().strip_prefix(READY) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Simulator(format!(
                "child did not start: {:?}",
                line.trim()
            )));
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| BenchError::Simulator(e.to_string()))?;
        Ok(Self {
            base: base.to_owned(),
            child,
            http,
        })
    }

    /// The child's pid, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, BenchError> {
        let url = format!("{}/_admin/{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| BenchError::Simulator(format!("{path}: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| BenchError::Simulator(format!("{path}: {e}")))?;
        if !status.is_success() {
            return Err(BenchError::Simulator(format!("{path}: {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| BenchError::Simulator(format!("{path}: {e}")))
    }

    /// A Graph client signed in to this tenant with the simulator's app credentials; its
    /// per-mailbox request budget is the simulator's (`requests_per_window`, Graph's
    /// documented 10,000 per 10 minutes unless `--mailbox-requests` changed both).
    pub async fn graph_client(
        &self,
        requests_per_window: usize,
    ) -> Result<GraphClient, BenchError> {
        let info: Info = self.call(reqwest::Method::GET, "info", None).await?;
        let mut gc = GraphConfig::new(
            info.tenant_id,
            info.client_id,
            Credential::Secret(info.client_secret.into()),
        )
        .with_endpoints(self.base.clone(), self.base.clone());
        // Faster retries than production: the simulator's throttling answers are honest,
        // and a benchmark should not sit in multi-second backoffs.
        gc.retry = RetryPolicy {
            max_attempts: 12,
            max_total: Duration::from_secs(300),
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
        };
        if requests_per_window > 0 {
            gc.limiter.requests_per_window = u32::try_from(requests_per_window).unwrap_or(u32::MAX);
        }
        Ok(GraphClient::new(gc)?)
    }

    /// The tenant id (the repository is initialised for it).
    pub async fn tenant_id(&self) -> Result<String, BenchError> {
        let info: Info = self.call(reqwest::Method::GET, "info", None).await?;
        Ok(info.tenant_id)
    }

    /// Accounts with a working mailbox.
    pub async fn mailbox_users(&self) -> Result<Vec<String>, BenchError> {
        let users: Vec<UserInfo> = self.call(reqwest::Method::GET, "users", None).await?;
        Ok(users
            .into_iter()
            .filter(|u| u.has_mailbox)
            .map(|u| u.upn)
            .collect())
    }

    /// Request counters since the last reset.
    pub async fn counters(&self) -> Result<RequestCounters, BenchError> {
        self.call(reqwest::Method::GET, "counters", None).await
    }

    /// Resets the request counters.
    pub async fn reset_counters(&self) -> Result<(), BenchError> {
        self.call::<serde_json::Value>(reqwest::Method::DELETE, "counters", None)
            .await
            .map(|_| ())
    }

    /// Replaces the injected faults (latency).
    pub async fn set_faults(&self, faults: &FaultConfig) -> Result<(), BenchError> {
        let v = serde_json::to_value(faults).map_err(|e| BenchError::Simulator(e.to_string()))?;
        self.call::<serde_json::Value>(reqwest::Method::PUT, "faults", Some(v))
            .await
            .map(|_| ())
    }

    /// The mailbox's messages without MIME.
    pub async fn dump(&self, upn: &str) -> Result<MailboxDump, BenchError> {
        self.call(
            reqwest::Method::GET,
            &format!("mailboxes/{upn}?mime=false"),
            None,
        )
        .await
    }

    /// Changes about `percent` % of every listed mailbox the way users do: a third of the
    /// picked messages flip read state and get a category, a third are deleted, and as
    /// many new messages arrive in the inbox. Returns how many changes were made.
    pub async fn mutate(&self, users: &[String], percent: f64) -> Result<usize, BenchError> {
        let mut changes = 0usize;
        for upn in users {
            let dump = self.dump(upn).await?;
            #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
            let n = ((dump.messages.len() as f64 * percent / 100.0).round() as usize).max(1);
            let step = (dump.messages.len() / n).max(1);
            for m in dump.messages.iter().step_by(step).take(n) {
                let k = changes;
                let path = format!("mailboxes/{upn}/messages/{}", m.id);
                // Counted over all mailboxes, so even one change per mailbox mixes kinds.
                match k % 3 {
                    0 => {
                        let up = MessageUpdate {
                            is_read: Some(!m.is_read),
                            categories: Some(vec!["Bench".into()]),
                            ..MessageUpdate::default()
                        };
                        let v = serde_json::to_value(&up)
                            .map_err(|e| BenchError::Simulator(e.to_string()))?;
                        self.call::<serde_json::Value>(reqwest::Method::PATCH, &path, Some(v))
                            .await?;
                    }
                    1 => {
                        self.call::<serde_json::Value>(reqwest::Method::DELETE, &path, None)
                            .await?;
                    }
                    _ => {
                        let msg = NewMessage::text(
                            &format!("bench arrival {k}"),
                            "A message that arrived between two backups.",
                        );
                        let v = serde_json::json!({"folder": "inbox", "message": msg});
                        self.call::<serde_json::Value>(
                            reqwest::Method::POST,
                            &format!("mailboxes/{upn}/messages"),
                            Some(v),
                        )
                        .await?;
                    }
                }
                changes += 1;
            }
        }
        Ok(changes)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        // Closing stdin asks the child to stop; kill covers a child that is stuck.
        drop(self.child.stdin.take());
        std::thread::sleep(Duration::from_millis(50));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
