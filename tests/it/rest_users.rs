use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn put_creates_a_user_and_get_returns_every_field() {
    let gateway = spawn_gateway().await;
    gateway
        .put(
            "/users/alice",
            json!({
                "name": "Alice", "email": ["a@example.com"], "phone": "+3100", "photoUrl": "https://x/a.png",
                "locale": "nl-NL", "role": "buyer", "custom": { "tier": "gold" }, "pushTokens": { "fcm:abc": true }
            }),
        )
        .await
        .expect(200);
    let user = gateway.get("/users/alice").await;
    let user = user.expect(200);
    assert_eq!(user["id"], "alice");
    assert_eq!(user["name"], "Alice");
    assert_eq!(user["email"], json!(["a@example.com"]));
    assert_eq!(user["phone"], json!(["+3100"]));
    assert_eq!(user["role"], "buyer");
    assert_eq!(user["custom"], json!({ "tier": "gold" }));
    assert_eq!(user["pushTokens"], json!({ "fcm:abc": true }));
    assert!(user["createdAt"].as_i64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn put_patches_only_the_given_fields_and_null_clears() {
    let gateway = spawn_gateway().await;
    gateway
        .put("/users/bob", json!({ "name": "Bob", "photoUrl": "p", "custom": { "a": "1", "b": "2" } }))
        .await
        .expect(200);
    gateway.put("/users/bob", json!({ "photoUrl": null, "custom": { "a": null, "c": "3" } })).await.expect(200);
    let user = gateway.get("/users/bob").await;
    let user = user.expect(200);
    assert_eq!(user["name"], "Bob");
    assert_eq!(user["photoUrl"], json!(null));
    assert_eq!(user["custom"], json!({ "b": "2", "c": "3" }));
    assert_eq!(user["role"], "default");
}

#[tokio::test]
async fn creating_a_user_without_a_name_is_400() {
    let gateway = spawn_gateway().await;
    let reasons =
        gateway.put("/users/nameless", json!({ "email": ["x@y"] })).await.expect_error(400, "INVALID_REQUEST");
    assert!(reasons.contains("name"), "{reasons}");
    gateway.get("/users/nameless").await.expect_error(404, "USER_NOT_FOUND");
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_400_naming_the_field() {
    let gateway = spawn_gateway().await;
    let reasons =
        gateway.put("/users/x", json!({ "name": "X", "custom": { "n": 5 } })).await.expect_error(400, "INVALID_BODY");
    assert!(reasons.contains("custom"), "{reasons}");
    let reply = gateway
        .client
        .put(gateway.url("/users/x"))
        .bearer_auth(SECRET)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
}

#[tokio::test]
async fn listing_users_pages_by_id() {
    let gateway = spawn_gateway().await;
    for id in ["u1", "u2", "u3", "u4", "u5"] {
        gateway.create_user(id).await;
    }
    let first = gateway.get("/users?limit=2").await;
    let ids: Vec<_> = first.expect(200)["data"].as_array().unwrap().iter().map(|u| u["id"].clone()).collect();
    assert_eq!(ids, vec![json!("u1"), json!("u2")]);
    let next = gateway.get("/users?limit=2&startingAfter=u2").await;
    let ids: Vec<_> = next.expect(200)["data"].as_array().unwrap().iter().map(|u| u["id"].clone()).collect();
    assert_eq!(ids, vec![json!("u3"), json!("u4")]);
    gateway.get("/users?limit=101").await.expect_error(400, "INVALID_LIMIT");
    gateway.get("/users?limit=abc").await.expect_error(400, "INVALID_LIMIT");
}

#[tokio::test]
async fn batch_upsert_is_all_or_nothing() {
    let gateway = spawn_gateway().await;
    gateway.put("/users", json!({ "b1": { "name": "One" }, "b2": { "name": "Two" } })).await.expect(200);
    gateway.get("/users/b1").await.expect(200);
    gateway.get("/users/b2").await.expect(200);

    let reasons = gateway
        .put("/users", json!({ "b3": { "name": "Three" }, "b4": { "email": ["no name"] }, "b1": { "name": "Uno" } }))
        .await
        .expect_error(400, "INVALID_REQUEST");
    assert!(reasons.contains("b4"), "{reasons}");
    gateway.get("/users/b3").await.expect_error(404, "USER_NOT_FOUND");
    assert_eq!(gateway.get("/users/b1").await.expect(200)["name"], "One");
}

#[tokio::test]
async fn a_batch_of_more_than_100_users_is_refused_whole() {
    let gateway = spawn_gateway().await;
    let batch: serde_json::Map<_, _> =
        (0..101).map(|i| (format!("user{i}"), json!({ "name": format!("N{i}") }))).collect();
    gateway.put("/users", serde_json::Value::Object(batch)).await.expect_error(400, "INVALID_REQUEST");
    gateway.get("/users/user0").await.expect_error(404, "USER_NOT_FOUND");
}

#[tokio::test]
async fn a_users_conversations_carry_that_users_own_fields() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c1", &["alice", "bob"]).await;
    gateway.create_conversation("c2", &["alice"]).await;
    gateway.send_text("c1", "bob", "hi alice").await;
    gateway.send_text("c1", "bob", "are you there").await;
    let reply = gateway.get("/users/alice/conversations").await;
    let data = reply.expect(200)["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "c1", "most recent activity first");
    assert_eq!(data[0]["isUnread"], true);
    assert_eq!(data[0]["unreadMessageCount"], 2);
    assert_eq!(data[0]["access"], "ReadWrite");
    assert_eq!(data[0]["notify"], true);
    assert!(data[0]["joinedAt"].is_i64());
    assert_eq!(data[0]["lastMessage"]["text"], "are you there");
    assert_eq!(data[1]["isUnread"], false);

    let unread = gateway.get("/users/alice/conversations?unreadsOnly=true").await;
    assert_eq!(unread.expect(200)["data"].as_array().unwrap().len(), 1);
    let filtered = gateway.get(&format!("/users/alice/conversations?filter={}", enc(r#"{"isUnread":false}"#))).await;
    let data = filtered.expect(200)["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], "c2");
    gateway.get("/users/nobody/conversations").await.expect_error(404, "USER_NOT_FOUND");
}

pub fn enc(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}
