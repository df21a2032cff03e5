//! `spawn_gateway()` starts `natter::run` on `127.0.0.1:0` with a fresh data directory and two apps, and returns
//! typed helpers to call it.

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use natter::config::{AppCredentials, Config};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const APP: &str = "testapp";
pub const SECRET: &str = "sk_test_0123456789abcdef0123";
pub const OTHER_APP: &str = "otherapp";
pub const OTHER_SECRET: &str = "sk_test_fedcba9876543210fedc";
/// Small, so that slow consumers are found quickly.
pub const OUTBOX_EVENTS: usize = 64;

pub struct TestGateway {
    pub base: String,
    pub client: reqwest::Client,
    /// Every server frame any client of this gateway received, checked against `proto/schema/` as it arrived.
    frames: Arc<Mutex<FrameLog>>,
    shutdown: Option<oneshot::Sender<()>>,
    _data_dir: TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub fn test_apps() -> Vec<AppCredentials> {
    vec![
        AppCredentials { app_id: APP.into(), secret: SECRET.into(), webhooks: Vec::new() },
        AppCredentials { app_id: OTHER_APP.into(), secret: OTHER_SECRET.into(), webhooks: Vec::new() },
    ]
}

pub async fn spawn_gateway() -> TestGateway {
    spawn_gateway_with(|_| {}).await
}

/// With `NATTER_TEST_BACKEND=postgres` (CI runs the suite so a second time), every gateway a test starts keeps its
/// data in PostgreSQL, in a fresh schema of the server `NATTER_TEST_POSTGRES_URL` names: the URL to pass as
/// `--database-url`. It is kept in the data directory, so a gateway restarted on that directory finds its data.
pub async fn database_url_for(data_dir: &std::path::Path) -> Option<String> {
    if std::env::var("NATTER_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    let kept = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let base =
        std::env::var("NATTER_TEST_POSTGRES_URL").expect("NATTER_TEST_BACKEND=postgres needs NATTER_TEST_POSTGRES_URL");
    let url = tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap();
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&kept, &url).unwrap();
    Some(url)
}

/// Creates an empty schema and returns a URL whose connections use it.
pub fn fresh_schema(base: &str) -> String {
    let schema = format!("it_{}", uuid_like());
    let mut client = postgres::Client::connect(base, postgres::NoTls).expect("connect to NATTER_TEST_POSTGRES_URL");
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// Like `spawn_gateway`, with a chance to change the configuration first.
pub async fn spawn_gateway_with(adjust: impl FnOnce(&mut Config)) -> TestGateway {
    if std::env::var_os("TEST_LOG").is_some() {
        natter::telemetry::init();
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: data_dir.path().to_owned(),
        database_url: database_url_for(data_dir.path()).await,
        apps: test_apps(),
        public_url: None,
        max_upload_bytes: 1024 * 1024,
        outbox_events: OUTBOX_EVENTS,
        socket_write_timeout: natter::realtime::socket::DEFAULT_WRITE_TIMEOUT,
        typing_timeout: natter::realtime::typing_subscription::DEFAULT_TYPING_TIMEOUT,
        request_linger: natter::realtime::session::DEFAULT_REQUEST_LINGER,
        limits: natter::limits::LimitConfig::default(),
        retention: natter::store::Retention::default(),
        history_bytes: natter::hub::history::DEFAULT_HISTORY_BYTES,
        window_cache_bytes: natter::hub::windows::DEFAULT_WINDOW_CACHE_BYTES,
        broker: Default::default(),
        serve: Default::default(),
        demo: false,
        webhooks: Default::default(),
    };
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        natter::run(config, listener, async {
            let _ = shutdown_rx.await;
        })
        .await
        .expect("gateway failed");
    });
    TestGateway {
        base,
        client: reqwest::Client::new(),
        frames: Arc::default(),
        shutdown: Some(shutdown_tx),
        _data_dir: data_dir,
    }
}

#[derive(Default)]
pub struct FrameLog {
    pub seen: usize,
    pub invalid: Vec<String>,
    /// Frames seen, by type (and `snapshot-not-resumed` for a resume that could not be honoured).
    pub by_type: std::collections::BTreeMap<String, usize>,
}

impl FrameLog {
    fn record(&mut self, text: &str) {
        self.seen += 1;
        if let Err(error) = crate::schemas::validate_frame(text) {
            self.invalid.push(error);
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            let mut kind = value["type"].as_str().unwrap_or_default().to_owned();
            if value["resumed"] == json!(false) {
                kind.push_str("-not-resumed");
            }
            *self.by_type.entry(kind).or_default() += 1;
        }
    }
}

