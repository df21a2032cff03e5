use natter_client::ClientError;
use serde_json::json;

use crate::helpers::*;

#[track_caller]
fn refused(result: Result<impl std::fmt::Debug, ClientError>, expected: &str) -> String {
    match result {
        Err(ClientError::Refused { code, reasons }) => {
            assert_eq!(code, expected, "{reasons:?}");
            reasons.join("; ")
        }
        other => panic!("expected {expected}, got {other:?}"),
    }
}

#[tokio::test]
async fn users_send_edit_and_delete_their_own_messages_over_the_socket() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let alice = gateway.connect("alice").await;
    let conversation = alice.conversation("c");
    let sent = conversation
        .send_with(
            json!({ "text": "*hi* <https://evil.example|bank>", "custom": { "k": "v" }, "idempotencyKey": "once" }),
        )
        .await
        .unwrap();
    let again = conversation
        .send_with(json!({ "text": "*hi* <https://evil.example|bank>", "idempotencyKey": "once" }))
        .await
        .unwrap();
    assert_eq!(sent, again, "an idempotency key dedupes socket sends too");
    let rest = gateway.get(&format!("/conversations/c/messages/{sent}")).await;
    assert_eq!(rest.expect(200)["text"], "*hi* <https://evil.example|bank>");
    assert_eq!(rest.expect(200)["origin"], "rest");

    let subscription = conversation.subscribe_messages().await.unwrap();
    let state = within(subscription.connected()).await.unwrap();
    let message = &messages(&state)[0];
    // Users' text is parsed without links: the REST text and the snapshot content agree on that.
    assert_eq!(
        message.content,
        vec![
            json!({ "type": "text", "children": [{ "type": "bold", "children": ["hi"] }, " <https://evil.example|bank>"] })
        ]
    );

    conversation.message(&sent).edit(json!({ "text": "edited", "custom": { "k": null, "n": "1" } })).await.unwrap();
    let state = within(subscription.wait_for(|state| texts_of(state) == ["edited"])).await;
    let edited = &messages(&state)[0];
    assert!(edited.edited_at.is_some());
    assert_eq!(edited.custom, [("n".to_owned(), "1".to_owned())].into());

    conversation.message(&sent).delete_fields(&["custom.n"]).await.unwrap();
    within(subscription.wait_for(|state| messages(state)[0].custom.is_empty())).await;
    refused(conversation.message(&sent).delete_fields(&["text"]).await, "INVALID_REQUEST");

    // Content blocks, with a location.
    let located = conversation
        .send_with(json!({ "content": [{ "type": "location", "latitude": 51.48, "longitude": -3.17 }] }))
        .await
        .unwrap();
    let state = within(subscription.wait_for(|state| messages(state).len() == 2)).await;
    assert_eq!(messages(&state)[0].content, vec![json!({ "type": "location", "latitude": 51.48, "longitude": -3.17 })]);
    assert_eq!(messages(&state)[0].plaintext, "📍");

    conversation.message(&located).delete().await.unwrap();
    conversation.message("msg_never_existed").delete().await.unwrap();
    within(subscription.wait_for(|state| messages(state).len() == 1)).await;
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn refused_writes_get_error_replies_and_the_socket_stays_open() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway.create_user("reader").await;
    gateway.create_user("outsider").await;
    gateway.put("/conversations/c/participants/reader", json!({ "access": "Read" })).await.expect(200);
    let bobs = gateway.send_text("c", "bob", "bob's message").await;

    let reader = gateway.connect("reader").await;
    refused(reader.conversation("c").send("may I?").await, "READ_ONLY_ACCESS");
    let outsider = gateway.connect("outsider").await;
    refused(outsider.conversation("c").send("hello?").await, "NOT_A_PARTICIPANT");
    refused(outsider.conversation("c").mark_as_read().await, "NOT_A_PARTICIPANT");
    refused(outsider.conversation("c").message(&bobs).delete().await, "NOT_A_PARTICIPANT");

    let alice = gateway.connect("alice").await;
    let conversation = alice.conversation("c");
    refused(conversation.message(&bobs).edit(json!({ "text": "mine now" })).await, "UNAUTHORIZED_TO_EDIT");
    refused(conversation.message(&bobs).delete().await, "UNAUTHORIZED_TO_EDIT");
    let link = json!({ "content": [{ "type": "text", "children": [{ "type": "link", "url": "https://x.io", "children": ["x"] }] }] });
    let reasons = refused(conversation.send_with(link).await, "INVALID_REQUEST");
    assert!(reasons.contains("link"), "{reasons}");
    let button = json!({ "content": [{ "type": "text", "children": [{ "type": "actionButton", "action": "buy", "params": {}, "children": ["Buy"] }] }] });
    refused(conversation.send_with(button).await, "INVALID_REQUEST");
    let lying = json!({ "content": [{ "type": "text", "children": [{ "type": "autoLink", "url": "https://evil.io", "text": "bank.com" }] }] });
    refused(conversation.send_with(lying).await, "INVALID_REQUEST");
    refused(conversation.send("").await, "INVALID_REQUEST");
    refused(conversation.send_with(json!({ "text": "x", "referencedMessageId": "msg_nope" })).await, "INVALID_REQUEST");
    refused(alice.conversation("missing").send("anyone?").await, "CONVERSATION_NOT_FOUND");
    refused(conversation.message(&bobs).reaction("not an emoji").add().await, "INVALID_REQUEST");
    refused(conversation.message(&bobs).reaction(&format!(":{}:", "a".repeat(49))).add().await, "INVALID_REQUEST");
    refused(conversation.message("msg_nope").reaction("👍").add().await, "MESSAGE_NOT_FOUND");

    // Nothing changed, and the same connection still works.
    let rest = gateway.get("/conversations/c/messages").await;
    assert_eq!(rest.expect(200)["data"].as_array().unwrap().len(), 1);
    assert!(!conversation.send("still connected").await.unwrap().is_empty());
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn reactions_over_the_socket_follow_the_rest_rules() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let message = gateway.send_text("c", "alice", "react").await;
    let alice = gateway.connect("alice").await;
    let target = alice.conversation("c").message(&message);
    for i in 0..50 {
        target.reaction(&format!(":e{i}:")).add().await.unwrap();
    }
    refused(target.reaction(":e50:").add().await, "TOO_MANY_REACTIONS");
    target.reaction(":e0:").add().await.unwrap();
    target.reaction(":e0:").remove().await.unwrap();
    target.reaction(":e0:").remove().await.unwrap();
    let rest = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(rest.expect(200)["reactions"].as_array().unwrap().len(), 49);
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn mark_as_read_over_the_socket_clears_unread() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway.send_text("c", "alice", "ping").await;
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["bob"]["isUnread"], true);
    let bob = gateway.connect("bob").await;
    bob.conversation("c").mark_as_read().await.unwrap();
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["bob"]["isUnread"], false);
}

