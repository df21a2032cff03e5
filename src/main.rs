//! The `natter` binary: parses arguments, sets up logs, binds, and calls `natter::run`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use natter::{
    config::{self, Config, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_OUTBOX_EVENTS},
    hub::history::DEFAULT_HISTORY_BYTES,
    limits::LimitConfig,
    serve,
    store::{log, Retention},
};

/// Many long-lived connections interleave small allocations with short-lived buffers (handshakes, frames); mimalloc
/// returns the freed space where the system allocator keeps it, which keeps resident memory per connection low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A self-hostable real-time chat gateway that speaks the TalkJS REST API.
///
/// With no subcommand, `natter` serves with the defaults (same as `natter serve`).
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway: the REST API, the WebSocket gateway, /healthz, /readyz and /metrics (the default).
    Serve(ServeArgs),
    /// Print a user token for one of the apps, signed with its secret, to try the WebSocket from a terminal.
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct TokenArgs {
    /// The app the token is for.
    #[arg(long)]
    app: String,
    /// The user the token names (`sub`).
    #[arg(long)]
    user: String,
    /// How long the token is valid: seconds, or with a unit (90s, 30m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: std::time::Duration,
    /// Where the app's secret is, as for `serve`: the apps given here, else apps.json in --data-dir, else the
    /// database of --database-url.
    #[arg(long, env = "NATTER_APPS", hide_env_values = true)]
    apps: Option<String>,
    #[arg(long, env = "NATTER_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[arg(long, env = "NATTER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// `90`, `90s`, `30m`, `1h`, `7d`.
fn parse_ttl(raw: &str) -> Result<std::time::Duration, String> {
    let (number, unit) =
        raw.trim().split_at(raw.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.trim().len()));
    let number: u64 = number.parse().map_err(|_| format!("{raw:?} is not a duration such as 90s, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {raw:?}: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(number.saturating_mul(seconds)))
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "NATTER_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the SQLite database, the uploaded files and apps.json.
    #[arg(long, env = "NATTER_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// PostgreSQL holding all data, shared by several nodes: postgres://USER:PASS@HOST:PORT/DB. Default: SQLite in
    /// --data-dir.
    #[arg(long, env = "NATTER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Redis carrying events between nodes: redis://HOST:PORT. Default: one node, events delivered in-process.
    #[arg(long, env = "NATTER_BROKER_URL", hide_env_values = true)]
    broker_url: Option<String>,
    /// Apps as "appId:secret[,appId:secret...]"; when set, these are the only apps and apps.json is not used.
    #[arg(long, env = "NATTER_APPS", hide_env_values = true)]
    apps: Option<String>,
    /// Base URL for links the gateway hands out (attachment URLs), e.g. https://chat.example.com.
    /// Defaults to http://<listen address>.
    #[arg(long, env = "NATTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest file upload, in bytes.
    #[arg(long, env = "NATTER_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    max_upload_bytes: usize,
    /// Events queued for one WebSocket session before it is closed as a slow consumer (close code 4000).
    #[arg(long, env = "NATTER_OUTBOX_EVENTS", default_value_t = DEFAULT_OUTBOX_EVENTS)]
    outbox_events: usize,
    /// Milliseconds a write to a WebSocket may take before the session is closed as stalled.
    #[arg(long, env = "NATTER_SOCKET_WRITE_TIMEOUT_MS", default_value_t = natter::realtime::socket::DEFAULT_WRITE_TIMEOUT.as_millis() as u64)]
    socket_write_timeout_ms: u64,
    /// Milliseconds a markAsTyping lasts (TalkJS: 10 000).
    #[arg(long, env = "NATTER_TYPING_TIMEOUT_MS", default_value_t = natter::realtime::typing_subscription::DEFAULT_TYPING_TIMEOUT.as_millis() as u64, hide = true)]
    typing_timeout_ms: u64,
    /// Milliseconds a request makes a session without subscriptions count as connected.
    #[arg(long, env = "NATTER_REQUEST_LINGER_MS", default_value_t = natter::realtime::session::DEFAULT_REQUEST_LINGER.as_millis() as u64, hide = true)]
    request_linger_ms: u64,
    /// Sustained REST requests per second per app (bursts to twice that); past it, 429 with Retry-After. 0: no limit.
    #[arg(long, env = "NATTER_REST_REQUESTS_PER_SECOND", default_value_t = LimitConfig::default().rest_requests_per_second)]
    rest_requests_per_second: u32,
    /// Open WebSocket connections per app; past it, the upgrade is refused with 429. 0: no limit.
    #[arg(long, env = "NATTER_CONNECTIONS_PER_APP", default_value_t = LimitConfig::default().connections_per_app)]
    connections_per_app: usize,
    /// Sustained client frames per second per connection (bursts to twice that); past it, an error frame. 0: no limit.
    #[arg(long, env = "NATTER_FRAMES_PER_SECOND", default_value_t = LimitConfig::default().frames_per_second)]
    frames_per_second: u32,
    /// Subscriptions one WebSocket connection may hold; past it, TOO_MANY_SUBSCRIPTIONS. 0: no limit.
    #[arg(long, env = "NATTER_SUBSCRIPTIONS_PER_CONNECTION", default_value_t = LimitConfig::default().subscriptions_per_connection)]
    subscriptions_per_connection: usize,
    /// Hours the event log keeps events for resuming clients; older events are pruned.
    #[arg(long, env = "NATTER_EVENT_RETENTION_HOURS", default_value_t = log::DEFAULT_RETENTION_AGE.as_secs() / 3600)]
    event_retention_hours: u64,
    /// Events the event log keeps per conversation; a client that missed more gets a fresh snapshot.
    #[arg(long, env = "NATTER_EVENT_RETENTION_PER_CONVERSATION", default_value_t = log::DEFAULT_RETENTION_EVENTS_PER_CONVERSATION)]
    event_retention_per_conversation: u64,
    /// Bytes of recent encoded events kept in memory in front of the event log, for resumes.
    #[arg(long, env = "NATTER_HISTORY_BYTES", default_value_t = DEFAULT_HISTORY_BYTES)]
    history_bytes: usize,
    /// Bytes of conversations' newest windows kept in memory, so that a subscribe needs no store read (0: off).
    /// Used on a single node only.
    #[arg(long, env = "NATTER_WINDOW_CACHE_BYTES", default_value_t = natter::hub::windows::DEFAULT_WINDOW_CACHE_BYTES)]
    window_cache_bytes: usize,
    /// Milliseconds a client has to send a whole request head (also how long an idle keep-alive connection stays).
    #[arg(long, env = "NATTER_HEADER_READ_TIMEOUT_MS", default_value_t = serve::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64)]
    header_read_timeout_ms: u64,
    /// Receivers of every app's webhook events, as "URL[,URL...]" (http:// or https://), besides those an app lists
    /// in apps.json.
    #[arg(long, env = "NATTER_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Seconds a webhook event is retried (exponential backoff) before it is recorded as failed.
    #[arg(long, env = "NATTER_WEBHOOK_RETRY_SECONDS", default_value_t = config::DEFAULT_WEBHOOK_RETRY_HOURS * 3600)]
    webhook_retry_seconds: u64,
    /// Milliseconds before a webhook event's first retry; each next retry waits twice as long, up to 5 minutes.
    #[arg(long, env = "NATTER_WEBHOOK_FIRST_BACKOFF_MS", default_value_t = 1000)]
    webhook_first_backoff_ms: u64,
    /// Milliseconds a node holds a webhook receiver without renewing; when a node dies, another node takes over
    /// its receivers this long after it last renewed (several nodes).
    #[arg(long, env = "NATTER_WEBHOOK_LEASE_MS", default_value_t = 15_000)]
    webhook_lease_ms: u64,
    /// Serve a demo chat page at /demo/ with seeded users (alice, bob, carol) and hand out their tokens: only on a
    /// loopback --listen address.
    #[arg(long)]
    demo: bool,
    /// Connections that have not sent a whole request yet, at most; past it, new connections are closed at once.
    #[arg(long, env = "NATTER_MAX_PENDING_CONNECTIONS", default_value_t = serve::DEFAULT_MAX_PENDING_CONNECTIONS)]
    max_pending_connections: usize,
}

/// Runs the gateway; any error it cannot serve through ends the process with one line on stderr and status 1
/// (no backtrace: these are configuration and environment problems, not bugs).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Transparent huge pages off for this process: mimalloc asks for them on its arenas, and the kernel then
    // faults memory in 2 MiB at a time and zeroes it; in a storm of connects that zeroing was 40% of the CPU
    // (load/RESULTS.md). A session's memory is small and scattered, so huge pages buy it nothing.
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("natter: transparent huge pages stay on: {error}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Token(args)) => token(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("natter: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    natter::telemetry::init();
    // Each WebSocket is a file descriptor: let the gateway use as many as the system allows it.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(cause = %error, "cannot raise the open-file limit");
    }
    if args.demo && !args.listen.ip().is_loopback() {
        anyhow::bail!("--demo hands out tokens for its demo users: it serves on a loopback --listen address only");
    }
    // Bind first: a gateway that cannot listen must not create an app, nor print how to use it.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let listening = listener.local_addr().unwrap_or(args.listen);
    let apps = match (&args.apps, &args.database_url) {
        (Some(raw), _) => config::parse_apps(raw)?,
        (None, Some(url)) => {
            let create: natter::store::CreateApp = Box::new(|| {
                let app = config::new_app();
                (app.app_id, app.secret)
            });
            let (apps, created) =
                natter::store::load_or_create_shared_apps(url, Some(create), natter::app::now_millis())
                    .await
                    .context("cannot read the apps from the database (--database-url)")?;
            let apps: Vec<_> = apps
                .into_iter()
                .map(|(app_id, secret)| config::AppCredentials { app_id, secret, webhooks: Vec::new() })
                .collect();
            let kept = "the database's apps table";
            if created {
                print_first_start(&args, listening, &apps[0], kept);
            } else {
                print_apps_kept(&apps, kept);
            }
            apps
        }
        (None, None) => {
            let (apps, created) = config::load_or_create_apps(&args.data_dir)?;
            let kept = args.data_dir.join("apps.json").display().to_string();
            if created {
                print_first_start(&args, listening, &apps[0], &kept);
            } else {
                print_apps_kept(&apps, &kept);
            }
            apps
        }
    };
    let config = Config {
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        apps,
        public_url: args.public_url.clone(),
        max_upload_bytes: args.max_upload_bytes,
        outbox_events: args.outbox_events.max(1),
        socket_write_timeout: std::time::Duration::from_millis(args.socket_write_timeout_ms.max(1)),
        typing_timeout: std::time::Duration::from_millis(args.typing_timeout_ms.max(1)),
        request_linger: std::time::Duration::from_millis(args.request_linger_ms),
        limits: LimitConfig {
            rest_requests_per_second: args.rest_requests_per_second,
            connections_per_app: args.connections_per_app,
            frames_per_second: args.frames_per_second,
            subscriptions_per_connection: args.subscriptions_per_connection,
        },
        retention: Retention {
            max_age: std::time::Duration::from_secs(args.event_retention_hours.saturating_mul(3600)),
            max_events_per_conversation: args.event_retention_per_conversation,
        },
        history_bytes: args.history_bytes,
        window_cache_bytes: args.window_cache_bytes,
        broker: match &args.broker_url {
            Some(url) => natter::hub::broker::BrokerConfig::Redis(url.clone()),
            None => Default::default(),
        },
        serve: serve::ServeConfig {
            header_read_timeout: std::time::Duration::from_millis(args.header_read_timeout_ms.max(1)),
            max_pending_connections: args.max_pending_connections.max(1),
        },
        demo: args.demo,
        webhooks: webhook_config(&args)?,
    };
    if args.demo {
        println!("Demo: http://{listening}/demo/ (open it in two windows, as two users)");
    }
    natter::run(config, listener, shutdown_signal()).await
}

/// Prints a user token; the secret comes from where `serve` would find the app.
async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let apps = match (&args.apps, &args.database_url) {
        (Some(raw), _) => config::parse_apps(raw)?,
        (None, Some(url)) => natter::store::load_or_create_shared_apps(url, None, natter::app::now_millis())
            .await
            .context("cannot read the apps from the database (--database-url)")?
            .0
            .into_iter()
            .map(|(app_id, secret)| config::AppCredentials { app_id, secret, webhooks: Vec::new() })
            .collect(),
        (None, None) => {
            let path = args.data_dir.join("apps.json");
            if !path.exists() {
                anyhow::bail!("no apps: {} does not exist (start the gateway once, or pass --apps)", path.display());
            }
            config::load_or_create_apps(&args.data_dir)?.0
        }
    };
    let app = apps
        .iter()
        .find(|app| app.app_id == args.app)
        .with_context(|| format!("no app {:?} (--app); the apps are: {}", args.app, app_ids(&apps)))?;
    let app_id = natter::domain::ids::AppId::parse(&app.app_id).context("invalid app id")?;
    let user = natter::domain::ids::UserId::parse(&args.user).map_err(|error| anyhow::anyhow!("--user: {error}"))?;
    let expires_at = (natter::app::now_millis() / 1000) as u64 + args.ttl.as_secs();
    println!("{}", natter::token::mint_user_token(&app_id, &app.secret, &user, expires_at));
    Ok(())
}

