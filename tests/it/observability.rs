use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .unwrap_or_else(|| panic!("no metric line starting with {line_start}:\n{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_connections_events_deliveries_requests_and_commits() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let bob = gateway.connect("bob").await;
    let subscription = bob.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    gateway.send_text("c", "alice", "counted").await;
    within(subscription.wait_for(|state| !messages(state).is_empty())).await;

    let response = gateway.client.get(format!("{}/metrics", gateway.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    assert_eq!(value(&metrics, "natter_websocket_connections "), 1.0);
    assert_eq!(value(&metrics, "natter_subscriptions "), 1.0);
    assert!(value(&metrics, "natter_events_published_total ") >= 1.0);
    assert!(value(&metrics, "natter_deliveries_total ") >= 1.0);
    assert!(value(&metrics, "natter_store_commit_duration_seconds_count ") >= 1.0);
    assert!(value(&metrics, "natter_store_commit_batch_jobs_count ") >= 1.0);
    // Requests are recorded by route template, not by concrete path.
    assert!(metrics.contains(r#"route="/v1/{appId}/conversations/{conversationId}/messages""#), "{metrics}");
    assert!(!metrics.contains("/conversations/c/messages"), "concrete paths must not become labels");
    assert!(!metrics.contains(SECRET));
}

#[tokio::test]
async fn readyz_answers_once_the_store_is_open() {
    let gateway = spawn_gateway().await;
    let reply = gateway.send(Method::GET, &format!("{}/readyz", gateway.base), None, None).await;
    assert_eq!(reply.expect(200)["status"], json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_tokens_and_message_text_never_reach_the_logs() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let data_dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env("NATTER_APPS", format!("{APP}:{SECRET}"))
        .env("RUST_LOG", "natter=trace,tower_http=trace,axum=trace")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let collect = |stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            let mut all = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push(line);
            }
            all
        })
    };
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let stdout = child.stdout.take().unwrap();
    let stdout_lines = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut all = Vec::new();
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = crate::durability::listening_address(&line) {
                if let Some(tx) = address_tx.take() {
                    let _ = tx.send(addr);
                }
            }
            all.push(line);
        }
        all
    });
    let stderr_lines = collect(Box::new(child.stderr.take().unwrap()));
    let addr = within(address_rx).await.unwrap();
    let base = format!("http://{addr}/v1/{APP}");
    let http = reqwest::Client::new();
    let text = "a very private message 5b2e";
    http.put(format!("{base}/users/alice")).bearer_auth(SECRET).json(&json!({ "name": "Alice" })).send().await.unwrap();
    http.put(format!("{base}/conversations/c"))
        .bearer_auth(SECRET)
        .json(&json!({ "participants": ["alice"] }))
        .send()
        .await
        .unwrap();
    let token = user_token("alice", None);
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/{APP}/realtime?token={token}")).await.unwrap();
    use futures::{SinkExt, StreamExt};
    let send = json!({ "type": "sendMessage", "id": "1", "conversationId": "c", "text": text }).to_string();
    socket.send(tokio_tungstenite::tungstenite::Message::text(send)).await.unwrap();
    let _ = within(socket.next()).await;
    // Failures log too: a wrong secret, a bad token.
    http.get(format!("{base}/users")).bearer_auth("sk_wrong_secret_value").send().await.unwrap();
    let _ = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/{APP}/realtime?token=not.a.token")).await;
    drop(socket);

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    within(child.wait()).await.unwrap();
    let mut logs = within(stdout_lines).await.unwrap();
    logs.extend(within(stderr_lines).await.unwrap());
    let logs = logs.join("\n");
    assert!(logs.contains("request"), "the trace logs were produced:\n{logs}");
    for secret in [SECRET, token.as_str(), text, "sk_wrong_secret_value", "not.a.token"] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn natter_debug_shows_a_plain_line_per_request() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let data_dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env("NATTER_APPS", format!("{APP}:{SECRET}"))
        .env("RUST_LOG", "natter=debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = within(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("natter exited");
            if let Some(addr) = crate::durability::listening_address(&line) {
                return addr;
            }
        }
    })
    .await;
    let reply = reqwest::Client::new()
        .put(format!("http://{addr}/v1/{APP}/users/alice"))
        .bearer_auth(SECRET)
        .json(&json!({ "name": "Alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let line = within(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("natter exited");
            if line.contains("request") && line.contains("PUT") {
                return line;
            }
        }
    })
    .await;
    assert!(line.contains(&format!("/v1/{APP}/users/alice")) && line.contains("200"), "{line}");
    assert!(!line.contains('\u{1b}'), "no colour codes when the output is not a terminal: {line:?}");
    child.start_kill().unwrap();
}
