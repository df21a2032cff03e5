//! Webhooks through a real receiver on 127.0.0.1: every event type with its payload and a signature checked here
//! from the secret (not with the gateway's own code), retries with the same id, giving up, type filters, a slow
//! receiver that does not slow writes, and a SIGKILL with events still owed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use hmac::{Hmac, Mac};
use natter::config::WebhookEndpoint;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_gateway_with, within, TestGateway, APP, SECRET};

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub json: Value,
    pub answered: u16,
}

#[derive(Default)]
struct Behaviour {
    /// Answer 500 to this many requests first.
    fail_first: usize,
    /// Answer 500 to everything.
    fail_all: bool,
    /// Take this long to answer.
    delay: Duration,
}

#[derive(Clone, Default)]
struct Shared {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// A webhook receiver on an ephemeral loopback port.
pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new().route("/hook", post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.behaviour.lock().unwrap());
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.attempts.lock().unwrap().clone()
    }

    /// The events acknowledged (answered 200), in the order they came.
    pub fn acknowledged(&self) -> Vec<Value> {
        self.attempts().into_iter().filter(|a| a.answered == 200).map(|a| a.json).collect()
    }

    /// Waits until `done` holds for the acknowledged events.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.acknowledged();
            if done(&events) {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; got {events:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (delay, fail) = {
        let mut behaviour = shared.behaviour.lock().unwrap();
        let fail = behaviour.fail_all || behaviour.fail_first > 0;
        behaviour.fail_first = behaviour.fail_first.saturating_sub(1);
        (behaviour.delay, fail)
    };
    tokio::time::sleep(delay).await;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let status = if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    shared.attempts.lock().unwrap().push(Attempt {
        timestamp: header("x-talkjs-timestamp"),
        signature: header("x-talkjs-signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

/// What a receiver does to check a request: HMAC-SHA256 over `<timestamp>.<body>` with the app secret, in
/// uppercase hex (the README shows the same in a few lines).
pub fn signature_holds(attempt: &Attempt, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(attempt.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&attempt.body);
    hex::encode_upper(mac.finalize().into_bytes()) == attempt.signature
}

/// Creates (or renames) a user on the gateway at `base` (`http://.../v1/APP`), named as its id.
pub async fn put_user(client: &reqwest::Client, base: &str, user: &str) {
    let response = client.put(format!("{base}/users/{user}")).bearer_auth(SECRET).json(&json!({"name": user}));
    response.send().await.unwrap().error_for_status().unwrap();
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn gateway_with_receivers(endpoints: Vec<WebhookEndpoint>, retry_for: Duration) -> TestGateway {
    spawn_gateway_with(|config| {
        config.apps[0].webhooks = endpoints;
        config.webhooks.first_backoff = Duration::from_millis(50);
        config.webhooks.max_backoff = Duration::from_millis(200);
        config.webhooks.retry_for = retry_for;
    })
    .await
}

fn every_event(url: &str) -> WebhookEndpoint {
    WebhookEndpoint { url: url.to_owned(), events: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_signed_in_commit_order_with_its_payload() {
    let all = Receiver::start().await;
    let sends_only = Receiver::start().await;
    let only = WebhookEndpoint { url: sends_only.url.clone(), events: Some(vec!["message.sent".into()]) };
    let gw = gateway_with_receivers(vec![every_event(&all.url), only], Duration::from_secs(60)).await;

    gw.put("/users/alice", json!({"name": "Alice", "role": "buyer"})).await.expect(200);
    gw.put("/users/bob", json!({"name": "Bob"})).await.expect(200);
    gw.put("/users/alice", json!({"name": "Alice"})).await.expect(200); // changes nothing: no event
    gw.put("/users/alice", json!({"name": "Alice A."})).await.expect(200);
    gw.put("/conversations/c", json!({"participants": ["alice", "bob"], "subject": "Order"})).await.expect(200);
    let hello = gw.send_text("c", "alice", "hello").await;
    let system = gw
        .post("/conversations/c/messages", json!([{"type": "SystemMessage", "text": "order shipped"}]))
        .await
        .expect(200)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gw.put(&format!("/conversations/c/messages/{hello}"), json!({"text": "hello!"})).await.expect(200);
    gw.put("/users/bob/conversations/c", json!({"isUnread": false})).await.expect(200);
    gw.put("/users/bob/conversations/c", json!({"isUnread": false})).await.expect(200); // nothing new read
    gw.delete(&format!("/conversations/c/messages/{system}")).await.expect(200);
    gw.delete("/conversations/c/messages").await.expect(200); // delete-all: no webhook (TalkJS)
    gw.delete("/conversations/c").await.expect(200);

    let expected = [
        "user.created",
        "user.created",
        "user.updated",
        "message.sent",
        "message.sent",
        "message.updated",
        "message.read",
        "message.deleted",
        "conversation.deleted",
    ];
    let events = all.wait_for("every event", |events| events.len() >= expected.len()).await;
    assert_eq!(types(&events), expected);
    for attempt in all.attempts() {
        assert!(signature_holds(&attempt, SECRET), "bad signature on {}", attempt.json);
        let timestamp: i64 = attempt.timestamp.parse().expect("the timestamp is Unix milliseconds");
        assert!((timestamp - crate::helpers::now_secs() as i64 * 1000).abs() < 60_000);
    }
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    assert!(events.iter().all(|e| e["createdAt"].is_i64() && e["id"].as_str().unwrap().starts_with("evt_")));

    assert_eq!(events[0]["data"]["user"]["id"], "alice");
    assert_eq!(events[0]["data"]["user"]["role"], "buyer");
    assert_eq!(events[2]["data"]["user"]["name"], "Alice A.");
    let sent = &events[3]["data"];
    assert_eq!(sent["message"]["id"], hello.as_str());
    assert_eq!(sent["message"]["text"], "hello");
    assert_eq!(sent["message"]["conversationId"], "c");
    assert_eq!(sent["sender"]["id"], "alice");
    assert_eq!(sent["sender"]["name"], "Alice A.");
    // The conversation is read when the event is delivered: by then it is gone.
    assert!(sent["conversation"].is_null() || sent["conversation"]["id"] == "c");
    assert_eq!(events[4]["data"]["sender"], Value::Null, "a system message has no sender");
    assert_eq!(events[4]["data"]["message"]["type"], "SystemMessage");
    assert_eq!(events[5]["data"]["message"]["text"], "hello!");
    let read = &events[6]["data"];
    assert_eq!((&read["message"]["id"], &read["recipient"]["id"]), (&json!(hello), &json!("bob")));
    assert_eq!(read["sender"]["id"], "alice");
    assert!(read["message"]["readBy"].as_array().unwrap().contains(&json!("bob")));
    // Read when delivered: gone if the deletion below came first.
    assert!(read["conversation"].is_null() || read["conversation"]["id"] == "c");
    assert_eq!(events[7]["data"]["message"]["id"], system.as_str());
    let deleted = &events[8]["data"]["conversation"];
    assert_eq!((&deleted["id"], &deleted["subject"]), (&json!("c"), &json!("Order")));
    assert!(deleted["participants"]["bob"].is_object());

    let filtered = sends_only.wait_for("the two sends", |events| events.len() >= 2).await;
    assert_eq!(types(&filtered), ["message.sent", "message.sent"]);
    assert_eq!(filtered[0]["id"], events[3]["id"], "the same event has the same id for every receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_gets_the_event_again_with_the_same_id_and_nothing_overtakes_it() {
    let receiver = Receiver::start().await;
    receiver.behave(|b| b.fail_first = 3);
    let gw = gateway_with_receivers(vec![every_event(&receiver.url)], Duration::from_secs(60)).await;
    gw.create_user("alice").await;
    gw.create_user("bob").await;
    let events = receiver.wait_for("both users", |events| events.len() >= 2).await;
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 5, "three failures, then each event once: {attempts:#?}");
    assert!(attempts[..4].iter().all(|a| a.json["id"] == events[0]["id"]), "retried with the same id, in order");
    assert_eq!(attempts[..3].iter().map(|a| a.answered).collect::<Vec<_>>(), [500, 500, 500]);
    assert_eq!(events[0]["data"]["user"]["id"], "alice");
    assert_eq!(events[1]["data"]["user"]["id"], "bob");
    // The receiver records an event before it answers, so the gateway counts the second delivery a moment later.
    let metrics_url = format!("{}/metrics", gw.base);
    let delivered = format!("natter_webhook_deliveries_total{{app=\"{APP}\"}} 2");
    let metrics = within(async {
        loop {
            let metrics = gw.client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
            if metrics.contains(&delivered) {
                break metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(metrics.contains(&format!("natter_webhook_retries_total{{app=\"{APP}\"}} 3")), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_retried_for_longer_than_configured_is_recorded_as_failed_and_delivery_goes_on() {
    let receiver = Receiver::start().await;
    receiver.behave(|b| b.fail_all = true);
    let gw = gateway_with_receivers(vec![every_event(&receiver.url)], Duration::from_millis(400)).await;
    gw.create_user("alice").await;
    let metrics_url = format!("{}/metrics", gw.base);
    let failed = format!("natter_webhook_failures_total{{app=\"{APP}\"}} 1");
    within(async {
        while !gw.client.get(&metrics_url).send().await.unwrap().text().await.unwrap().contains(&failed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let given_up = receiver.attempts().len();
    assert!(given_up >= 2, "retried before giving up");
    receiver.behave(|b| b.fail_all = false);
    gw.create_user("bob").await;
    let events = receiver.wait_for("the next event", |events| !events.is_empty()).await;
    assert_eq!(events[0]["data"]["user"]["id"], "bob", "the failed event is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_does_not_slow_writes() {
    let receiver = Receiver::start().await;
    receiver.behave(|b| b.delay = Duration::from_millis(1500));
    let gw = gateway_with_receivers(vec![every_event(&receiver.url)], Duration::from_secs(60)).await;
    gw.create_conversation("c", &["alice"]).await;
    for i in 0..20 {
        gw.send_text("c", "alice", &format!("m{i}")).await;
    }
    // Had writes waited for the receiver, it would have answered about one per write (21) by now; it takes 1.5 s
    // an event, so the 21 writes were answered while it had taken only the first few.
    assert!(receiver.attempts().len() < 8, "writes waited for the receiver: {}", receiver.attempts().len());
    let events = receiver.wait_for("the first send", |events| events.len() >= 3).await;
    assert_eq!(types(&events[..2]), ["user.created", "message.sent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_owed_at_a_sigkill_are_delivered_after_the_restart() {
    let receiver = Receiver::start().await;
    receiver.behave(|b| b.fail_all = true);
    let data_dir = tempfile::tempdir().unwrap();
    let env = [("NATTER_WEBHOOK_URL", receiver.url.as_str()), ("NATTER_WEBHOOK_FIRST_BACKOFF_MS", "50")];
    let mut process = crate::durability::start_with(data_dir.path(), "127.0.0.1:0", &env).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = format!("u{i}");
        put_user(&client, &process.base, &user).await;
        ids.push(user);
    }
    within(async {
        while receiver.attempts().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    process.child.kill().await.unwrap();
    receiver.behave(|b| b.fail_all = false);
    let _restarted = crate::durability::start_with(data_dir.path(), "127.0.0.1:0", &env).await;
    let events = receiver.wait_for("all five users", |events| events.len() >= 5).await;
    let users: Vec<_> = events.iter().map(|e| e["data"]["user"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(users, ids, "none lost, in commit order");
    let first_id = &receiver.attempts()[0].json["id"];
    assert_eq!(&events[0]["id"], first_id, "the same id across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_delays_only_its_own_events() {
    let down = Receiver::start().await;
    down.behave(|b| b.fail_all = true);
    let up = Receiver::start().await;
    let gw = gateway_with_receivers(vec![every_event(&down.url), every_event(&up.url)], Duration::from_secs(60)).await;
    for i in 0..5 {
        gw.create_user(&format!("u{i}")).await;
    }
    let events = up.wait_for("all five", |events| events.len() >= 5).await;
    assert_eq!(types(&events), ["user.created"; 5]);
    let tried = down.attempts();
    assert!(
        !tried.is_empty() && tried.iter().all(|a| a.json["id"] == events[0]["id"]),
        "the other one retries the first"
    );
    down.behave(|b| b.fail_all = false);
    let late = down.wait_for("all five, later", |events| events.len() >= 5).await;
    assert_eq!(late.iter().map(|e| &e["id"]).collect::<Vec<_>>(), events.iter().map(|e| &e["id"]).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_sent_even_when_its_conversation_is_deleted_before_delivery() {
    let receiver = Receiver::start().await;
    receiver.behave(|b| b.fail_all = true);
    let gw = gateway_with_receivers(vec![every_event(&receiver.url)], Duration::from_secs(60)).await;
    gw.put("/users/alice", json!({"name": "Alice"})).await.expect(200);
    gw.put("/users/bob", json!({"name": "Bob"})).await.expect(200);
    gw.put("/conversations/c", json!({"participants": ["alice", "bob"]})).await.expect(200);
    let hello = gw.send_text("c", "alice", "hello").await;
    gw.put("/users/bob/conversations/c", json!({"isUnread": false})).await.expect(200);
    gw.delete("/conversations/c").await.expect(200);
    receiver.behave(|b| b.fail_all = false);
    let events =
        receiver.wait_for("the deletion", |events| events.iter().any(|e| e["type"] == "conversation.deleted")).await;
    let read = events.iter().find(|e| e["type"] == "message.read").expect("the read was sent");
    assert_eq!((&read["data"]["message"]["id"], &read["data"]["recipient"]["id"]), (&json!(hello), &json!("bob")));
    assert_eq!(read["data"]["conversation"], Value::Null, "deleted by the time it was delivered");
    assert_eq!(read["data"]["message"]["text"], "hello");
}
