use serde_json::{json, Value};

use crate::helpers::*;
use crate::rest_users::enc;

fn ids(reply: &Reply) -> Vec<String> {
    reply.expect(200)["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn put_creates_a_conversation_of_the_seed_shape() {
    let gateway = spawn_gateway().await;
    gateway.create_user("123456").await;
    gateway.create_user("654321").await;
    gateway
        .put(
            "/conversations/order_fc_491731",
            json!({
                "participants": ["123456", "654321"], "subject": "Black leather boots",
                "welcomeMessages": ["Hello there!"], "custom": { "productId": "454545" },
                "photoUrl": "https://example.com/p.png"
            }),
        )
        .await
        .expect(200);
    let reply = gateway.get("/conversations/order_fc_491731").await;
    let conversation = reply.expect(200);
    assert_eq!(conversation["id"], "order_fc_491731");
    assert_eq!(conversation["subject"], "Black leather boots");
    assert_eq!(conversation["welcomeMessages"], json!(["Hello there!"]));
    assert_eq!(conversation["custom"], json!({ "productId": "454545" }));
    assert_eq!(conversation["photoUrl"], "https://example.com/p.png");
    assert_eq!(conversation["lastMessage"], Value::Null);
    assert_eq!(
        conversation["participants"]["123456"],
        json!({ "access": "ReadWrite", "notify": true, "isUnread": false })
    );
    assert!(conversation["createdAt"].is_i64());
}

#[tokio::test]
async fn put_merges_and_participants_only_add() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a", "b"]).await;
    gateway.put("/conversations/c", json!({ "subject": "S", "custom": { "x": "1", "y": "2" } })).await.expect(200);
    gateway.create_user("z").await;
    gateway.put("/conversations/c", json!({ "participants": ["z"], "custom": { "x": null } })).await.expect(200);
    let reply = gateway.get("/conversations/c").await;
    let conversation = reply.expect(200);
    assert_eq!(conversation["subject"], "S");
    assert_eq!(conversation["custom"], json!({ "y": "2" }));
    let mut participants: Vec<_> = conversation["participants"].as_object().unwrap().keys().cloned().collect();
    participants.sort();
    assert_eq!(participants, vec!["a", "b", "z"]);
}

#[tokio::test]
async fn an_unknown_participant_is_400_naming_the_user_and_nothing_is_created() {
    let gateway = spawn_gateway().await;
    gateway.create_user("known").await;
    let reasons = gateway
        .put("/conversations/c", json!({ "participants": ["known", "ghost"] }))
        .await
        .expect_error(400, "INVALID_REQUEST");
    assert!(reasons.contains("ghost"), "{reasons}");
    gateway.get("/conversations/c").await.expect_error(404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn delete_removes_messages_and_participations_but_keeps_users() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["a", "b"]).await;
    let message = gateway.send_text("c", "a", "bye").await;
    gateway.delete("/conversations/c").await.expect(200);
    gateway.get("/conversations/c").await.expect_error(404, "CONVERSATION_NOT_FOUND");
    gateway.get(&format!("/conversations/c/messages/{message}")).await.expect_error(404, "CONVERSATION_NOT_FOUND");
    gateway.get("/users/a").await.expect(200);
    assert_eq!(gateway.get("/users/a/conversations").await.expect(200)["data"], json!([]));
    gateway.delete("/conversations/c").await.expect_error(404, "CONVERSATION_NOT_FOUND");

    // Created again, it starts empty.
    gateway.put("/conversations/c", json!({})).await.expect(200);
    assert_eq!(gateway.get("/conversations/c/messages").await.expect(200)["data"], json!([]));
}

