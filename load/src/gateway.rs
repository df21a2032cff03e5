//! Talking to the gateway under test: REST setup, tokens, and its process's CPU and memory from /proc.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::Target;

pub struct Gateway {
    pub target: Target,
    pub http: reqwest::Client,
    pub run_id: String,
}

impl Gateway {
    pub fn new(target: Target) -> Self {
        let run_id = target.run_id.clone().unwrap_or_else(|| {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            format!("lt{:x}", nanos ^ std::process::id())
        });
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Self { target, http, run_id }
    }

    /// Node `index`'s base URL, round-robin over the nodes given.
    fn base(&self, index: usize) -> &str {
        self.target.url[index % self.target.url.len().max(1)].trim_end_matches('/')
    }

    pub fn api_on(&self, node: usize, path: &str) -> String {
        format!("{}/v1/{}{}", self.base(node), self.target.app, path)
    }

    /// Node `node`'s WebSocket base, as the client library takes it.
    pub fn ws_base(&self, node: usize) -> String {
        self.base(node).replacen("https://", "wss://", 1).replacen("http://", "ws://", 1)
    }

    pub fn ws_url(&self, node: usize) -> String {
        format!("{}/v1/{}/realtime", self.ws_base(node), self.target.app)
    }

    pub fn user(&self, index: usize) -> String {
        format!("{}-u{index}", self.run_id)
    }

    pub fn conversation(&self, index: usize) -> String {
        format!("{}-c{index}", self.run_id)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call_on(0, method, path, body).await
    }

    async fn call_on(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, self.api_on(node, path)).bearer_auth(&self.target.secret);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("request to {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    /// Creates `n_users` users and `n_conversations` conversations; user `i` joins conversation `i % n_conversations`.
    pub async fn setup(&self, n_users: usize, n_conversations: usize) -> anyhow::Result<()> {
        for chunk in (0..n_users).collect::<Vec<_>>().chunks(100) {
            let batch: serde_json::Map<String, Value> =
                chunk.iter().map(|&i| (self.user(i), json!({ "name": format!("Load user {i}") }))).collect();
            self.call(reqwest::Method::PUT, "/users", Some(Value::Object(batch))).await?;
        }
        for conversation in 0..n_conversations {
            let members: Vec<String> = (conversation..n_users).step_by(n_conversations).map(|i| self.user(i)).collect();
            // Large groups go in slices to keep bodies small.
            for slice in members.chunks(1000) {
                let body = json!({ "participants": slice, "subject": "load test" });
                self.call(
                    reqwest::Method::PUT,
                    &format!("/conversations/{}", self.conversation(conversation)),
                    Some(body),
                )
                .await?;
            }
            if members.is_empty() {
                self.call(
                    reqwest::Method::PUT,
                    &format!("/conversations/{}", self.conversation(conversation)),
                    Some(json!({})),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Sends a batch of system messages carrying their index `n` and send time `t` (µs since the epoch), through
    /// the nodes in turn (by request).
    pub async fn publish(&self, conversation: usize, first_n: u64, count: usize) -> anyhow::Result<()> {
        let node = (first_n / count.max(1) as u64) as usize;
        let t = now_micros();
        let items: Vec<Value> = (0..count as u64)
            .map(|i| json!({ "type": "SystemMessage", "text": "load", "custom": { "n": (first_n + i).to_string(), "t": t.to_string() } }))
            .collect();
        self.call_on(
            node,
            reqwest::Method::POST,
            &format!("/conversations/{}/messages", self.conversation(conversation)),
            Some(Value::Array(items)),
        )
        .await
        .map(drop)
    }

    /// A user token for `user`, valid for a day.
    pub fn token(&self, user: &str) -> String {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 86_400;
        let claims = json!({ "tokenType": "user", "iss": self.target.app, "sub": user, "exp": exp });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.target.secret.as_bytes()),
        )
        .expect("tokens always encode")
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// CPU time (user + system) and resident memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// The sum over several processes (the nodes of a cluster); `None` unless every one can be read.
pub fn sample_processes(pids: &[u32]) -> Option<ProcessSample> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(ProcessSample::default(), |sum, &pid| {
        let sample = sample_process(pid)?;
        Some(ProcessSample {
            cpu_seconds: sum.cpu_seconds + sample.cpu_seconds,
            rss_bytes: sum.rss_bytes + sample.rss_bytes,
        })
    })
}

pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 =
        status.lines().find(|line| line.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcessSample { cpu_seconds: (utime + stime) / clock_ticks(), rss_bytes: rss_kib * 1024 })
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
