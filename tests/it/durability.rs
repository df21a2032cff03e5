//! An acknowledged write survives `kill -9` of the gateway: a real `natter` process is killed in the middle of a
//! stream of sends and restarted on the same data directory.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::helpers::{spawn_gateway, APP, SECRET};

/// The address in the gateway's "natter is listening" log line (`local_addr=127.0.0.1:PORT`), if this is it.
pub fn listening_address(line: &str) -> Option<String> {
    let at = line.find("local_addr=")? + "local_addr=".len();
    Some(line[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect())
}

pub struct Process {
    pub child: Child,
    /// `http://127.0.0.1:PORT/v1/APP`.
    pub base: String,
    pub addr: String,
}

/// Starts the binary on an ephemeral port and waits for it to say where it listens.
pub async fn start(data_dir: &std::path::Path) -> Process {
    start_on(data_dir, "127.0.0.1:0").await
}

/// Starts the binary on `listen` and waits for it to say where it listens.
pub async fn start_on(data_dir: &std::path::Path, listen: &str) -> Process {
    start_with(data_dir, listen, &[]).await
}

/// Like `start_on`, with more environment variables.
pub async fn start_with(data_dir: &std::path::Path, listen: &str, env: &[(&str, &str)]) -> Process {
    let database_url = match env.iter().any(|(name, _)| *name == "NATTER_DATABASE_URL") {
        true => None,
        false => crate::helpers::database_url_for(data_dir).await,
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(database_url.map(|url| format!("--database-url={url}")))
        .envs(env.iter().copied())
        .env("NATTER_APPS", format!("{APP}:{SECRET}"))
        .env("RUST_LOG", "natter=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn natter");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = listening_address(&line) {
                return addr;
            }
        }
        panic!("natter exited before listening");
    })
    .await
    .expect("natter did not start in time");
    // Keep draining its output so it never blocks on a full pipe.
    // (With TEST_NODE_LOG set, show it: the log of a gateway process is otherwise not seen.)
    let show = std::env::var_os("TEST_NODE_LOG").is_some();
    let addr_for_log = addr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if show {
                eprintln!("[{addr_for_log}] {line}");
            }
        }
    });
    Process { child, base: format!("http://{addr}/v1/{APP}"), addr }
}

