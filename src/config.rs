//! Configuration, loaded and validated once at startup and passed explicitly.
//!
//! Apps come from `NATTER_APPS="appId:secret,..."` when it is set (those are then the only apps); otherwise from
//! `apps.json` in the data directory, which the first start creates with one app and a random secret.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::domain::ids::{random_base62, AppId};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "natter-data";
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;
/// A session this many events behind is slow: it is cut off (close 4000) so the hub never waits and memory stays
/// bounded. At 1 KiB an event this is about 1 MiB per session at worst.
pub const DEFAULT_OUTBOX_EVENTS: usize = 1024;
const APPS_FILE: &str = "apps.json";

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The shared database of several nodes (`postgres://...`); `None`: SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub apps: Vec<AppCredentials>,
    /// The base of links the gateway hands out (attachment URLs). Defaults to `http://<listen address>`.
    pub public_url: Option<String>,
    pub max_upload_bytes: usize,
    /// Events queued for one WebSocket session before it is cut off as a slow consumer.
    pub outbox_events: usize,
    /// A socket write that takes longer than this ends the session: its client stopped reading.
    pub socket_write_timeout: std::time::Duration,
    /// How long a `markAsTyping` lasts (10 s, as TalkJS; shorter in tests).
    pub typing_timeout: std::time::Duration,
    /// How long a request keeps a session without subscriptions counting as connected (a few seconds).
    pub request_linger: std::time::Duration,
    pub limits: crate::limits::LimitConfig,
    /// What the store's event log keeps (resumes and hole repairs reach back this far).
    pub retention: crate::store::Retention,
    /// Bytes of recent encoded events this node keeps in memory in front of the event log.
    pub history_bytes: usize,
    /// Bytes of conversations' newest windows this node keeps in memory for subscribes (0: none).
    pub window_cache_bytes: usize,
    /// How events travel between nodes. Not on the command line yet: one node, in-process.
    pub broker: crate::hub::broker::BrokerConfig,
    /// The HTTP server's own bounds: the header deadline and the cap on connections without a request yet.
    pub serve: crate::serve::ServeConfig,
    /// Serve the demo page at `/demo/` and seed its users (`natter --demo`; only on a loopback address).
    pub demo: bool,
    pub webhooks: WebhookConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppCredentials {
    pub app_id: String,
    pub secret: String,
    /// Where the app's webhook events go (apps.json only), besides `--webhook-url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookEndpoint>,
}

/// One receiver of an app's webhook events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub url: String,
    /// The event types it wants (`message.sent`, ...); absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Receivers of every event of every app (`--webhook-url`), besides each app's own.
    pub default_urls: Vec<String>,
    /// How long an event is retried before it is recorded as failed.
    pub retry_for: std::time::Duration,
    /// How long one attempt may take.
    pub timeout: std::time::Duration,
    /// The first retry's delay; each next one doubles it, up to `max_backoff`.
    pub first_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
    /// How long a node holds a receiver without renewing: after a node dies, another takes its receivers over
    /// this long after its last renewal.
    pub lease: std::time::Duration,
}

pub const DEFAULT_WEBHOOK_RETRY_HOURS: u64 = 24;

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            default_urls: Vec::new(),
            retry_for: std::time::Duration::from_secs(DEFAULT_WEBHOOK_RETRY_HOURS * 3600),
            timeout: std::time::Duration::from_secs(5),
            first_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(300),
            lease: std::time::Duration::from_secs(15),
        }
    }
}

/// The webhook event types, as TalkJS names them.
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "message.sent",
    "message.updated",
    "message.deleted",
    "message.read",
    "conversation.deleted",
];

/// Checks a webhook receiver's URL and event types.
pub fn check_webhook(endpoint: &WebhookEndpoint) -> Result<(), String> {
    if !(endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://")) {
        return Err(format!("webhook URL {:?} must start with http:// or https://", endpoint.url));
    }
    for event in endpoint.events.iter().flatten() {
        if !WEBHOOK_EVENT_TYPES.contains(&event.as_str()) {
            return Err(format!(
                "unknown webhook event type {event:?}; the types are {}",
                WEBHOOK_EVENT_TYPES.join(", ")
            ));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--apps (NATTER_APPS): {0}")]
    Apps(String),
    #[error("{path}: {cause}")]
    File { path: PathBuf, cause: String },
}

/// Parses `appId:secret[,appId:secret...]`.
pub fn parse_apps(raw: &str) -> Result<Vec<AppCredentials>, ConfigError> {
    let mut apps = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (app_id, secret) =
            entry.split_once(':').ok_or_else(|| ConfigError::Apps(format!("entry {entry:?} is not appId:secret")))?;
        AppId::parse(app_id).map_err(|error| ConfigError::Apps(error.to_string()))?;
        if secret.len() < 16 {
            return Err(ConfigError::Apps(format!("the secret of app {app_id:?} must be at least 16 characters")));
        }
        if apps.iter().any(|app: &AppCredentials| app.app_id == app_id) {
            return Err(ConfigError::Apps(format!("app {app_id:?} is given twice")));
        }
        apps.push(AppCredentials { app_id: app_id.to_owned(), secret: secret.to_owned(), webhooks: Vec::new() });
    }
    if apps.is_empty() {
        return Err(ConfigError::Apps("no app given".into()));
    }
    Ok(apps)
}

/// A new app with a random id and secret.
pub fn new_app() -> AppCredentials {
    AppCredentials {
        app_id: random_base62(8).to_ascii_lowercase(),
        secret: format!("sk_live_{}", random_base62(32)),
        webhooks: Vec::new(),
    }
}

/// Reads the apps kept in the data directory, creating one app with a random secret on first start.
/// Returns the apps and whether they were just created.
pub fn load_or_create_apps(data_dir: &Path) -> Result<(Vec<AppCredentials>, bool), ConfigError> {
    let path = data_dir.join(APPS_FILE);
    let file_error = |cause: String| ConfigError::File { path: path.clone(), cause };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let apps: Vec<AppCredentials> = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
            for app in &apps {
                for endpoint in &app.webhooks {
                    check_webhook(endpoint).map_err(|cause| file_error(format!("app {:?}: {cause}", app.app_id)))?;
                }
            }
            Ok((apps, false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| file_error(e.to_string()))?;
            let apps = vec![new_app()];
            let text = serde_json::to_string_pretty(&apps).expect("credentials always encode");
            write_private(&path, &text).map_err(|e| file_error(e.to_string()))?;
            Ok((apps, true))
        }
        Err(error) => Err(file_error(error.to_string())),
    }
}

/// Writes a file only its owner can read: it holds secrets.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The base URL when none is configured.
pub fn default_public_url(listen: SocketAddr) -> String {
    format!("http://{listen}")
}
