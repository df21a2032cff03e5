use serde_json::{json, Value};

use crate::helpers::*;

const MESSAGES: &str = "/conversations/c/messages";

async fn setup() -> TestGateway {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway
}

fn texts(reply: &Reply) -> Vec<String> {
    reply.expect(200)["data"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_batch_of_user_and_system_messages_returns_ids_in_order() {
    let gateway = setup().await;
    let reply = gateway
        .post(
            MESSAGES,
            json!([
                { "type": "UserMessage", "sender": "alice", "text": "hi", "custom": { "k": "v" } },
                { "type": "SystemMessage", "text": "*order* received" }
            ]),
        )
        .await;
    let ids = reply.expect(200).as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let first = ids[0]["id"].as_str().unwrap();
    assert!(first.starts_with("msg_") && first.len() == 26, "{first}");

    let message = gateway.get(&format!("{MESSAGES}/{first}")).await;
    let message = message.expect(200);
    assert_eq!(message["conversationId"], "c");
    assert_eq!(message["type"], "UserMessage");
    assert_eq!(message["senderId"], "alice");
    assert_eq!(message["text"], "hi");
    assert_eq!(message["custom"], json!({ "k": "v" }));
    assert_eq!(message["origin"], "rest");
    assert_eq!(message["editedAt"], Value::Null);
    assert_eq!(message["attachment"], Value::Null);
    assert_eq!(message["location"], Value::Null);
    assert_eq!(message["referencedMessageId"], Value::Null);
    let system = gateway.get(&format!("{MESSAGES}/{}", ids[1]["id"].as_str().unwrap())).await;
    assert_eq!(system.expect(200)["type"], "SystemMessage");
    assert_eq!(system.expect(200)["senderId"], Value::Null);
    assert_eq!(texts(&gateway.get(MESSAGES).await), vec!["*order* received", "hi"], "newest first");
}

#[tokio::test]
async fn batch_size_must_be_one_to_ten() {
    let gateway = setup().await;
    gateway.post(MESSAGES, json!([])).await.expect_error(400, "INVALID_REQUEST");
    let eleven: Vec<_> = (0..11).map(|i| json!({ "type": "SystemMessage", "text": format!("m{i}") })).collect();
    gateway.post(MESSAGES, Value::Array(eleven)).await.expect_error(400, "INVALID_REQUEST");
    let ten: Vec<_> = (0..10).map(|i| json!({ "type": "SystemMessage", "text": format!("m{i}") })).collect();
    gateway.post(MESSAGES, Value::Array(ten)).await.expect(200);
    gateway
        .post(MESSAGES, json!({ "type": "SystemMessage", "text": "not an array" }))
        .await
        .expect_error(400, "INVALID_BODY");
}

#[tokio::test]
async fn sender_and_type_rules_name_the_offending_item() {
    let gateway = setup().await;
    let cases = [
        (json!({ "type": "SystemMessage", "sender": "alice", "text": "x" }), "[1].sender"),
        (json!({ "type": "UserMessage", "text": "x" }), "[1].sender"),
        (json!({ "sender": "alice", "text": "x" }), "[1].type"),
        (json!({ "type": "Shout", "text": "x" }), "[1].type"),
        (json!({ "type": "SystemMessage" }), "[1]"),
        (json!({ "type": "SystemMessage", "text": "x", "location": [1.0, 2.0] }), "[1]"),
        (json!({ "type": "SystemMessage", "location": [1.0, 2.0] }), "[1].location"),
        (json!({ "type": "UserMessage", "sender": "alice", "location": [91.0, 0.0] }), "[1].location"),
        (json!({ "type": "UserMessage", "sender": "alice", "location": [1.0] }), "[1].location"),
        (
            json!({ "type": "UserMessage", "sender": "alice", "text": "x", "referencedMessageId": "msg_nope" }),
            "[1].referencedMessageId",
        ),
        (json!({ "type": "UserMessage", "sender": "alice", "attachmentToken": "bogus" }), "[1].attachmentToken"),
    ];
    for (bad, field) in cases {
        let batch = json!([{ "type": "SystemMessage", "text": "fine" }, bad]);
        let reasons = gateway.post(MESSAGES, batch).await.expect_error(400, "INVALID_REQUEST");
        assert!(reasons.contains(field), "expected {field} in: {reasons}");
    }
    // All or nothing: the valid first item of each batch was not stored.
    assert_eq!(texts(&gateway.get(MESSAGES).await), Vec::<String>::new());
}

/// Concurrent writes share a commit; a batch rejected after its first item was written is undone alone, while the
/// writes committed with it stand (the writer then runs the group again, each write in its own savepoint).
#[tokio::test]
async fn a_batch_rejected_halfway_among_concurrent_writes_loses_nothing_else() {
    let gateway = setup().await;
    let sends = (0..40).map(|i| {
        let body = if i % 2 == 0 {
            json!([{ "type": "UserMessage", "sender": "alice", "text": format!("ok{i}") }])
        } else {
            json!([
                { "type": "SystemMessage", "text": format!("undone{i}") },
                { "type": "UserMessage", "sender": "bob", "text": "x", "referencedMessageId": "msg_nope" }
            ])
        };
        let gateway = &gateway;
        async move { (i, gateway.post(MESSAGES, body).await) }
    });
    for (i, reply) in futures::future::join_all(sends).await {
        if i % 2 == 0 {
            reply.expect(200);
        } else {
            reply.expect_error(400, "INVALID_REQUEST");
        }
    }
    let mut stored = texts(&gateway.get(&format!("{MESSAGES}?limit=100")).await);
    stored.sort();
    let mut expected: Vec<String> = (0..40).step_by(2).map(|i| format!("ok{i}")).collect();
    expected.sort();
    assert_eq!(stored, expected);
}

/// A write rejected before it wrote anything shares its commit with the writes around it, which stand (the writer
/// goes on with the group rather than running it again); so does a batch rejected after writing its first item.
#[tokio::test]
async fn writes_rejected_before_and_after_writing_among_concurrent_writes_lose_nothing_else() {
    let gateway = setup().await;
    let reply_to_nothing =
        json!({ "type": "UserMessage", "sender": "bob", "text": "x", "referencedMessageId": "msg_nope" });
    let sends = (0..45).map(|i| {
        let body = match i % 3 {
            0 => json!([{ "type": "UserMessage", "sender": "alice", "text": format!("ok{i}") }]),
            1 => json!([reply_to_nothing]),
            _ => json!([{ "type": "SystemMessage", "text": format!("undone{i}") }, reply_to_nothing]),
        };
        let gateway = &gateway;
        async move { (i, gateway.post(MESSAGES, body).await) }
    });
    for (i, reply) in futures::future::join_all(sends).await {
        if i % 3 == 0 {
            reply.expect(200);
        } else {
            reply.expect_error(400, "INVALID_REQUEST");
        }
    }
    let mut stored = texts(&gateway.get(&format!("{MESSAGES}?limit=100")).await);
    stored.sort();
    let mut expected: Vec<String> = (0..45).step_by(3).map(|i| format!("ok{i}")).collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn custom_must_map_strings_to_strings() {
    let gateway = setup().await;
    let reasons = gateway
        .post(MESSAGES, json!([{ "type": "SystemMessage", "text": "x", "custom": { "n": 1 } }]))
        .await
        .expect_error(400, "INVALID_BODY");
    assert!(reasons.contains("custom"), "{reasons}");
}

#[tokio::test]
async fn sending_to_a_missing_conversation_is_404() {
    let gateway = setup().await;
    gateway
        .post("/conversations/nope/messages", json!([{ "type": "SystemMessage", "text": "x" }]))
        .await
        .expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn a_reply_names_its_referenced_message() {
    let gateway = setup().await;
    let original = gateway.send_text("c", "alice", "question?").await;
    let reply = gateway
        .post(
            MESSAGES,
            json!([{ "type": "UserMessage", "sender": "bob", "text": "answer", "referencedMessageId": original }]),
        )
        .await;
    let id = reply.expect(200)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(gateway.get(&format!("{MESSAGES}/{id}")).await.expect(200)["referencedMessageId"], original);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_original_id() {
    let gateway = setup().await;
    let batch = json!([
        { "type": "UserMessage", "sender": "alice", "text": "once", "idempotencyKey": "k1" },
        { "type": "SystemMessage", "text": "also once", "idempotencyKey": "k2" }
    ]);
    let first = gateway.post(MESSAGES, batch.clone()).await.expect(200).clone();
    let retry = gateway.post(MESSAGES, batch).await.expect(200).clone();
    assert_eq!(first, retry);
    assert_eq!(texts(&gateway.get(MESSAGES).await), vec!["also once", "once"]);

    // The key is scoped to the conversation.
    gateway.create_conversation("other", &["alice"]).await;
    let elsewhere = gateway
        .post(
            "/conversations/other/messages",
            json!([{ "type": "UserMessage", "sender": "alice", "text": "once", "idempotencyKey": "k1" }]),
        )
        .await;
    assert_ne!(elsewhere.expect(200)[0]["id"], first[0]["id"]);
}

#[tokio::test]
async fn listing_pages_backwards_from_the_newest() {
    let gateway = setup().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(gateway.send_text("c", "alice", &format!("m{i}")).await);
    }
    let first = gateway.get(MESSAGES).await;
    assert_eq!(texts(&first).len(), 10, "default limit is 10");
    assert_eq!(texts(&first)[0], "m24");
    let page = gateway.get(&format!("{MESSAGES}?limit=5&startingAfter={}", ids[20])).await;
    assert_eq!(texts(&page), vec!["m19", "m18", "m17", "m16", "m15"]);
    gateway.get(&format!("{MESSAGES}?limit=500")).await.expect_error(400, "INVALID_LIMIT");
    gateway.get(&format!("{MESSAGES}?startingAfter=msg_missing")).await.expect_error(400, "INVALID_REQUEST");
    gateway.get("/conversations/none/messages").await.expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn edit_changes_text_and_custom_and_mark_edited_sets_edited_at() {
    let gateway = setup().await;
    let id = gateway.send_text("c", "alice", "draft").await;
    let path = format!("{MESSAGES}/{id}");
    gateway.put(&path, json!({ "text": "final", "custom": { "a": "1" } })).await.expect(200);
    let message = gateway.get(&path).await;
    assert_eq!(message.expect(200)["text"], "final");
    assert_eq!(message.expect(200)["custom"], json!({ "a": "1" }));
    assert_eq!(message.expect(200)["editedAt"], Value::Null);

    gateway.put(&path, json!({ "markEdited": true, "custom": { "a": null, "b": "2" } })).await.expect(200);
    let message = gateway.get(&path).await;
    assert!(message.expect(200)["editedAt"].as_i64().unwrap() >= message.expect(200)["createdAt"].as_i64().unwrap());
    assert_eq!(message.expect(200)["custom"], json!({ "b": "2" }));
    assert_eq!(message.expect(200)["text"], "final");
    gateway.put(&format!("{MESSAGES}/msg_none"), json!({ "text": "x" })).await.expect_error(404, "MESSAGE_NOT_FOUND");
}

#[tokio::test]
async fn delete_one_and_delete_all() {
    let gateway = setup().await;
    let first = gateway.send_text("c", "alice", "one").await;
    let second = gateway.send_text("c", "alice", "two").await;
    gateway.delete(&format!("{MESSAGES}/{second}")).await.expect(200);
    gateway.get(&format!("{MESSAGES}/{second}")).await.expect_error(404, "MESSAGE_NOT_FOUND");
    gateway.delete(&format!("{MESSAGES}/{second}")).await.expect_error(404, "MESSAGE_NOT_FOUND");
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["lastMessage"]["id"], first, "lastMessage falls back");

    gateway.send_text("c", "bob", "three").await;
    gateway.delete(MESSAGES).await.expect(200);
    assert_eq!(texts(&gateway.get(MESSAGES).await), Vec::<String>::new());
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["lastMessage"], Value::Null);
    gateway.delete("/conversations/none/messages").await.expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn a_location_message_carries_latitude_and_longitude() {
    let gateway = setup().await;
    let reply = gateway
        .post(MESSAGES, json!([{ "type": "UserMessage", "sender": "alice", "location": [51.481083, -3.178306] }]))
        .await;
    let id = reply.expect(200)[0]["id"].as_str().unwrap().to_owned();
    let message = gateway.get(&format!("{MESSAGES}/{id}")).await;
    assert_eq!(message.expect(200)["location"], json!([51.481083, -3.178306]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_are_all_committed_exactly_once() {
    let gateway = std::sync::Arc::new(setup().await);
    let mut tasks = Vec::new();
    for writer in 0..20 {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                ids.push(gateway.send_text("c", "alice", &format!("w{writer}-{i}")).await);
            }
            ids
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("{MESSAGES}?limit=100&startingAfter={after}"),
            None => format!("{MESSAGES}?limit=100"),
        };
        let page = gateway.get(&path).await.expect(200)["data"].as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        cursor = Some(page.last().unwrap()["id"].as_str().unwrap().to_owned());
        stored.extend(page.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
    }
    sent.sort();
    stored.sort();
    assert_eq!(sent.len(), 200);
    assert_eq!(sent, stored);
}
