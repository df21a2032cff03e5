//! Recovery after reconnect: clients resume from the last `seq` they saw, with no gap and no duplicate, after every
//! socket is dropped at once and after the gateway restarts.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{stream, StreamExt};
use natter_client::{MessageSubscription, Session, SubscriptionState};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::watch};

use crate::helpers::*;

/// A loopback TCP proxy that can cut every connection through it at once, as a network failure would, and move
/// to another upstream, as a load balancer does when a node fails its health check.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let (cut, cut_rx) = watch::channel(0u64);
        let target = upstream.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                    // Dropping both streams here resets the connection on both sides.
                });
            }
        });
        Proxy { addr, upstream, cut }
    }

    pub(crate) fn cut_everything(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// New connections go to `upstream`; every open one is cut.
    pub(crate) fn switch(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
        self.cut_everything();
    }
}

async fn connect_via(gateway: &TestGateway, base: &str, user: &str) -> Session {
    let config = natter_client::ClientConfig {
        url: base.to_owned(),
        app_id: APP.into(),
        token: user_token(user, None),
        observer: Some(gateway.frame_observer()),
    };
    Session::connect(config).await.expect("connect")
}

/// Connects like `connect_via`, and checks frame by frame that the client's live stream (it holds one
/// subscription) never skips or repeats a seq: after a `snapshot` at S or a `resumed` from S, the next event is S+1.
pub(crate) async fn connect_checked(
    gateway: &TestGateway,
    base: &str,
    user: &str,
    problems: Arc<Mutex<Vec<String>>>,
) -> Session {
    let validate = gateway.frame_observer();
    let last = Mutex::new(None::<i64>);
    let token = user_token(user, None);
    let user = user.to_owned();
    let observer: natter_client::FrameObserver = Arc::new(move |text: &str| {
        validate(text);
        let frame: Value = serde_json::from_str(text).unwrap();
        let mut last = last.lock().unwrap();
        match frame["type"].as_str() {
            Some("snapshot") => *last = frame["seq"].as_i64(),
            Some("resumed") => *last = frame["fromSeq"].as_i64(),
            Some("event") => {
                let seq = frame["seq"].as_i64().unwrap();
                if let Some(previous) = *last {
                    if seq != previous + 1 {
                        problems.lock().unwrap().push(format!("{user}: event {seq} after {previous}"));
                    }
                }
                *last = Some(seq);
            }
            _ => {}
        }
    });
    let config =
        natter_client::ClientConfig { url: base.to_owned(), app_id: APP.into(), token, observer: Some(observer) };
    Session::connect(config).await.expect("connect")
}

