//! What a client can hold open without credentials: a connection that never finishes its request head is closed
//! after the header deadline, connections without a whole request are capped, and shutdown ends in bounded time
//! whatever clients do.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{durability::start_with, helpers::*};

const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: natter\r\n";

fn address(gateway: &TestGateway) -> String {
    gateway.base.trim_start_matches("http://").to_owned()
}

/// Waits until the server closes the connection (end of stream or a reset), or `within` passes.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed_at_the_deadline() {
    let gateway = spawn_gateway_with(|config| config.serve.header_read_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(address(&gateway)).await.unwrap();
    stream.write_all(PARTIAL_HEAD).await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await, "the half-open connection was kept");
}

#[tokio::test]
async fn a_client_that_drips_its_headers_a_byte_at_a_time_is_closed_too() {
    let gateway = spawn_gateway_with(|config| config.serve.header_read_timeout = Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(address(&gateway)).await.unwrap();
    let started = Instant::now();
    for byte in PARTIAL_HEAD.iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() || started.elapsed() > Duration::from_secs(5) {
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(100)).await {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3), "a byte every 100 ms kept the connection open");
}

#[tokio::test]
async fn connections_without_a_request_are_capped_and_healthz_answers_once_they_time_out() {
    let gateway = spawn_gateway_with(|config| {
        config.serve.header_read_timeout = Duration::from_millis(800);
        config.serve.max_pending_connections = 10;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(address(&gateway)).await.unwrap();
        let _ = stream.write_all(PARTIAL_HEAD).await;
        streams.push(stream);
    }
    let mut closed_at_once = 0;
    for stream in &mut streams {
        if closed_within(stream, Duration::from_millis(100)).await {
            closed_at_once += 1;
        }
    }
    assert!(closed_at_once >= 20, "only {closed_at_once} of 30 were refused past a cap of 10");
    // Once the held ones time out, the gateway answers again.
    within(async {
        loop {
            if let Ok(response) = reqwest::get(format!("{}/healthz", gateway.base)).await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// The gateway's count of open WebSocket sessions.
async fn open_sessions(gateway: &TestGateway) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("natter_websocket_connections "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the connection gauge is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_requests_but_never_reads_their_replies_is_disconnected() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let gateway = spawn_gateway_with(|config| {
        config.socket_write_timeout = Duration::from_millis(500);
        config.limits.frames_per_second = 0;
    })
    .await;
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("reader", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The session counts itself once its task runs, a moment after the upgrade's answer.
    within(async {
        while open_sessions(&gateway).await != 1.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Every frame gets an error reply; this client never reads one, so they pile up until the socket is full.
    let spammer = tokio::spawn(async move {
        for _ in 0..200_000 {
            if socket.feed(Message::text("{}")).await.is_err() {
                return;
            }
        }
        let _ = socket.flush().await;
        // Hold the socket (unread) until the test ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    within(async {
        while open_sessions(&gateway).await > 0.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    spammer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_in_bounded_time_while_a_client_holds_unfinished_headers() {
    let data_dir = tempfile::tempdir().unwrap();
    // A header deadline longer than the test: only the shutdown deadline can end the connection.
    let mut process = start_with(data_dir.path(), "127.0.0.1:0", &[("NATTER_HEADER_READ_TIMEOUT_MS", "600000")]).await;
    let mut stream = TcpStream::connect(&process.addr).await.unwrap();
    stream.write_all(PARTIAL_HEAD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = process.child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(20), process.child.wait())
        .await
        .expect("natter did not exit within 20 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(12), "shutdown took {:?}", started.elapsed());
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_unsubscribe_flood_keeps_reads_bounded_and_answers_every_request() {
    use futures::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message;

    let gateway = spawn_gateway_with(|config| config.limits.frames_per_second = 0).await;
    gateway.create_conversation("big", &["alice"]).await;
    // Thirty large messages: every window read holds a couple of MiB until it is sent or dropped.
    let text = "x".repeat(60 * 1024);
    for _ in 0..3 {
        let batch: Vec<Value> = (0..10).map(|_| json!({ "type": "SystemMessage", "text": text })).collect();
        gateway.post("/conversations/big/messages", Value::Array(batch)).await.expect(200);
    }
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("alice", None));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut sink, mut stream) = socket.split();
    let pairs = 1000;
    let reader = tokio::spawn(async move {
        let mut replies = std::collections::HashMap::<String, usize>::new();
        while replies.len() < 2 * pairs {
            let Some(Ok(Message::Text(text))) = stream.next().await else { break };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if let Some(id) = frame["id"].as_str() {
                *replies.entry(id.to_owned()).or_default() += 1;
            }
        }
        replies
    });
    let sender = tokio::spawn(async move {
        for i in 0..pairs {
            let subscribe = json!({ "type": "subscribeMessages", "id": format!("s{i}"), "conversationId": "big" });
            let unsubscribe = json!({ "type": "unsubscribe", "id": format!("u{i}"), "conversationId": "big" });
            sink.feed(Message::text(subscribe.to_string())).await.unwrap();
            sink.feed(Message::text(unsubscribe.to_string())).await.unwrap();
        }
        sink.flush().await.unwrap();
        sink
    });
    // While the flood is read: reads stay within the session's bound, and the gateway answers.
    let mut most_reads = 0.0f64;
    while !sender.is_finished() || !reader.is_finished() {
        most_reads = most_reads.max(metric(&gateway, "natter_session_reads_in_flight").await);
        let started = Instant::now();
        let health = reqwest::get(format!("{}/healthz", gateway.base)).await.unwrap();
        assert!(health.status().is_success());
        assert!(started.elapsed() < Duration::from_secs(2), "/healthz took {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        if reader.is_finished() {
            break;
        }
    }
    let replies = within(reader).await.unwrap();
    assert_eq!(replies.len(), 2 * pairs, "every request got a reply");
    assert!(replies.values().all(|&n| n == 1), "and only one");
    assert!(most_reads <= 4.0, "{most_reads} reads in flight at once");
    drop(sender);
}

#[tokio::test]
async fn the_recent_events_cache_is_bounded_in_bytes_and_a_resume_beyond_it_is_still_exact() {
    use natter_client::SubscriptionState;

    let bound = 200 * 1024;
    let gateway = spawn_gateway_with(|config| config.history_bytes = bound).await;
    gateway.create_conversation("big", &["alice", "bob"]).await;
    let bob = gateway.connect("bob").await;
    let subscription = bob.conversation("big").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    // Forty messages of 60 KiB: 2.4 MiB of frames, twelve times the bound.
    let text = "y".repeat(60 * 1024);
    for i in 0..40 {
        let body = serde_json::json!([{ "type": "UserMessage", "sender": "alice", "text": format!("{i} {text}") }]);
        gateway.post("/conversations/big/messages", body).await.expect(200);
    }
    let held = metric(&gateway, "natter_history_bytes").await;
    assert!(held > 0.0 && held <= bound as f64, "the cache holds {held} bytes, bound {bound}");
    let state = within(subscription.wait_for(|state| messages(state).len() >= 40)).await;
    assert!(matches!(state, SubscriptionState::Active { .. }));
    // A client that saw only the start resumes exactly: what the cache no longer holds comes from the event log.
    let url = format!("{}/v1/{APP}/realtime?token={}", gateway.ws_base(), user_token("bob", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures::{SinkExt, StreamExt};
    let resume = serde_json::json!({ "type": "subscribeMessages", "id": "r", "conversationId": "big",
        "resume": { "fromSeq": 3, "oldestSeq": null, "loadedAll": true } });
    socket.send(tokio_tungstenite::tungstenite::Message::text(resume.to_string())).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 40 {
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(frame))) = within(socket.next()).await else {
            panic!("the socket ended")
        };
        let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_ne!(frame["type"], "snapshot", "the resume fell back to a snapshot");
        if frame["type"] == "event" {
            events.push(frame["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(events, (4..44).collect::<Vec<_>>());
}