/// A user token for the test app, optionally expiring at `exp` (Unix seconds).
pub fn user_token(user: &str, exp: Option<u64>) -> String {
    let mut claims = json!({ "tokenType": "user", "iss": APP, "sub": user });
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, and for errors that the body is `{"errorCode": code, "reasons": [..]}`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status, body: {}", self.body);
        &self.body
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status, body: {}", self.body);
        assert_eq!(self.body["errorCode"], code, "body: {}", self.body);
        let reasons = self.body["reasons"].as_array().expect("reasons is an array");
        assert!(!reasons.is_empty(), "reasons must not be empty");
        reasons.iter().map(|r| r.as_str().unwrap().to_owned()).collect::<Vec<_>>().join("; ")
    }
}

impl TestGateway {
    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    /// Connects as `user` with the Rust client; every frame it receives is validated against the schemas.
    pub async fn connect(&self, user: &str) -> natter_client::Session {
        self.connect_with_token(&user_token(user, None)).await
    }

    pub async fn connect_with_token(&self, token: &str) -> natter_client::Session {
        let config = natter_client::ClientConfig {
            url: self.ws_base(),
            app_id: APP.into(),
            token: token.into(),
            observer: Some(self.frame_observer()),
        };
        natter_client::Session::connect(config).await.expect("connect")
    }

    /// Validates every frame a client receives against the schemas, into this gateway's log.
    pub fn frame_observer(&self) -> natter_client::FrameObserver {
        let frames = self.frames.clone();
        Arc::new(move |text: &str| frames.lock().unwrap().record(text))
    }

    /// Records a frame read outside the Rust client.
    pub fn observe(&self, text: &str) {
        self.frames.lock().unwrap().record(text);
    }

    /// How many frames of a type clients received.
    pub fn frames_of_type(&self, kind: &str) -> usize {
        self.frames.lock().unwrap().by_type.get(kind).copied().unwrap_or(0)
    }

    /// Asserts that frames were received and every one matched its schema.
    #[track_caller]
    pub fn assert_frames_valid(&self) {
        let log = self.frames.lock().unwrap();
        assert!(log.seen > 0, "no frame was received");
        assert!(log.invalid.is_empty(), "{} invalid frames:\n{}", log.invalid.len(), log.invalid.join("\n"));
    }

    /// `{base}/v1/{APP}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{APP}{path}", self.base)
    }

    pub async fn send(&self, method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request failed");
        let status = response.status();
        let text = response.text().await.expect("body");
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, &self.url(path), Some(SECRET), None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, &self.url(path), Some(SECRET), Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, &self.url(path), Some(SECRET), Some(body)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, &self.url(path), Some(SECRET), Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, &self.url(path), Some(SECRET), None).await
    }

    pub async fn create_user(&self, id: &str) {
        self.put(&format!("/users/{id}"), json!({ "name": format!("User {id}") })).await.expect(200);
    }

    /// Creates the users and a conversation with them.
    pub async fn create_conversation(&self, id: &str, participants: &[&str]) {
        for user in participants {
            self.create_user(user).await;
        }
        self.put(&format!("/conversations/{id}"), json!({ "participants": participants })).await.expect(200);
    }

    /// Sends one text message and returns its id.
    pub async fn send_text(&self, conversation: &str, sender: &str, text: &str) -> String {
        let reply = self
            .post(
                &format!("/conversations/{conversation}/messages"),
                json!([{ "type": "UserMessage", "sender": sender, "text": text }]),
            )
            .await;
        reply.expect(200)[0]["id"].as_str().unwrap().to_owned()
    }
}

/// A metric's value as `/metrics` exports it.
pub async fn metric(gateway: &TestGateway, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gateway.base)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not exported"))
}

/// Awaits `future`, failing the test if it takes longer than 20 seconds.
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(20), future).await.expect("timed out")
}

/// The messages of an active state (panics on null or other states).
#[track_caller]
pub fn messages(state: &natter_client::SubscriptionState) -> Vec<natter_client::MessageSnapshot> {
    match state {
        natter_client::SubscriptionState::Active { latest_snapshot: Some(messages), .. } => messages.clone(),
        other => panic!("expected an active list snapshot, got {other:?}"),
    }
}

pub fn texts_of(state: &natter_client::SubscriptionState) -> Vec<String> {
    messages(state).iter().map(|m| m.plaintext.clone()).collect()
}
