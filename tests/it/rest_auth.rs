use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn app_token(app: &str, secret: &str, token_type: &str, exp: u64) -> String {
    let claims = json!({ "tokenType": token_type, "iss": app, "exp": exp });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[tokio::test]
async fn missing_or_malformed_credentials_are_401() {
    let gateway = spawn_gateway().await;
    let url = gateway.url("/users");
    gateway.send(Method::GET, &url, None, None).await.expect_error(401, "UNAUTHORIZED");
    let reply = gateway.client.get(&url).header("Authorization", "Basic abc").send().await.unwrap();
    assert_eq!(reply.status(), 401);
    gateway.send(Method::GET, &url, Some("wrong"), None).await.expect_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_secret_never_opens_another_app() {
    let gateway = spawn_gateway().await;
    let other = format!("{}/v1/{OTHER_APP}/users", gateway.base);
    gateway.send(Method::GET, &other, Some(SECRET), None).await.expect_error(401, "UNAUTHORIZED");
    gateway.send(Method::GET, &other, Some(OTHER_SECRET), None).await.expect(200);
    gateway.send(Method::GET, &gateway.url("/users"), Some(OTHER_SECRET), None).await.expect_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn an_unknown_app_is_404() {
    let gateway = spawn_gateway().await;
    let url = format!("{}/v1/nosuchapp/users", gateway.base);
    gateway.send(Method::GET, &url, Some(SECRET), None).await.expect_error(404, "APP_NOT_FOUND");
}

#[tokio::test]
async fn an_app_jwt_signed_with_the_secret_is_accepted() {
    let gateway = spawn_gateway().await;
    let token = app_token(APP, SECRET, "app", now_secs() + 30);
    gateway.send(Method::GET, &gateway.url("/users"), Some(&token), None).await.expect(200);
}

#[tokio::test]
async fn bad_app_jwts_are_401() {
    let gateway = spawn_gateway().await;
    let url = gateway.url("/users");
    let bad = [
        ("expired", app_token(APP, SECRET, "app", now_secs() - 120)),
        // No leeway: a token expired seconds ago, or not valid yet, is refused, as user tokens are.
        ("expired 5 s ago", app_token(APP, SECRET, "app", now_secs() - 5)),
        (
            "not valid for 30 s",
            encode(
                &Header::default(),
                &json!({ "tokenType": "app", "iss": APP, "exp": now_secs() + 600, "nbf": now_secs() + 30 }),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
        ),
        ("wrong issuer", app_token(OTHER_APP, SECRET, "app", now_secs() + 30)),
        ("user token", app_token(APP, SECRET, "user", now_secs() + 30)),
        ("other app's secret", app_token(APP, OTHER_SECRET, "app", now_secs() + 30)),
        (
            "no exp",
            encode(
                &Header::default(),
                &json!({ "tokenType": "app", "iss": APP }),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
        ),
    ];
    for (why, token) in bad {
        let reply = gateway.send(Method::GET, &url, Some(&token), None).await;
        assert_eq!(reply.status, 401, "{why}: {}", reply.body);
    }
}

#[tokio::test]
async fn healthz_answers_while_the_store_is_usable() {
    let gateway = spawn_gateway().await;
    let reply = gateway.send(Method::GET, &format!("{}/healthz", gateway.base), None, None).await;
    assert_eq!(reply.expect(200)["status"], "ok");
}

#[tokio::test]
async fn unknown_routes_answer_in_the_error_format() {
    let gateway = spawn_gateway().await;
    gateway.get("/nothing/here/at/all").await.expect_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn every_refusal_has_a_json_body_with_its_code() {
    let gateway = spawn_gateway().await;
    gateway
        .send(Method::DELETE, &gateway.url("/users"), Some(SECRET), None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED");
    let long = gateway.url(&format!("/users?x={}", "a".repeat(20 * 1024)));
    gateway.send(Method::GET, &long, Some(SECRET), None).await.expect_error(414, "URI_TOO_LONG");
    let reply = gateway
        .client
        .get(gateway.url("/users"))
        .bearer_auth(SECRET)
        .header("X-Padding", "p".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.unwrap_or_default();
    assert_eq!((status.as_u16(), body["errorCode"].as_str()), (431, Some("HEADERS_TOO_LARGE")), "{body}");
    let twice = format!("{}/v1/{APP}/realtime?token=a&token=b", gateway.base);
    gateway.send(Method::GET, &twice, None, None).await.expect_error(400, "INVALID_QUERY");
    // Not JSON at all, and JSON of the wrong shape, are told apart.
    let not_json = gateway
        .client
        .put(gateway.url("/users/x"))
        .bearer_auth(SECRET)
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(not_json.json::<serde_json::Value>().await.unwrap()["errorCode"], "INVALID_JSON");
    gateway.put("/users/x", json!({ "name": 12 })).await.expect_error(400, "INVALID_BODY");
}