#[tokio::test]
async fn listing_orders_pages_and_bounds_by_time() {
    let gateway = spawn_gateway().await;
    for id in ["c1", "c2", "c3", "c4"] {
        gateway.create_conversation(id, &["u"]).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Activity: c2 gets the newest message, so it leads by lastActivity.
    gateway.send_text("c2", "u", "fresh").await;
    assert_eq!(ids(&gateway.get("/conversations").await), vec!["c2", "c4", "c3", "c1"]);
    assert_eq!(ids(&gateway.get("/conversations?orderBy=createdAt").await), vec!["c4", "c3", "c2", "c1"]);
    assert_eq!(
        ids(&gateway.get("/conversations?orderBy=createdAt&orderDirection=ASC").await),
        vec!["c1", "c2", "c3", "c4"]
    );
    assert_eq!(ids(&gateway.get("/conversations?limit=2").await), vec!["c2", "c4"]);
    assert_eq!(ids(&gateway.get("/conversations?limit=2&startingAfter=c4").await), vec!["c3", "c1"]);

    let c3 = gateway.get("/conversations/c3").await.expect(200)["createdAt"].as_i64().unwrap();
    assert_eq!(ids(&gateway.get(&format!("/conversations?orderBy=createdAt&offsetTs={c3}")).await), vec!["c2", "c1"]);

    let last = gateway.get("/conversations/c2").await.expect(200)["lastMessage"]["createdAt"].as_i64().unwrap();
    assert_eq!(ids(&gateway.get(&format!("/conversations?lastMessageAfter={}", last - 1)).await), vec!["c2"]);
    assert_eq!(ids(&gateway.get(&format!("/conversations?lastMessageBefore={last}")).await), Vec::<String>::new());
}

#[tokio::test]
async fn listing_defaults_to_ten_and_refuses_out_of_range_parameters() {
    let gateway = spawn_gateway().await;
    for i in 0..12 {
        gateway.put(&format!("/conversations/c{i:02}"), json!({})).await.expect(200);
    }
    assert_eq!(ids(&gateway.get("/conversations").await).len(), 10);
    assert_eq!(ids(&gateway.get("/conversations?limit=100").await).len(), 12);
    gateway.get("/conversations?limit=0").await.expect_error(400, "INVALID_LIMIT");
    gateway.get("/conversations?limit=101").await.expect_error(400, "INVALID_LIMIT");
    gateway.get("/conversations?orderBy=name").await.expect_error(400, "INVALID_QUERY");
    gateway.get("/conversations?orderDirection=up").await.expect_error(400, "INVALID_QUERY");
    gateway.get("/conversations?offsetTs=yesterday").await.expect_error(400, "INVALID_QUERY");
    gateway.get("/conversations?startingAfter=nosuch").await.expect_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn filters_select_conversations() {
    let gateway = spawn_gateway().await;
    gateway.create_user("u").await;
    gateway
        .put(
            "/conversations/shoes",
            json!({ "participants": ["u"], "subject": "Boots", "custom": { "category": "shoes" } }),
        )
        .await
        .expect(200);
    gateway
        .put("/conversations/hats", json!({ "participants": ["u"], "custom": { "category": "hats", "sale": "yes" } }))
        .await
        .expect(200);
    gateway.put("/conversations/bare", json!({})).await.expect(200);
    gateway.send_text("hats", "u", "hello").await;

    let check = |filter: &'static str| {
        let gateway = &gateway;
        async move {
            let mut found = ids(&gateway.get(&format!("/conversations?filter={}", enc(filter))).await);
            found.sort();
            found
        }
    };
    assert_eq!(check(r#"{"custom":{"category":["==","shoes"]}}"#).await, vec!["shoes"]);
    assert_eq!(check(r#"{"custom":{"category":["!=","shoes"]}}"#).await, vec!["bare", "hats"]);
    assert_eq!(check(r#"{"custom":{"category":["oneOf",["shoes","hats"]]}}"#).await, vec!["hats", "shoes"]);
    assert_eq!(check(r#"{"custom":{"category":["!oneOf",["shoes"]]}}"#).await, vec!["bare", "hats"]);
    assert_eq!(check(r#"{"custom":{"sale":"exists"}}"#).await, vec!["hats"]);
    assert_eq!(check(r#"{"custom":{"sale":"!exists"}}"#).await, vec!["bare", "shoes"]);
    assert_eq!(check(r#"{"subject":["==","Boots"]}"#).await, vec!["shoes"]);
    assert_eq!(check(r#"{"subject":["==",null]}"#).await, vec!["bare", "hats"]);
    assert_eq!(check(r#"{"hasMessages":true}"#).await, vec!["hats"]);
    assert_eq!(check(r#"{"createdAt":[">",0]}"#).await, vec!["bare", "hats", "shoes"]);
    assert_eq!(check(r#"{"lastActivityAt":["<",0]}"#).await, Vec::<String>::new());
    assert_eq!(
        check(r#"["any",[{"custom":{"category":["==","shoes"]}},{"hasMessages":true}]]"#).await,
        vec!["hats", "shoes"]
    );
}

#[tokio::test]
async fn malformed_filters_are_400() {
    let gateway = spawn_gateway().await;
    for filter in [
        "{",
        r#"{"custom":{"category":["~","shoes"]}}"#,
        r#"{"nonsense":true}"#,
        r#"["all",[]]"#,
        r#"{"createdAt":["between",[1]]}"#,
        r#"{"isUnread":true}"#,
    ] {
        let reasons =
            gateway.get(&format!("/conversations?filter={}", enc(filter))).await.expect_error(400, "INVALID_FILTER");
        assert!(reasons.contains("filter"), "{filter}: {reasons}");
    }
}