fn webhook_config(args: &ServeArgs) -> anyhow::Result<config::WebhookConfig> {
    let mut webhooks = config::WebhookConfig {
        retry_for: std::time::Duration::from_secs(args.webhook_retry_seconds),
        first_backoff: std::time::Duration::from_millis(args.webhook_first_backoff_ms.max(1)),
        lease: std::time::Duration::from_millis(args.webhook_lease_ms.max(1000)),
        ..Default::default()
    };
    for url in args.webhook_url.iter().flat_map(|raw| raw.split(',')).map(str::trim).filter(|url| !url.is_empty()) {
        let endpoint = config::WebhookEndpoint { url: url.to_owned(), events: None };
        config::check_webhook(&endpoint).map_err(|cause| anyhow::anyhow!("--webhook-url: {cause}"))?;
        webhooks.default_urls.push(endpoint.url);
    }
    Ok(webhooks)
}

fn app_ids(apps: &[config::AppCredentials]) -> String {
    apps.iter().map(|app| app.app_id.as_str()).collect::<Vec<_>>().join(", ")
}

fn print_first_start(args: &ServeArgs, listening: SocketAddr, app: &config::AppCredentials, kept: &str) {
    let base = args.public_url.clone().unwrap_or_else(|| config::default_public_url(listening));
    println!(
        "\nCreated app {id} (kept in {kept})\n  app id: {id}\n  secret: {secret}\n\nTry it:\n  \
         curl -X PUT {base}/v1/{id}/users/alice -H 'Authorization: Bearer {secret}' \
         -H 'Content-Type: application/json' -d '{{\"name\": \"Alice\"}}'\n",
        id = app.app_id,
        secret = app.secret,
    );
}

/// On every start after the first: which apps this gateway serves, and where their secrets are.
fn print_apps_kept(apps: &[config::AppCredentials], kept: &str) {
    let ids: Vec<&str> = apps.iter().map(|app| app.app_id.as_str()).collect();
    println!("Serving app {} (its secret is kept in {kept})", ids.join(", "));
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
