use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn put_joins_with_defaults_and_overwrites_settings() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a"]).await;
    gateway.create_user("b").await;
    gateway.put("/conversations/c/participants/b", json!({ "access": "Read", "notify": false })).await.expect(200);
    let reply = gateway.get("/conversations/c").await;
    assert_eq!(reply.expect(200)["participants"]["b"], json!({ "access": "Read", "notify": false, "isUnread": false }));
    // PUT overwrites: what is not given goes back to the default.
    gateway.put("/conversations/c/participants/b", json!({ "notify": "MentionsOnly" })).await.expect(200);
    let reply = gateway.get("/conversations/c").await;
    assert_eq!(reply.expect(200)["participants"]["b"]["access"], "ReadWrite");
    assert_eq!(reply.expect(200)["participants"]["b"]["notify"], "MentionsOnly");
}

#[tokio::test]
async fn patch_changes_only_given_fields_of_an_existing_participant() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a"]).await;
    gateway.patch("/conversations/c/participants/a", json!({ "notify": "MentionsOnly" })).await.expect(200);
    let reply = gateway.get("/conversations/c").await;
    assert_eq!(reply.expect(200)["participants"]["a"]["access"], "ReadWrite");
    assert_eq!(reply.expect(200)["participants"]["a"]["notify"], "MentionsOnly");
    gateway.create_user("stranger").await;
    gateway
        .patch("/conversations/c/participants/stranger", json!({ "access": "Read" }))
        .await
        .expect_error(404, "PARTICIPANT_NOT_FOUND");
    gateway
        .patch("/conversations/c/participants/a", json!({ "access": "Admin" }))
        .await
        .expect_error(400, "INVALID_REQUEST");
    gateway
        .patch("/conversations/c/participants/a", json!({ "notify": "sometimes" }))
        .await
        .expect_error(400, "INVALID_BODY");
}

#[tokio::test]
async fn joining_needs_an_existing_user_and_conversation() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a"]).await;
    gateway.put("/conversations/c/participants/ghost", json!({})).await.expect_error(404, "USER_NOT_FOUND");
    gateway.put("/conversations/none/participants/a", json!({})).await.expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn delete_removes_a_participant_and_is_idempotent() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a", "b"]).await;
    gateway.delete("/conversations/c/participants/b").await.expect(200);
    gateway.delete("/conversations/c/participants/b").await.expect(200);
    let reply = gateway.get("/conversations/c").await;
    assert!(reply.expect(200)["participants"].get("b").is_none());
    gateway.delete("/conversations/none/participants/b").await.expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn read_access_cannot_send_and_non_participants_cannot_send() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["writer"]).await;
    gateway.create_user("reader").await;
    gateway.create_user("outsider").await;
    gateway.put("/conversations/c/participants/reader", json!({ "access": "Read" })).await.expect(200);
    let send = |sender: &'static str| {
        let gateway = &gateway;
        async move {
            gateway
                .post("/conversations/c/messages", json!([{ "type": "UserMessage", "sender": sender, "text": "x" }]))
                .await
        }
    };
    let reasons = send("reader").await.expect_error(403, "READ_ONLY_ACCESS");
    assert!(reasons.contains("reader"), "{reasons}");
    let reasons = send("outsider").await.expect_error(403, "NOT_A_PARTICIPANT");
    assert!(reasons.contains("[0].sender"), "{reasons}");
    assert_eq!(gateway.get("/conversations/c/messages").await.expect(200)["data"], json!([]));
}

#[tokio::test]
async fn marking_read_and_unread_follows_seed_001() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a", "b"]).await;
    let message = gateway.send_text("c", "a", "hello b").await;
    let conversation = gateway.get("/conversations/c").await;
    assert_eq!(conversation.expect(200)["participants"]["b"]["isUnread"], true);
    assert_eq!(conversation.expect(200)["participants"]["a"]["isUnread"], false);
    assert_eq!(gateway.get(&format!("/conversations/c/messages/{message}")).await.expect(200)["readBy"], json!([]));

    gateway.patch("/users/b/conversations/c", json!({ "isUnread": false })).await.expect(200);
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["b"]["isUnread"], false);
    let read = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(read.expect(200)["readBy"], json!(["b"]), "readBy never includes the sender");

    // Marking unread leaves the messages' read state alone.
    gateway.patch("/users/b/conversations/c", json!({ "isUnread": true })).await.expect(200);
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["b"]["isUnread"], true);
    assert_eq!(gateway.get(&format!("/conversations/c/messages/{message}")).await.expect(200)["readBy"], json!(["b"]));
    // Omitted or null changes nothing.
    gateway.patch("/users/b/conversations/c", json!({ "isUnread": null })).await.expect(200);
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["b"]["isUnread"], true);

    // The legacy endpoint marks read.
    gateway.post("/conversations/c/readBy/b", json!(null)).await.expect(200);
    assert_eq!(gateway.get("/conversations/c").await.expect(200)["participants"]["b"]["isUnread"], false);

    gateway.create_user("x").await;
    gateway
        .patch("/users/x/conversations/c", json!({ "isUnread": false }))
        .await
        .expect_error(404, "PARTICIPANT_NOT_FOUND");
}

#[tokio::test]
async fn read_by_stays_empty_above_300_participants() {
    let gateway = spawn_gateway().await;
    let ids: Vec<String> = (0..301).map(|i| format!("p{i:03}")).collect();
    for chunk in ids.chunks(100) {
        let batch: serde_json::Map<_, _> = chunk.iter().map(|id| (id.clone(), json!({ "name": id }))).collect();
        gateway.put("/users", serde_json::Value::Object(batch)).await.expect(200);
    }
    gateway.put("/conversations/big", json!({ "participants": ids[..300] })).await.expect(200);
    let message = gateway.send_text("big", "p000", "hello all").await;
    gateway.patch("/users/p001/conversations/big", json!({ "isUnread": false })).await.expect(200);
    let path = format!("/conversations/big/messages/{message}");
    assert_eq!(gateway.get(&path).await.expect(200)["readBy"], json!(["p001"]), "300 participants: filled");

    gateway.put("/conversations/big", json!({ "participants": [ids[300]] })).await.expect(200);
    assert_eq!(gateway.get(&path).await.expect(200)["readBy"], json!([]), "301 participants: empty");
}
