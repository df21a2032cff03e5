use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::*;

async fn upload(gateway: &TestGateway, form: Form) -> Reply {
    let response = gateway.client.post(gateway.url("/files")).bearer_auth(SECRET).multipart(form).send().await.unwrap();
    let status = response.status();
    Reply { status, body: response.json().await.unwrap_or(serde_json::Value::Null) }
}

fn file_form(bytes: &'static [u8], filename: &'static str) -> Form {
    Form::new()
        .part("file", Part::bytes(bytes).file_name(filename).mime_str("text/plain").unwrap())
        .text("filename", filename)
}

#[tokio::test]
async fn an_uploaded_file_is_sent_served_and_deleted_with_its_message() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let reply = upload(&gateway, file_form(b"hello file", "notes.txt")).await;
    let token = reply.expect(200)["attachmentToken"].as_str().unwrap().to_owned();

    let sent = gateway
        .post(
            "/conversations/c/messages",
            json!([{ "type": "UserMessage", "sender": "alice", "attachmentToken": token }]),
        )
        .await;
    let id = sent.expect(200)[0]["id"].as_str().unwrap().to_owned();
    let message = gateway.get(&format!("/conversations/c/messages/{id}")).await;
    let attachment = message.expect(200)["attachment"].clone();
    assert_eq!(attachment["size"], 10);
    let url = attachment["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&gateway.base), "{url}");

    // The URL is public: no Authorization header.
    let download = gateway.client.get(&url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "text/plain");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"hello file");

    // A token attaches one file to one message.
    gateway
        .post("/conversations/c/messages", json!([{ "type": "SystemMessage", "attachmentToken": token }]))
        .await
        .expect_error(400, "INVALID_REQUEST");

    gateway.delete(&format!("/conversations/c/messages/{id}")).await.expect(200);
    assert_eq!(gateway.client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn an_upload_without_filename_or_multipart_is_400() {
    let gateway = spawn_gateway().await;
    let no_directive = Form::new().part("file", Part::bytes(&b"x"[..])).text("filename", "x.txt");
    upload(&gateway, no_directive).await.expect_error(400, "INVALID_MULTIPART");
    let no_filename_field = Form::new().part("file", Part::bytes(&b"x"[..]).file_name("x.txt"));
    upload(&gateway, no_filename_field).await.expect_error(400, "INVALID_MULTIPART");
    let no_file = Form::new().text("filename", "x.txt");
    upload(&gateway, no_file).await.expect_error(400, "INVALID_MULTIPART");
    // A Content-Type without its boundary, as the seed's troubleshooting section warns.
    let response = gateway
        .client
        .post(gateway.url("/files"))
        .bearer_auth(SECRET)
        .header("content-type", "multipart/form-data")
        .body("--x\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413() {
    let gateway = spawn_gateway().await;
    static BIG: [u8; 2 * 1024 * 1024] = [7u8; 2 * 1024 * 1024];
    let form = Form::new().part("file", Part::bytes(&BIG[..]).file_name("big.bin")).text("filename", "big.bin");
    upload(&gateway, form).await.expect_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn editing_an_attachment_message_to_text_removes_its_file() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    let token = upload(&gateway, file_form(b"bytes", "a.txt")).await.expect(200)["attachmentToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = gateway
        .post(
            "/conversations/c/messages",
            json!([{ "type": "UserMessage", "sender": "alice", "attachmentToken": token }]),
        )
        .await;
    let id = sent.expect(200)[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/conversations/c/messages/{id}");
    let url = gateway.get(&path).await.expect(200)["attachment"]["url"].as_str().unwrap().to_owned();

    gateway.put(&path, json!({ "text": "now words", "custom": { "k": "v" } })).await.expect(200);
    let message = gateway.get(&path).await;
    assert_eq!(message.expect(200)["text"], "now words");
    assert_eq!(message.expect(200)["attachment"], serde_json::Value::Null);
    assert_eq!(gateway.client.get(&url).send().await.unwrap().status(), 404);
    // An edit that leaves the body alone keeps it.
    gateway.put(&path, json!({ "custom": { "k": "w" } })).await.expect(200);
    assert_eq!(gateway.get(&path).await.expect(200)["text"], "now words");
}
