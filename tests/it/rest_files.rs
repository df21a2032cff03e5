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

/// Uploads a file and sends it as alice's message in conversation `c`; returns the message id and the file's URL.
async fn send_file(gateway: &TestGateway, bytes: &'static [u8], filename: &'static str) -> (String, String) {
    let token =
        upload(gateway, file_form(bytes, filename)).await.expect(200)["attachmentToken"].as_str().unwrap().to_owned();
    let sent = gateway
        .post(
            "/conversations/c/messages",
            json!([{ "type": "UserMessage", "sender": "alice", "attachmentToken": token }]),
        )
        .await;
    let id = sent.expect(200)[0]["id"].as_str().unwrap().to_owned();
    let message = gateway.get(&format!("/conversations/c/messages/{id}")).await;
    let url = message.expect(200)["attachment"]["url"].as_str().unwrap().to_owned();
    (id, url)
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
    let (id, url) = send_file(&gateway, b"bytes", "a.txt").await;
    let path = format!("/conversations/c/messages/{id}");

    gateway.put(&path, json!({ "text": "now words", "custom": { "k": "v" } })).await.expect(200);
    let message = gateway.get(&path).await;
    assert_eq!(message.expect(200)["text"], "now words");
    assert_eq!(message.expect(200)["attachment"], serde_json::Value::Null);
    assert_eq!(gateway.client.get(&url).send().await.unwrap().status(), 404);
    // An edit that leaves the body alone keeps it.
    gateway.put(&path, json!({ "custom": { "k": "w" } })).await.expect(200);
    assert_eq!(gateway.get(&path).await.expect(200)["text"], "now words");
}

#[tokio::test]
async fn max_upload_bytes_is_the_size_of_the_file_itself() {
    let gateway = spawn_gateway().await;
    // The test gateway accepts files of 1 MiB.
    static EXACT: [u8; 1024 * 1024] = [1u8; 1024 * 1024];
    let form = Form::new().part("file", Part::bytes(&EXACT[..]).file_name("exact.bin")).text("filename", "exact.bin");
    upload(&gateway, form).await.expect(200);
    static OVER: [u8; 1024 * 1024 + 1] = [1u8; 1024 * 1024 + 1];
    let form = Form::new().part("file", Part::bytes(&OVER[..]).file_name("over.bin")).text("filename", "over.bin");
    upload(&gateway, form).await.expect_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_few_uploads_are_read_at_once_and_the_rest_wait() {
    use tokio::io::AsyncWriteExt;

    let gateway = spawn_gateway().await;
    let address = gateway.base.trim_start_matches("http://").to_owned();
    let uploads_in_progress = || async {
        let text = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("natter_uploads_in_progress "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .expect("the uploads gauge is exported")
    };
    // Eight uploads that announce a large file, send its first bytes, and stall.
    let mut stalled = Vec::new();
    for i in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/{APP}/files HTTP/1.1\r\nHost: natter\r\nAuthorization: Bearer {SECRET}\r\n\
             Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: 1000000\r\n\r\n\
             --XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s{i}.bin\"\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[0u8; 4096]).await.unwrap();
        stalled.push(stream);
    }
    let in_progress = within(async {
        loop {
            let now = uploads_in_progress().await;
            if now >= 4.0 {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(in_progress, 4.0);
    assert_eq!(uploads_in_progress().await, 4.0, "the other four wait, their bodies unread");
    drop(stalled);
    within(async {
        while uploads_in_progress().await > 0.0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    upload(&gateway, file_form(b"after", "after.txt")).await.expect(200);
}

#[tokio::test]
async fn attachment_urls_escape_only_what_a_path_segment_must() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice"]).await;
    for (filename, expected) in
        [("photo.png", "/photo.png"), ("my file#1 (v2).png", "/my%20file%231%20(v2).png"), ("é.txt", "/%C3%A9.txt")]
    {
        let (_, url) = send_file(&gateway, b"x", filename).await;
        assert!(url.ends_with(expected), "{filename}: {url}");
        assert_eq!(gateway.client.get(&url).send().await.unwrap().status(), 200, "{url} serves the file");
    }
}
