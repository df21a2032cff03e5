//! `POST /v1/{appId}/batch`: operations run through the same routes as their own requests, each with its status.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_batch_runs_each_operation_as_its_own_request_and_answers_each() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let reply = gateway
        .post(
            "/batch",
            json!([
                [1, "PUT", "/users/bob", { "name": "Bob" }],
                [2, "PUT", "/conversations/c/participants/bob", {}],
                [3, "POST", "/conversations/c/messages", [{ "type": "UserMessage", "sender": "bob", "text": "hi" }]],
                [4, "GET", "/conversations/c/messages", { "limit": "1" }],
                [5, "GET", "/users/nobody"],
                [6, "POST", "/conversations/c/messages", [{ "type": "UserMessage", "sender": "nobody", "text": "x" }]],
                [7, "GET", "/no/such/route"],
                [8, "POST", "/batch", []],
                [9, "FETCH", "/users/bob"]
            ]),
        )
        .await;
    let answers = reply.expect(200);
    let answers = answers.as_array().unwrap();
    let statuses: Vec<(i64, i64)> =
        answers.iter().map(|answer| (answer[0].as_i64().unwrap(), answer[1].as_i64().unwrap())).collect();
    assert_eq!(statuses, [(1, 200), (2, 200), (3, 200), (4, 200), (5, 404), (6, 403), (7, 404), (8, 400), (9, 400)]);
    assert!(answers[2][2][0]["id"].as_str().unwrap().starts_with("msg_"), "a send answers its ids: {}", answers[2]);
    assert_eq!(answers[3][2]["data"][0]["text"], "hi", "a GET's payload is its query");
    assert_eq!(answers[4][2]["errorCode"], "USER_NOT_FOUND", "each answer is the body its request would get");
    let direct = gateway
        .post("/conversations/c/messages", json!([{ "type": "UserMessage", "sender": "nobody", "text": "x" }]))
        .await;
    assert_eq!((direct.status.as_u16() as i64, &direct.body), (403, &answers[5][2]), "as the request alone");
    // What the operations did is done: the user, the participant, the message.
    assert_eq!(gateway.get("/users/bob").await.expect(200)["name"], "Bob");
    assert_eq!(gateway.get("/conversations/c/messages").await.expect(200)["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_malformed_batch_is_refused_whole_and_changes_nothing() {
    let gateway = spawn_gateway().await;
    for (body, why) in [
        (json!({ "not": "an array" }), "not an array"),
        (json!([]), "empty"),
        (Value::Array((0..11).map(|i| json!([i, "GET", "/users"])).collect()), "eleven operations"),
        (json!([["one", "PUT", "/users/x", { "name": "X" }]]), "a seq that is no number"),
    ] {
        let reply = gateway.post("/batch", body).await;
        assert_eq!(reply.status, 400, "{why}: {}", reply.body);
        assert_eq!(reply.body["errorCode"], "INVALID_REQUEST", "{why}");
    }
    assert_eq!(gateway.get("/users/x").await.status, 404);
}

#[tokio::test]
async fn every_operation_is_authorized_and_limited_like_its_own_request() {
    let gateway = spawn_gateway_with(|config| config.limits.rest_requests_per_second = 3).await;
    // The batch itself and each of its operations take from the app's bucket (3/s, bursts of 6).
    let reply = gateway.post("/batch", Value::Array((0..10).map(|i| json!([i, "GET", "/users"])).collect())).await;
    let statuses: Vec<i64> = reply.expect(200).as_array().unwrap().iter().map(|a| a[1].as_i64().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|status| *status == 429), "{statuses:?}");
    // Another app's secret opens nothing of this app, batch or not.
    let foreign = gateway
        .client
        .post(gateway.url("/batch"))
        .bearer_auth(OTHER_SECRET)
        .json(&json!([[1, "GET", "/users"]]))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 401);
}
