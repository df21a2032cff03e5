//! The authorization matrix: every REST route and socket operation tried with credentials that must not work.
//! Each is refused, nothing changes, and no response carries another app's data.

use natter_client::ClientError;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const OTHER_APP_MARKER: &str = "other-app-private-8c1f";

/// A route template with its parameters filled in for the test app.
fn concrete(path: &str, app: &str, message_id: &str) -> String {
    path.replace("{appId}", app)
        .replace("{userId}", "alice")
        .replace("{conversationId}", "c")
        .replace("{messageId}", message_id)
        .replace("{emoji}", "%F0%9F%91%8D")
        .replace("{fileId}", "nofile")
        .replace("{filename}", "x.txt")
}

/// What the test app holds, as REST shows it.
async fn state_of(gateway: &TestGateway) -> Value {
    json!({
        "users": gateway.get("/users?limit=100").await.body,
        "conversation": gateway.get("/conversations/c").await.body,
        "messages": gateway.get("/conversations/c/messages?limit=100").await.body,
    })
}

#[tokio::test]
async fn every_rest_route_refuses_wrong_credentials_and_changes_nothing() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let message = gateway.send_text("c", "alice", "hello").await;
    // The other app holds data that must never appear in an answer to these requests.
    let other = |path: &str| format!("{}/v1/{OTHER_APP}{path}", gateway.base);
    gateway
        .send(
            Method::PUT,
            &other(&format!("/users/{OTHER_APP_MARKER}")),
            Some(OTHER_SECRET),
            Some(json!({ "name": OTHER_APP_MARKER })),
        )
        .await
        .expect(200);
    let before = state_of(&gateway).await;

    let user_token = user_token("alice", None);
    let body = json!([{ "type": "SystemMessage", "text": "x" }]);
    let mut tried = 0;
    for (method, path) in natter::gateway::route_list() {
        if !path.starts_with("/v1/{appId}/") || path.ends_with("/realtime") || path.contains("{fileId}") {
            continue; // public, or authenticated by a user token (tested below)
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let ours = format!("{}{}", gateway.base, concrete(path, APP, &message));
        let theirs = format!("{}{}", gateway.base, concrete(path, OTHER_APP, &message));
        for (why, url, token) in [
            ("another app's secret", &ours, Some(OTHER_SECRET)),
            ("a user token", &ours, Some(user_token.as_str())),
            ("no credential", &ours, None),
            ("this app's secret on another app", &theirs, Some(SECRET)),
        ] {
            let reply = gateway.send(method.clone(), url, token, Some(body.clone())).await;
            assert_eq!(reply.status, 401, "{method} {path} with {why}: {}", reply.body);
            assert_eq!(reply.body["errorCode"], "UNAUTHORIZED", "{method} {path} with {why}");
            assert!(!reply.body.to_string().contains(OTHER_APP_MARKER), "{method} {path} leaked another app's data");
            tried += 1;
        }
    }
    assert!(tried >= 4 * 20, "only {tried} requests tried");
    assert_eq!(state_of(&gateway).await, before, "a refused request changed something");
    // The other app's data never shows in this app's lists either.
    assert!(!gateway.get("/users?limit=100").await.body.to_string().contains(OTHER_APP_MARKER));
}

#[tokio::test]
async fn socket_operations_are_refused_to_those_without_the_right() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    gateway.create_user("outsider").await;
    gateway.create_user("reader").await;
    gateway.put("/conversations/c/participants/reader", json!({ "access": "Read" })).await.expect(200);
    let alices = gateway.send_text("c", "alice", "alice's words").await;
    let before = state_of(&gateway).await;

    // Tokens for another app, or signed with the wrong secret, never connect.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "tokenType": "user", "iss": APP, "sub": "alice" }),
        &jsonwebtoken::EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
    )
    .unwrap();
    let url = format!("{}/v1/{APP}/realtime?token={forged}", gateway.ws_base());
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    let refused = |result: Result<(), ClientError>, code: &str, what: &str| match result {
        Err(ClientError::Refused { code: got, .. }) => assert_eq!(got, code, "{what}"),
        other => panic!("{what}: expected {code}, got {other:?}"),
    };
    let outsider = gateway.connect("outsider").await;
    let conversation = outsider.conversation("c");
    refused(conversation.send("let me in").await.map(drop), "NOT_A_PARTICIPANT", "outsider sends");
    refused(conversation.message(&alices).edit(json!({ "text": "x" })).await, "NOT_A_PARTICIPANT", "outsider edits");
    refused(conversation.message(&alices).delete().await, "NOT_A_PARTICIPANT", "outsider deletes");
    refused(conversation.message(&alices).reaction("👍").add().await, "NOT_A_PARTICIPANT", "outsider reacts");
    refused(conversation.mark_as_read().await, "NOT_A_PARTICIPANT", "outsider marks read");
    let watching = conversation.subscribe_messages().await.unwrap();
    assert_eq!(
        within(watching.connected()).await.unwrap(),
        natter_client::SubscriptionState::Active { latest_snapshot: None, loaded_all: true },
        "an outsider sees nothing of the conversation"
    );

    let reader = gateway.connect("reader").await;
    refused(reader.conversation("c").send("may I?").await.map(drop), "READ_ONLY_ACCESS", "a Read-access user sends");

    let bob = gateway.connect("bob").await;
    let target = bob.conversation("c").message(&alices);
    refused(target.edit(json!({ "text": "bob was here" })).await, "UNAUTHORIZED_TO_EDIT", "bob edits alice's message");
    refused(target.delete().await, "UNAUTHORIZED_TO_EDIT", "bob deletes alice's message");
    refused(target.delete_fields(&["custom"]).await, "UNAUTHORIZED_TO_EDIT", "bob deletes alice's fields");
    refused(bob.set_token(&user_token("alice", None)).await, "FORBIDDEN", "bob takes alice's token");

    assert_eq!(state_of(&gateway).await, before, "a refused operation changed something");
    gateway.assert_frames_valid();
}
