//! Size limits: each is answered with a clear error, and the gateway goes on serving.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn oversized_bodies_texts_custom_maps_ids_and_batches_are_refused_clearly() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["u"]).await;
    let messages = "/conversations/c/messages";

    let huge = "x".repeat(3 * 1024 * 1024);
    let reply = gateway.post(messages, json!([{ "type": "SystemMessage", "text": huge }])).await;
    reply.expect_error(413, "PAYLOAD_TOO_LARGE");

    let long_text = "x".repeat(64 * 1024 + 1);
    let reasons = gateway
        .post(messages, json!([{ "type": "SystemMessage", "text": long_text }]))
        .await
        .expect_error(400, "INVALID_REQUEST");
    assert!(reasons.contains("text"), "{reasons}");

    let wide: serde_json::Map<String, Value> = (0..101).map(|i| (format!("k{i}"), json!("v"))).collect();
    let reasons = gateway
        .post(messages, json!([{ "type": "SystemMessage", "text": "x", "custom": wide }]))
        .await
        .expect_error(400, "INVALID_REQUEST");
    assert!(reasons.contains("custom"), "{reasons}");
    let deep_value = json!({ "k": "v".repeat(4097) });
    gateway.put("/users/u", json!({ "custom": deep_value })).await.expect_error(400, "INVALID_REQUEST");

    let long_id = "u".repeat(256);
    gateway.put(&format!("/users/{long_id}"), json!({ "name": "x" })).await.expect_error(400, "INVALID_REQUEST");
    let long_key = "k".repeat(256);
    gateway
        .post(messages, json!([{ "type": "SystemMessage", "text": "x", "idempotencyKey": long_key }]))
        .await
        .expect_error(400, "INVALID_REQUEST");

    let eleven: Vec<Value> = (0..11).map(|_| json!({ "type": "SystemMessage", "text": "x" })).collect();
    gateway.post(messages, Value::Array(eleven)).await.expect_error(400, "INVALID_REQUEST");

    // Nothing was stored, and the gateway still serves.
    assert_eq!(gateway.get(messages).await.expect(200)["data"], json!([]));
    gateway.send_text("c", "u", "still fine").await;
}
