//! `POST /import/conversations/{cid}/messages` over HTTP: time order, origin, read state, no de-duplication, no
//! live display and no webhooks, attachments, and every error case (nothing is written when one item is bad).

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::helpers::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn item(sender: &str, text: &str, timestamp: i64, read_by: &[&str]) -> Value {
    json!({"type": "UserMessage", "sender": sender, "text": text, "timestamp": timestamp, "readBy": read_by})
}

async fn import(gw: &TestGateway, conversation: &str, items: Value) -> Reply {
    gw.post(&format!("/import/conversations/{conversation}/messages"), items).await
}

async fn texts(gw: &TestGateway, conversation: &str) -> Vec<String> {
    let page = gw.get(&format!("/conversations/{conversation}/messages?limit=100")).await;
    page.expect(200)["data"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_messages_take_their_place_by_time_as_imports_and_carry_who_read_them() {
    let gw = spawn_gateway().await;
    gw.create_conversation("c", &["alice", "bob"]).await;
    let base = now_ms() - 60_000;
    let given = json!([
        item("alice", "third", base + 3000, &["bob"]),
        item("bob", "first", base + 1000, &[]),
        item("alice", "second", base + 2000, &[]),
    ]);
    let ids = import(&gw, "c", given).await.expect(200).clone();
    assert_eq!(texts(&gw, "c").await, ["third", "second", "first"], "newest first, by time");
    let third = gw.get(&format!("/conversations/c/messages/{}", ids[0]["id"].as_str().unwrap())).await;
    let third = third.expect(200);
    assert_eq!(
        (&third["text"], &third["origin"], &third["createdAt"]),
        (&json!("third"), &json!("import"), &json!(base + 3000))
    );
    assert_eq!(third["readBy"], json!(["bob"]));
    assert_eq!(third["senderId"], "alice");
    let first = gw.get(&format!("/conversations/c/messages/{}", ids[1]["id"].as_str().unwrap())).await;
    assert_eq!(first.expect(200)["text"], "first", "ids answer in the order given");
    let conversation = gw.get("/conversations/c").await;
    assert_eq!(conversation.expect(200)["lastMessage"]["text"], "third");

    // Not de-duplicated: the same message twice is two messages.
    let again = json!([item("bob", "same", base + 4000, &[])]);
    let a = import(&gw, "c", again.clone()).await.expect(200)[0]["id"].clone();
    let b = import(&gw, "c", again).await.expect(200)[0]["id"].clone();
    assert_ne!(a, b);
    // After a live message, history older than it has no place: refused, nothing written.
    gw.send_text("c", "alice", "live").await;
    let late =
        import(&gw, "c", json!([item("bob", "late", now_ms(), &[]), item("bob", "old", base + 5000, &[])])).await;
    assert!(late.expect_error(400, "INVALID_REQUEST").contains("[1].timestamp"), "{:?}", late.body);
    assert_eq!(texts(&gw, "c").await, ["live", "same", "same", "third", "second", "first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_windows_do_not_show_imports_live_and_no_webhook_is_sent() {
    let receiver = crate::webhooks::Receiver::start().await;
    let url = receiver.url.clone();
    let gw = spawn_gateway_with(move |config| config.webhooks.default_urls = vec![url]).await;
    gw.create_conversation("c", &["alice", "bob"]).await;
    let session = gw.connect("bob").await;
    let subscription = session.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.wait_for(|state| matches!(state, natter_client::SubscriptionState::Active { .. }))).await;
    import(&gw, "c", json!([item("alice", "history", now_ms() - 1000, &[])])).await.expect(200);
    gw.send_text("c", "alice", "live").await;
    let state = within(subscription.wait_for(|state| !messages(state).is_empty())).await;
    assert_eq!(texts_of(&state), ["live"], "the import is not shown live; the next event still follows on");
    assert_eq!(gw.frames_of_type("resumed") + gw.frames_of_type("snapshot-not-resumed"), 0, "no hole was seen");
    let other = gw.connect("alice").await;
    let fresh = other.conversation("c").subscribe_messages().await.unwrap();
    let state = within(fresh.wait_for(|state| {
        matches!(state, natter_client::SubscriptionState::Active { latest_snapshot: Some(window), .. } if window.len() == 2)
    }))
    .await;
    assert_eq!(texts_of(&state), ["live", "history"], "a new snapshot has it");
    gw.assert_frames_valid();
    let events =
        receiver.wait_for("the live message", |events| events.iter().any(|e| e["type"] == "message.sent")).await;
    let sent: Vec<_> = events.iter().filter(|e| e["type"] == "message.sent").collect();
    assert_eq!(sent.len(), 1, "no webhook for the import: {events:#?}");
    assert_eq!(sent[0]["data"]["message"]["text"], "live");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!receiver.acknowledged().iter().any(|e| e["data"]["message"]["origin"] == "import"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_attachment_is_the_file() {
    let gw = spawn_gateway().await;
    gw.create_conversation("c", &["alice"]).await;
    let form = Form::new()
        .part("file", Part::bytes(&b"hello"[..]).file_name("a.txt").mime_str("text/plain").unwrap())
        .text("filename", "a.txt");
    let upload = gw.client.post(gw.url("/files")).bearer_auth(SECRET).multipart(form).send().await.unwrap();
    let token = upload.json::<Value>().await.unwrap()["attachmentToken"].as_str().unwrap().to_owned();
    let mut with_file = item("alice", "", now_ms() - 10, &[]);
    with_file["attachmentToken"] = json!(token);
    let id = import(&gw, "c", json!([with_file])).await.expect(200)[0]["id"].as_str().unwrap().to_owned();
    let message = gw.get(&format!("/conversations/c/messages/{id}")).await;
    assert_eq!(message.expect(200)["attachment"]["size"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_import_is_refused_with_the_field_named_and_writes_nothing() {
    let gw = spawn_gateway().await;
    gw.create_conversation("c", &["alice", "bob"]).await;
    gw.create_user("carol").await;
    let t = now_ms() - 1000;
    let ok = item("alice", "fine", t, &[]);
    let without = |field: &str| {
        let mut item = item("alice", "x", t, &[]);
        item.as_object_mut().unwrap().remove(field);
        item
    };
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!([]), 400, "INVALID_REQUEST", "1 to 10"),
        (Value::Array((0..11).map(|_| ok.clone()).collect()), 400, "INVALID_REQUEST", "1 to 10"),
        (json!([ok.clone(), without("type")]), 400, "INVALID_REQUEST", "[1].type"),
        (json!([without("sender")]), 400, "INVALID_REQUEST", "[0].sender"),
        (json!([without("text")]), 400, "INVALID_REQUEST", "[0].text"),
        (json!([without("timestamp")]), 400, "INVALID_REQUEST", "[0].timestamp"),
        (json!([without("readBy")]), 400, "INVALID_REQUEST", "[0].readBy"),
        (
            json!([{"type": "SystemMessage", "text": "x", "timestamp": t, "readBy": []}]),
            400,
            "INVALID_REQUEST",
            "UserMessage",
        ),
        (json!([item("alice", "", t, &[])]), 400, "INVALID_REQUEST", "[0].text"),
        (json!([ok.clone(), item("alice", "x", now_ms() + 3_600_000, &[])]), 400, "INVALID_REQUEST", "future"),
        (json!([ok.clone(), item("alice", "x", t, &["carol"])]), 400, "INVALID_REQUEST", "carol"),
        (
            json!([{"type": "UserMessage", "sender": "alice", "text": "x", "timestamp": t, "readBy": [], "attachmentToken": "nope"}]),
            400,
            "INVALID_REQUEST",
            "[0].text",
        ),
        (
            json!([{"type": "UserMessage", "sender": "alice", "text": "", "timestamp": t, "readBy": [], "attachmentToken": "nope"}]),
            400,
            "INVALID_REQUEST",
            "attachmentToken",
        ),
        (json!({"not": "an array"}), 400, "INVALID_BODY", "expected a sequence"),
    ];
    for (body, status, code, names) in cases {
        let reply = import(&gw, "c", body.clone()).await;
        let reasons = reply.expect_error(status, code);
        assert!(reasons.contains(names), "{body}: {reasons}");
    }
    let outsider = import(&gw, "c", json!([ok.clone(), item("carol", "x", t, &[])])).await;
    assert!(outsider.status.is_client_error(), "{:?}", outsider.body);
    assert!(format!("{}", outsider.body).contains("carol"), "{:?}", outsider.body);
    import(&gw, "nowhere", json!([ok.clone()])).await.expect(404);
    let unauthenticated =
        gw.send(reqwest::Method::POST, &gw.url("/import/conversations/c/messages"), None, Some(json!([ok]))).await;
    assert_eq!(unauthenticated.status, 401);
    assert!(texts(&gw, "c").await.is_empty(), "nothing was written");
}