pub(crate) fn ids_of(state: &SubscriptionState) -> Vec<String> {
    match state {
        SubscriptionState::Active { latest_snapshot: Some(messages), .. } => {
            messages.iter().map(|m| m.id.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// The newest `n` message ids of a conversation, from REST.
async fn newest_ids(gateway: &TestGateway, conversation: &str, n: usize) -> Vec<String> {
    let reply = gateway.get(&format!("/conversations/{conversation}/messages?limit={}", n.clamp(1, 100))).await;
    reply.expect(200)["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the window's newest message is the store's newest, then checks the window is exactly the store's
/// newest messages: nothing missing, nothing twice, in order.
async fn assert_window_matches_store(gateway: &TestGateway, subscription: &MessageSubscription, conversation: &str) {
    let newest = newest_ids(gateway, conversation, 1).await;
    let state = within(subscription.wait_for(|state| ids_of(state).first() == newest.first())).await;
    assert!(matches!(state, SubscriptionState::Active { .. }), "the subscription ended: {state:?}");
    let window = ids_of(&state);
    let expected = newest_ids(gateway, conversation, window.len()).await;
    assert_eq!(window, expected, "the window of {conversation} differs from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_subscribers_resume_without_gap_or_duplicate_after_every_socket_drops() {
    let gateway = Arc::new(spawn_gateway_with(|config| config.outbox_events = 1024).await);
    let (n_users, n_conversations) = (1000, 10);
    for chunk in (0..n_users).collect::<Vec<_>>().chunks(100) {
        let batch: serde_json::Map<String, Value> =
            chunk.iter().map(|i| (format!("u{i}"), json!({ "name": format!("U{i}") }))).collect();
        gateway.put("/users", Value::Object(batch)).await.expect(200);
    }
    for c in 0..n_conversations {
        let members: Vec<String> = (c..n_users).step_by(n_conversations).map(|i| format!("u{i}")).collect();
        gateway.put(&format!("/conversations/c{c}"), json!({ "participants": members })).await.expect(200);
        gateway.send_text(&format!("c{c}"), &format!("u{c}"), "before").await;
    }
    let proxy = Proxy::start(gateway.base.trim_start_matches("http://").parse().unwrap()).await;
    let proxy_url = format!("ws://{}", proxy.addr);
    let clients: Vec<(Session, MessageSubscription, String)> = stream::iter(0..n_users)
        .map(|i| {
            let (gateway, proxy_url) = (gateway.clone(), proxy_url.clone());
            async move {
                let session = connect_via(&gateway, &proxy_url, &format!("u{i}")).await;
                let conversation = format!("c{}", i % n_conversations);
                let subscription =
                    session.conversation(&conversation).subscribe_messages_with_limit(Some(5)).await.unwrap();
                within(subscription.connected()).await.unwrap();
                (session, subscription, conversation)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;

    // Writers keep writing (straight to the gateway) while every client socket is cut.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    let c = (w + i) % n_conversations;
                    gateway.send_text(&format!("c{c}"), &format!("u{c}"), &format!("w{w}-{i}")).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.cut_everything();
    for writer in writers {
        writer.await.unwrap();
    }
    for (_, subscription, conversation) in &clients {
        assert_window_matches_store(&gateway, subscription, conversation).await;
    }
    assert!(
        gateway.frames_of_type("resumed") >= n_users,
        "every client resumed: {}",
        gateway.frames_of_type("resumed")
    );
    assert_eq!(gateway.frames_of_type("snapshot-not-resumed"), 0, "no resume fell back to a fresh snapshot");
    gateway.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_resume_exactly_after_the_gateway_is_killed_and_restarted() {
    use crate::durability::{start, start_on};

    let data_dir = tempfile::tempdir().unwrap();
    let mut process = start(data_dir.path()).await;
    let addr = process.addr.clone();
    let http = reqwest::Client::new();
    let rest_base = format!("http://{addr}/v1/{APP}");
    let rest = move |method: reqwest::Method, path: String, body: Value| {
        let (http, base) = (http.clone(), rest_base.clone());
        async move {
            http.request(method, format!("{base}{path}"))
                .bearer_auth(SECRET)
                .json(&body)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    };
    let (n_users, n_conversations) = (30, 3);
    let batch: serde_json::Map<String, Value> =
        (0..n_users).map(|i| (format!("u{i}"), json!({ "name": format!("U{i}") }))).collect();
    rest(reqwest::Method::PUT, "/users".into(), Value::Object(batch)).await.expect("users");
    for c in 0..n_conversations {
        let members: Vec<String> = (c..n_users).step_by(n_conversations).map(|i| format!("u{i}")).collect();
        rest(reqwest::Method::PUT, format!("/conversations/c{c}"), json!({ "participants": members }))
            .await
            .expect("conversation");
    }
    // A gateway of the test kind, only to validate frames; the clients talk to the process.
    let validator = spawn_gateway().await;
    let mut clients = Vec::new();
    let problems = Arc::new(Mutex::new(Vec::new()));
    for i in 0..n_users {
        let session = connect_checked(&validator, &format!("ws://{addr}"), &format!("u{i}"), problems.clone()).await;
        let conversation = format!("c{}", i % n_conversations);
        let subscription = session.conversation(&conversation).subscribe_messages_with_limit(Some(5)).await.unwrap();
        within(subscription.connected()).await.unwrap();
        clients.push((session, subscription, conversation));
    }

    // A writer that retries until each message is acknowledged, across the restart.
    let writer = {
        let rest = rest.clone();
        tokio::spawn(async move {
            for i in 0..90 {
                let c = i % n_conversations;
                let body = json!([{ "type": "UserMessage", "sender": format!("u{c}"), "text": format!("m{i}"), "idempotencyKey": format!("k{i}") }]);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while rest(reqwest::Method::POST, format!("/conversations/c{c}/messages"), body.clone()).await.is_none()
                {
                    assert!(tokio::time::Instant::now() < deadline, "message {i} was never acknowledged");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut process = start_on(data_dir.path(), &addr).await;
    writer.await.unwrap();

    let store = spawn_store_reader(&addr);
    for (_, subscription, conversation) in &clients {
        let newest = store(conversation.clone(), 1).await;
        let state = within(subscription.wait_for(|state| ids_of(state).first() == newest.first())).await;
        assert!(matches!(state, SubscriptionState::Active { .. }), "the subscription ended: {state:?}");
        let window = ids_of(&state);
        assert_eq!(window, store(conversation.clone(), window.len()).await, "{conversation} differs from the store");
    }
    // The event log outlives the gateway: every client resumed and got exactly the events it missed.
    assert!(validator.frames_of_type("resumed") >= n_users, "resumed: {}", validator.frames_of_type("resumed"));
    assert_eq!(validator.frames_of_type("snapshot-not-resumed"), 0, "no resume fell back to a fresh snapshot");
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    validator.assert_frames_valid();
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
}

/// Reads a conversation's newest message ids from a gateway process.
pub(crate) fn spawn_store_reader(
    addr: &str,
) -> impl Fn(String, usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>> {
    let base = format!("http://{addr}/v1/{APP}");
    move |conversation: String, n: usize| {
        let url = format!("{base}/conversations/{conversation}/messages?limit={}", n.clamp(1, 100));
        Box::pin(async move {
            let reply: Value =
                reqwest::Client::new().get(url).bearer_auth(SECRET).send().await.unwrap().json().await.unwrap();
            reply["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_conversation_list_keeps_its_filter_across_a_reconnect() {
    use natter_client::LiveState;

    let gateway = spawn_gateway().await;
    for (id, kind) in [("s1", "support"), ("o1", "sales"), ("s2", "support")] {
        gateway.create_conversation(id, &["me", "bob"]).await;
        gateway.put(&format!("/conversations/{id}"), json!({"custom": {"kind": kind}})).await.expect(200);
    }
    let proxy = Proxy::start(gateway.base.trim_start_matches("http://").parse().unwrap()).await;
    let me = connect_via(&gateway, &format!("ws://{}", proxy.addr), "me").await;
    let list = me.subscribe_conversations_with_filter(json!({"custom": {"kind": ["==", "support"]}})).await.unwrap();
    let ids = |state: &LiveState<natter_client::ConversationListSnapshot>| match state {
        LiveState::Active(Some(list)) => list.conversations.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let first = within(list.connected()).await.unwrap();
    assert_eq!(ids(&first), ["s2", "s1"]);

    proxy.cut_everything();
    // Joined in this order while the client reconnects: an unfiltered list would show o2 before s1 once s3 is in.
    for (id, kind) in [("o2", "sales"), ("s3", "support")] {
        gateway.create_conversation(id, &["bob"]).await;
        gateway.put(&format!("/conversations/{id}"), json!({"custom": {"kind": kind}})).await.expect(200);
        gateway.put(&format!("/conversations/{id}/participants/me"), json!({})).await.expect(200);
    }
    let state = within(list.wait_for(|state| ids(state).first().is_some_and(|id| id == "s3"))).await;
    assert_eq!(ids(&state), ["s3", "s2", "s1"], "the resubscribed list is filtered too");
    gateway.assert_frames_valid();
}
