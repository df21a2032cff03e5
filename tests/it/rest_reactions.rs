use serde_json::json;

use crate::helpers::*;
use crate::rest_users::enc;

async fn setup() -> (TestGateway, String) {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let message = gateway.send_text("c", "alice", "react to me").await;
    (gateway, message)
}

fn reaction_path(message: &str, emoji: &str, user: &str) -> String {
    format!("/conversations/c/messages/{message}/reactions/{}/{user}", enc(emoji))
}

#[tokio::test]
async fn reactions_are_idempotent_normalised_and_shown_on_the_message() {
    let (gateway, message) = setup().await;
    gateway.put(&reaction_path(&message, "👍", "bob"), json!(null)).await.expect(200);
    gateway.put(&reaction_path(&message, "👍", "bob"), json!(null)).await.expect(200);
    gateway.put(&reaction_path(&message, "👍\u{fe0f}", "alice"), json!(null)).await.expect(200);
    gateway.put(&reaction_path(&message, "\u{2764}", "bob"), json!(null)).await.expect(200);
    gateway.put(&reaction_path(&message, ":cat-roomba:", "alice"), json!(null)).await.expect(200);
    let shown = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(
        shown.expect(200)["reactions"],
        json!([
            { "emoji": "👍", "count": 2, "users": ["bob", "alice"] },
            { "emoji": "\u{2764}\u{fe0f}", "count": 1, "users": ["bob"] },
            { "emoji": ":cat-roomba:", "count": 1, "users": ["alice"] }
        ])
    );
    gateway.delete(&reaction_path(&message, "👍", "bob")).await.expect(200);
    gateway.delete(&reaction_path(&message, "👍", "bob")).await.expect(200);
    let shown = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(shown.expect(200)["reactions"][0], json!({ "emoji": "👍", "count": 1, "users": ["alice"] }));
}

#[tokio::test]
async fn invalid_emoji_and_long_custom_names_are_400() {
    let (gateway, message) = setup().await;
    for emoji in ["hello", "👍👍", &format!(":{}:", "a".repeat(49))] {
        gateway.put(&reaction_path(&message, emoji, "bob"), json!(null)).await.expect_error(400, "INVALID_REQUEST");
    }
    gateway.put(&reaction_path(&message, &format!(":{}:", "a".repeat(48)), "bob"), json!(null)).await.expect(200);
}

#[tokio::test]
async fn the_fifty_first_distinct_emoji_is_refused() {
    let (gateway, message) = setup().await;
    for i in 0..50 {
        gateway.put(&reaction_path(&message, &format!(":e{i}:"), "bob"), json!(null)).await.expect(200);
    }
    gateway.put(&reaction_path(&message, ":e50:", "bob"), json!(null)).await.expect_error(400, "TOO_MANY_REACTIONS");
    // An emoji already on the message can still gain users.
    gateway.put(&reaction_path(&message, ":e0:", "alice"), json!(null)).await.expect(200);
    let shown = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(shown.expect(200)["reactions"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn reacting_needs_a_participant_and_an_existing_message() {
    let (gateway, message) = setup().await;
    gateway.create_user("outsider").await;
    gateway.put(&reaction_path(&message, "👍", "outsider"), json!(null)).await.expect_error(403, "NOT_A_PARTICIPANT");
    gateway.put(&reaction_path(&message, "👍", "ghost"), json!(null)).await.expect_error(404, "USER_NOT_FOUND");
    gateway.put(&reaction_path("msg_nope", "👍", "bob"), json!(null)).await.expect_error(404, "MESSAGE_NOT_FOUND");
}

#[tokio::test]
async fn a_user_who_left_can_no_longer_remove_their_reaction_over_rest_or_the_socket() {
    let (gateway, message) = setup().await;
    gateway.put(&reaction_path(&message, "👍", "bob"), json!(null)).await.expect(200);
    gateway.delete("/conversations/c/participants/bob").await.expect(200);
    gateway.delete(&reaction_path(&message, "👍", "bob")).await.expect_error(403, "NOT_A_PARTICIPANT");
    let bob = gateway.connect("bob").await;
    let refused = bob
        .request(json!({ "type": "removeReaction", "conversationId": "c", "messageId": message, "emoji": "👍" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, natter_client::ClientError::Refused { code, .. } if code == "NOT_A_PARTICIPANT"),
        "{refused:?}"
    );
    let shown = gateway.get(&format!("/conversations/c/messages/{message}")).await;
    assert_eq!(shown.expect(200)["reactions"][0]["users"], json!(["bob"]), "the reaction stays");
}