#[tokio::test]
async fn content_is_one_block_as_an_object_or_an_array_and_files_take_the_rest_name_of_their_token() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(&b"img"[..]).file_name("a.png"))
        .text("filename", "a.png");
    let upload = gateway.client.post(gateway.url("/files")).bearer_auth(SECRET).multipart(form).send().await.unwrap();
    let token = upload.json::<serde_json::Value>().await.unwrap()["attachmentToken"].as_str().unwrap().to_owned();
    let alice = gateway.connect("alice").await;
    let conversation = alice.conversation("c");
    let subscription = conversation.subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    // One block as an object, and a file block with the REST name of its token.
    conversation.send_with(json!({ "content": { "type": "text", "children": ["as an object"] } })).await.unwrap();
    conversation.send_with(json!({ "content": { "type": "file", "attachmentToken": token } })).await.unwrap();
    let state = within(subscription.wait_for(|state| messages(state).len() == 2)).await;
    assert_eq!(messages(&state)[1].plaintext, "as an object");
    assert_eq!(messages(&state)[0].content[0]["filename"], "a.png");
    // Two blocks are refused, and the error names the field.
    let two = json!({ "content": [{ "type": "text", "children": ["a"] }, { "type": "text", "children": ["b"] }] });
    match conversation.send_with(two).await {
        Err(natter_client::ClientError::Refused { code, reasons }) => {
            assert_eq!(code, "INVALID_REQUEST");
            assert!(reasons.iter().any(|reason| reason.starts_with("content:")), "{reasons:?}");
        }
        other => panic!("two blocks were not refused: {other:?}"),
    }
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn content_sent_over_the_socket_arrives_as_it_was_sent() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let alice = gateway.connect("alice").await;
    let conversation = alice.conversation("c");
    let subscription = conversation.subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    let sent = [
        json!(["*not bold*"]),
        json!(["- x"]),
        json!([{ "type": "autoLink", "url": "https://www.example.com/x", "text": "www.example.com/x" }]),
        json!(["see ", { "type": "autoLink", "url": "https://example.com", "text": "example.com" }]),
        json!([{ "type": "bold", "children": ["real"] }, " and a\\backslash"]),
    ];
    let mut ids = Vec::new();
    for children in &sent {
        let id = conversation
            .send_with(json!({ "content": [{ "type": "text", "children": children }] }))
            .await
            .unwrap_or_else(|error| panic!("{children}: {error}"));
        ids.push(id);
    }
    let state = within(subscription.wait_for(|state| messages(state).len() == sent.len())).await;
    let mut arrived: Vec<_> =
        messages(&state).into_iter().map(|message| message.content[0]["children"].clone()).collect();
    arrived.reverse();
    assert_eq!(arrived, sent.to_vec(), "each arrived as sent");
    // The REST text is the same message, as markup that says exactly that.
    let first = gateway.get(&format!("/conversations/c/messages/{}", ids[0])).await;
    assert_eq!(first.expect(200)["text"], "\\*not bold\\*");
    gateway.assert_frames_valid();
}

#[tokio::test]
async fn a_client_frame_many_times_the_read_buffer_arrives_whole() {
    // The socket's read buffer is 512 bytes; a frame far larger is read in steps and must come out intact, with
    // multi-byte characters cut across the steps.
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let alice = gateway.connect("alice").await;
    let text: String = (0..6000).map(|i| format!("{i}é—")).collect();
    assert!(text.len() > 40 * 1024, "{} bytes", text.len());
    let sent = alice.conversation("c").send_with(json!({ "text": text })).await.unwrap();
    let rest = gateway.get(&format!("/conversations/c/messages/{sent}")).await;
    assert_eq!(rest.expect(200)["text"], text.as_str());
    // And the connection goes on reading small frames after it.
    let again = alice.conversation("c").send_with(json!({ "text": "after" })).await.unwrap();
    assert_eq!(gateway.get(&format!("/conversations/c/messages/{again}")).await.expect(200)["text"], "after");
}