async fn send(client: &reqwest::Client, base: &str, body: Value) -> Result<Value, reqwest::Error> {
    client
        .post(format!("{base}/conversations/c/messages"))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

async fn all_message_ids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/conversations/c/messages?limit=100");
        if let Some(after) = &cursor {
            url.push_str(&format!("&startingAfter={after}"));
        }
        let page: Value = client.get(url).bearer_auth(SECRET).send().await.unwrap().json().await.unwrap();
        let page = page["data"].as_array().unwrap().clone();
        if page.is_empty() {
            return ids;
        }
        cursor = Some(page.last().unwrap()["id"].as_str().unwrap().to_owned());
        ids.extend(page.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_exactly_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut process = start(data_dir.path()).await;
    let base = process.base.clone();
    for user in ["alice"] {
        let reply = client
            .put(format!("{base}/users/{user}"))
            .bearer_auth(SECRET)
            .json(&json!({ "name": user }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    let reply = client
        .put(format!("{base}/conversations/c"))
        .bearer_auth(SECRET)
        .json(&json!({ "participants": ["alice"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let keyed = send(&client, &base, json!([{ "type": "SystemMessage", "text": "keyed", "idempotencyKey": "k" }]))
        .await
        .unwrap();

    // Writers send until the gateway dies; each records the ids it got acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..2000 {
                let body = json!([{ "type": "UserMessage", "sender": "alice", "text": format!("w{writer}-{i}") }]);
                match send(&client, &base, body).await {
                    Ok(reply) => acknowledged.lock().unwrap().push(reply[0]["id"].as_str().unwrap().to_owned()),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while acknowledged.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("writers made no progress");
    process.child.start_kill().expect("SIGKILL");
    process.child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let mut process = start(data_dir.path()).await;
    let stored = all_message_ids(&client, &process.base).await;
    let mut seen = std::collections::HashSet::new();
    for id in &stored {
        assert!(seen.insert(id.clone()), "message {id} is stored twice");
    }
    let lost: Vec<_> = acknowledged.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged messages were lost", lost.len(), acknowledged.len());

    // The idempotency key still names its message after the restart.
    let retry =
        send(&client, &process.base, json!([{ "type": "SystemMessage", "text": "keyed", "idempotencyKey": "k" }]))
            .await
            .unwrap();
    assert_eq!(retry, keyed);
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let data_dir = tempfile::tempdir().unwrap();
    let mut process = start(data_dir.path()).await;
    let token = crate::helpers::user_token("u", None);
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/{APP}/realtime?token={token}", process.addr))
            .await
            .unwrap();
    let pid = process.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("no close frame within 10 s");
    assert_eq!(close, Some(1001));
    let exit =
        tokio::time::timeout(Duration::from_secs(10), process.child.wait()).await.expect("exit within 10 s").unwrap();
    assert!(exit.success(), "exit status {exit}");
    // New connections are refused once it has stopped.
    assert!(reqwest::get(format!("http://{}/healthz", process.addr)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_socket_writes_survive_repeated_sigkills_and_keys_still_dedupe() {
    use rand::Rng;

    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut process = start(data_dir.path()).await;
    let base = process.base.clone();
    let batch = json!({ "alice": { "name": "Alice" }, "bob": { "name": "Bob" } });
    client
        .put(format!("{base}/users"))
        .bearer_auth(SECRET)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    client
        .put(format!("{base}/conversations/c"))
        .bearer_auth(SECRET)
        .json(&json!({ "participants": ["alice", "bob"] }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    // (idempotency key, acknowledged id), from every round.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    for round in 0..3 {
        let mut writers = Vec::new();
        for writer in 0..2 {
            let (client, base, acknowledged) = (client.clone(), process.base.clone(), acknowledged.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..1000 {
                    let key = format!("rest-{round}-{writer}-{i}");
                    let body =
                        json!([{ "type": "UserMessage", "sender": "alice", "text": key, "idempotencyKey": key }]);
                    match send(&client, &base, body).await {
                        Ok(reply) => {
                            acknowledged.lock().unwrap().push((key, reply[0]["id"].as_str().unwrap().to_owned()))
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let socket_config = natter_client::ClientConfig {
            url: format!("ws://{}", process.addr),
            app_id: APP.into(),
            token: crate::helpers::user_token("bob", None),
            observer: None,
        };
        let session = natter_client::Session::connect(socket_config).await.unwrap();
        let socket_writer = {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0..1000 {
                    let key = format!("socket-{round}-{i}");
                    match session.conversation("c").send_with(json!({ "text": key, "idempotencyKey": key })).await {
                        Ok(id) => acknowledged.lock().unwrap().push((key, id)),
                        Err(_) => return,
                    }
                }
            })
        };
        let pause = rand::rng().random_range(150..450);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        process.child.start_kill().expect("SIGKILL");
        process.child.wait().await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        socket_writer.await.unwrap();
        process = start(data_dir.path()).await;
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.iter().any(|(key, _)| key.starts_with("socket")), "the socket writer wrote something");
    let stored = all_message_ids(&client, &process.base).await;
    let mut seen = std::collections::HashSet::new();
    for id in &stored {
        assert!(seen.insert(id.clone()), "message {id} is stored twice");
    }
    let lost: Vec<_> = acknowledged.iter().filter(|(_, id)| !seen.contains(id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes were lost: {lost:?}", lost.len(), acknowledged.len());
    // Retrying an acknowledged send with its key returns the original message, across the restarts.
    for (key, id) in acknowledged.iter().step_by(97) {
        let body = json!([{ "type": "UserMessage", "sender": "alice", "text": key, "idempotencyKey": key }]);
        let retry = send(&client, &process.base, body).await.unwrap();
        assert_eq!(retry[0]["id"].as_str().unwrap(), id, "key {key}");
    }
    assert_eq!(all_message_ids(&client, &process.base).await.len(), stored.len(), "the retries stored nothing new");
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
}

#[tokio::test]
async fn a_first_start_creates_an_app_prints_it_and_keeps_it_across_restarts() {
    use std::os::unix::fs::PermissionsExt;

    let data_dir = tempfile::tempdir().unwrap();
    let run = |dir: std::path::PathBuf| async move {
        let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env_remove("NATTER_APPS")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "natter=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = listening_address(&line) {
                    return addr;
                }
                printed.push(line);
            }
            panic!("natter exited before listening");
        })
        .await
        .unwrap();
        (child, addr, printed.join("\n"))
    };

    let (mut child, addr, printed) = run(data_dir.path().to_owned()).await;
    let field = |name: &str| {
        printed.lines().find_map(|line| line.trim().strip_prefix(name)).map(|value| value.trim().to_owned())
    };
    let app = field("app id:").unwrap_or_else(|| panic!("no app id printed:\n{printed}"));
    let secret = field("secret:").unwrap_or_else(|| panic!("no secret printed:\n{printed}"));
    assert!(printed.contains("curl -X PUT"), "a ready-to-paste example is printed:\n{printed}");
    let apps_file = data_dir.path().join("apps.json");
    let mode = std::fs::metadata(&apps_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "apps.json holds a secret: only its owner may read it");

    let client = reqwest::Client::new();
    let put = |addr: String| {
        let (client, app, secret) = (client.clone(), app.clone(), secret.clone());
        async move {
            client
                .put(format!("http://{addr}/v1/{app}/users/u"))
                .bearer_auth(secret)
                .json(&json!({ "name": "U" }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(put(addr).await, 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // A restart keeps the same app and secret, and says nothing about creating one.
    let (mut child, addr, printed) = run(data_dir.path().to_owned()).await;
    assert!(!printed.contains("Created app"), "{printed}");
    assert!(printed.contains(&format!("Serving app {app}")), "a restart says which app it serves:\n{printed}");
    assert!(printed.contains("apps.json"), "and where its secret is kept:\n{printed}");
    assert_eq!(put(addr).await, 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// Runs the binary with these arguments until it exits; returns its status, stdout and stderr.
async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("NATTER_APPS")
            .output(),
    )
    .await
    .expect("natter did not exit")
    .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_taken_port_is_one_clear_line_and_creates_no_app() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().join("data");
    let (status, stdout, stderr) = run_to_exit(
        &["--listen", &listen, "--data-dir", data.to_str().unwrap()],
        &[("RUST_BACKTRACE", "1"), ("NO_COLOR", "1")],
    )
    .await;
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, no backtrace:\n{stderr}");
    assert!(lines[0].starts_with("natter: cannot listen on") && lines[0].contains("--listen"), "{stderr}");
    assert!(!stdout.contains("Try it") && !stdout.contains("Created app"), "nothing was created:\n{stdout}");
    assert!(!data.join("apps.json").exists(), "no app was created");
    drop(taken);
}

#[tokio::test]
async fn a_bad_flag_value_names_the_flag() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let (status, _, stderr) =
        run_to_exit(&["--listen", "127.0.0.1:0", "--data-dir", data, "--apps", "no-secret-here"], &[]).await;
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("--apps"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn natter_token_prints_a_user_token_the_gateway_takes() {
    let gateway = spawn_gateway().await;
    let apps = format!("{APP}:{SECRET}");
    let (status, stdout, stderr) =
        run_to_exit(&["token", "--app", APP, "--user", "alice", "--ttl", "2m", "--apps", &apps], &[]).await;
    assert!(status.success(), "{stderr}");
    let token = stdout.trim();
    let claims = natter::token::verify_user_token(&natter::domain::ids::AppId::parse(APP).unwrap(), SECRET, token)
        .expect("a valid user token");
    assert_eq!(claims.user_id.as_str(), "alice");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expires_at = claims.expires_at.expect("the token expires");
    assert!((now + 115..=now + 125).contains(&expires_at), "two minutes from now: {expires_at} vs {now}");
    let url = format!("{}/v1/{APP}/realtime?token={token}", gateway.ws_base());
    tokio_tungstenite::connect_async(url).await.expect("the gateway takes the token");

    // The secret comes from where `serve` finds the app: here apps.json in the data directory.
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let (status, _, stderr) = run_to_exit(&["token", "--app", APP, "--user", "alice", "--data-dir", data], &[]).await;
    assert!(!status.success());
    assert!(stderr.contains("apps.json") && stderr.lines().count() == 1, "one clear line: {stderr}");
    let (status, _, stderr) = run_to_exit(&["token", "--app", "nope", "--user", "alice", "--apps", &apps], &[]).await;
    assert!(!status.success() && stderr.contains("no app \"nope\""), "{stderr}");
}

#[tokio::test]
async fn the_demo_serves_only_on_a_loopback_address_and_only_when_asked() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let (status, _, stderr) = run_to_exit(
        &["--demo", "--listen", "0.0.0.0:0", "--data-dir", data, "--apps", "demo:sk_demo_0123456789abcdef"],
        &[],
    )
    .await;
    assert!(!status.success(), "a demo reachable from elsewhere would hand out tokens");
    assert!(stderr.contains("--demo") && stderr.contains("loopback"), "{stderr}");
    // A gateway without --demo has no demo routes, token endpoint included.
    let gateway = spawn_gateway().await;
    let reply = reqwest::get(format!("{}/demo/session?user=alice", gateway.base)).await.unwrap();
    assert_eq!(reply.status(), 404);
    // With --demo: tokens for the demo users, and for nobody else.
    let demo = crate::helpers::spawn_gateway_with(|config| config.demo = true).await;
    let session: Value =
        reqwest::get(format!("{}/demo/session?user=alice", demo.base)).await.unwrap().json().await.unwrap();
    let app = natter::domain::ids::AppId::parse(session["appId"].as_str().unwrap()).unwrap();
    let claims = natter::token::verify_user_token(&app, SECRET, session["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.user_id.as_str(), "alice");
    let refused = reqwest::get(format!("{}/demo/session?user=mallory", demo.base)).await.unwrap();
    assert_eq!(refused.status(), 400);
    let page = reqwest::get(format!("{}/demo/", demo.base)).await.unwrap();
    assert!(page.text().await.unwrap().contains("app.js"), "the page is served");
    // Every module of the library's copy is served (a missing one breaks the page's imports).
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/demo/lib");
    for entry in std::fs::read_dir(lib).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let served = reqwest::get(format!("{}/demo/lib/{name}", demo.base)).await.unwrap();
        assert_eq!(served.status(), 200, "lib/{name} is not served");
    }
}

/// The WAL's checkpoint sequence number (big-endian, bytes 12 to 16 of its header): SQLite adds one each time the
/// WAL starts over from its beginning.
fn wal_restarts(data_dir: &std::path::Path) -> u32 {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(data_dir.join("natter.sqlite3-wal")).and_then(|mut wal| wal.read_exact(&mut header)) {
        Ok(()) => u32::from_be_bytes(header[12..16].try_into().unwrap()),
        Err(_) => 0, // no WAL yet, or no header written yet
    }
}

/// Under a steady stream of commits the WAL must still start over (and so stay bounded): a checkpoint from another
/// connection never finds it fully copied back while the writer keeps appending, so the writer finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_a_steady_stream_of_writes() {
    if std::env::var("NATTER_TEST_BACKEND").as_deref() == Ok("postgres") {
        return; // PostgreSQL has no WAL file in the data directory.
    }
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut process = start(data_dir.path()).await;
    let base = process.base.clone();
    let reply =
        client.put(format!("{base}/conversations/c")).bearer_auth(SECRET).json(&json!({})).send().await.unwrap();
    assert_eq!(reply.status(), 200);

    // Writers keep the writer busy for a few seconds (bounded in count and time).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut writers = Vec::new();
    for writer in 0..32 {
        let (client, base) = (client.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..2000 {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                send(&client, &base, json!([{ "type": "SystemMessage", "text": format!("w{writer}-{i}") }]))
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = wal_restarts(data_dir.path());
    for writer in writers {
        writer.await.unwrap();
    }
    let after = wal_restarts(data_dir.path());
    assert!(after >= before + 2, "the WAL started over {} times in 4 s of steady writes", after - before);
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
}
