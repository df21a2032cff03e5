//! Several gateway nodes on one PostgreSQL database and one Redis: writers on every node, subscribers on every
//! node, each subscriber checked frame by frame for exactly-once, in-order delivery; then a node killed with
//! SIGKILL and its clients resuming on another node; then Redis killed and restarted during writes; then (alone,
//! see `postgres_outage`) PostgreSQL stopped and started.
//!
//! They need `NATTER_TEST_POSTGRES_URL` (`.ci/services start` prints it; CI sets it) and `redis-server` on the
//! path; the tests start their own Redis, so they can kill it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use natter_client::{MessageSubscription, Session, SubscriptionState};
use serde_json::{json, Value};
use tokio::process::Child;

use crate::{
    durability::{start_with, Process},
    helpers::*,
    recovery::{connect_checked, ids_of, spawn_store_reader, Proxy},
};

/// The PostgreSQL server, or `None` (and a note) when the run has none.
fn postgres_url() -> Option<String> {
    let url = std::env::var("NATTER_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        eprintln!("skipped: NATTER_TEST_POSTGRES_URL is not set (.ci/services start)");
    }
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis server of the test's own, on a fixed port so that it can be killed and started again.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Redis {
        let mut redis = Redis { port: free_port(), child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server on the path (.ci/services installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    /// How many connections (nodes) subscribe to `channel`.
    async fn subscribers_of(&self, channel: &str) -> u64 {
        let output = tokio::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "PUBSUB", "NUMSUB", channel])
            .output()
            .await
            .expect("redis-cli on the path");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("NUMSUB said {text:?}"))
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }
}

/// A node of the cluster.
async fn start_node(data_dir: &std::path::Path, database_url: &str, broker_url: &str) -> Process {
    let env = [
        ("NATTER_DATABASE_URL", database_url),
        ("NATTER_BROKER_URL", broker_url),
        ("NATTER_REST_REQUESTS_PER_SECOND", "0"),
    ];
    start_with(data_dir, "127.0.0.1:0", &env).await
}

struct Cluster {
    nodes: Vec<Process>,
    _dirs: Vec<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(n: usize, redis: &Redis) -> Cluster {
        let base = postgres_url().expect("checked by the caller");
        let database_url = tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap();
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for dir in &dirs {
            nodes.push(start_node(dir.path(), &database_url, &redis.url()).await);
        }
        Cluster { nodes, _dirs: dirs, http: reqwest::Client::new() }
    }

    /// Sends `body` to `path` on node `node` until it is acknowledged (at most 30 s).
    async fn call(&self, node: usize, method: reqwest::Method, path: &str, body: Value) -> Value {
        send_until_acknowledged(&self.http, &self.nodes[node].base, method, path, body).await
    }

    /// Users u0..n, each in conversation c(i % conversations).
    async fn seed(&self, n_users: usize, n_conversations: usize) {
        let users: serde_json::Map<String, Value> =
            (0..n_users).map(|i| (format!("u{i}"), json!({ "name": format!("U{i}") }))).collect();
        self.call(0, reqwest::Method::PUT, "/users", Value::Object(users)).await;
        for c in 0..n_conversations {
            let members: Vec<String> = (c..n_users).step_by(n_conversations).map(|i| format!("u{i}")).collect();
            self.call(
                c % self.nodes.len(),
                reqwest::Method::PUT,
                &format!("/conversations/c{c}"),
                json!({ "participants": members }),
            )
            .await;
        }
    }
}

async fn send_until_acknowledged(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = http.request(method.clone(), format!("{base}{path}")).bearer_auth(SECRET).json(&body).send().await;
        if let Ok(reply) = reply {
            if reply.status().is_success() {
                return reply.json().await.unwrap_or(Value::Null);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} was never acknowledged");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes `n` messages through node `node`'s REST API, each acknowledged before the next (retried with the
/// same idempotency key until it is).
fn spawn_writer(
    cluster: &Cluster,
    node: usize,
    writer: &str,
    n: usize,
    n_conversations: usize,
) -> tokio::task::JoinHandle<()> {
    let (http, base, writer) = (cluster.http.clone(), cluster.nodes[node].base.clone(), writer.to_owned());
    tokio::spawn(async move {
        for i in 0..n {
            let c = i % n_conversations;
            let body = json!([{ "type": "UserMessage", "sender": format!("u{c}"), "text": format!("{writer}-{i}"),
                                "idempotencyKey": format!("{writer}-{i}") }]);
            send_until_acknowledged(
                &http,
                &base,
                reqwest::Method::POST,
                &format!("/conversations/c{c}/messages"),
                body,
            )
            .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

struct Subscriber {
    _session: Session,
    subscription: MessageSubscription,
    conversation: String,
}

/// User `u{i}` subscribed to their conversation through `url`, checked frame by frame into `problems`.
async fn subscribe(
    validator: &TestGateway,
    url: &str,
    i: usize,
    n_conversations: usize,
    problems: &Arc<Mutex<Vec<String>>>,
) -> Subscriber {
    let session = connect_checked(validator, url, &format!("u{i}"), problems.clone()).await;
    let conversation = format!("c{}", i % n_conversations);
    let subscription = session.conversation(&conversation).subscribe_messages_with_limit(Some(10)).await.unwrap();
    within(subscription.connected()).await.unwrap();
    Subscriber { _session: session, subscription, conversation }
}

/// Every subscriber's window ends with the store's newest message and is exactly the store's newest messages.
async fn assert_windows_match_store(subscribers: &[Subscriber], node_addr: &str) {
    let store = spawn_store_reader(node_addr);
    for subscriber in subscribers {
        let newest = store(subscriber.conversation.clone(), 1).await;
        let state = within(subscriber.subscription.wait_for(|state| ids_of(state).first() == newest.first())).await;
        assert!(matches!(state, SubscriptionState::Active { .. }), "the subscription ended: {state:?}");
        let window = ids_of(&state);
        assert_eq!(
            window,
            store(subscriber.conversation.clone(), window.len()).await,
            "{} differs from the store",
            subscriber.conversation
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_delivers_every_event_once_in_order_and_a_killed_nodes_clients_resume_on_another() {
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let mut cluster = Cluster::start(3, &redis).await;
    let (n_users, n_conversations) = (18, 3);
    cluster.seed(n_users, n_conversations).await;
    let validator = spawn_gateway().await;
    let problems = Arc::new(Mutex::new(Vec::new()));
    // Node 0's clients come through a balancer (a proxy), which sends them elsewhere once node 0 is gone.
    let balancer = Proxy::start(cluster.nodes[0].addr.parse().unwrap()).await;
    let mut subscribers = Vec::new();
    // User i is in conversation i % 3 and on node (i / 3) % 3: every conversation has subscribers on every node.
    for i in 0..n_users {
        let url = match (i / 3) % 3 {
            0 => format!("ws://{}", balancer.addr),
            node => format!("ws://{}", cluster.nodes[node].addr),
        };
        subscribers.push(subscribe(&validator, &url, i, n_conversations, &problems).await);
    }

    // Writers on every node at once: each node's subscribers get every node's events, once, in order.
    let writers: Vec<_> =
        (0..3).map(|node| spawn_writer(&cluster, node, &format!("a{node}"), 30, n_conversations)).collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_windows_match_store(&subscribers, &cluster.nodes[1].addr).await;
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());

    // A file uploaded through one node is attached through another and served by a third.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(&b"shared file"[..]).file_name("a.txt").mime_str("text/plain").unwrap(),
        )
        .text("filename", "a.txt");
    let uploaded: Value = cluster
        .http
        .post(format!("{}/files", cluster.nodes[0].base))
        .bearer_auth(SECRET)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = uploaded["attachmentToken"].as_str().unwrap();
    let sent = cluster
        .call(
            1,
            reqwest::Method::POST,
            "/conversations/c0/messages",
            json!([{ "type": "UserMessage", "sender": "u0", "attachmentToken": token }]),
        )
        .await;
    let message: Value = cluster
        .http
        .get(format!("{}/conversations/c0/messages/{}", cluster.nodes[2].base, sent[0]["id"].as_str().unwrap()))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The link names the node that made it (its --public-url); the same path on another node serves the file.
    let url = message["attachment"]["url"].as_str().unwrap();
    let (_, path) = url.trim_start_matches("http://").split_once('/').unwrap();
    let served = reqwest::get(format!("http://{}/{path}", cluster.nodes[2].addr)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), b"shared file");

    // Node 0 dies mid-stream; its clients reconnect through the balancer to node 1 and resume from the log.
    let writers: Vec<_> =
        (1..3).map(|node| spawn_writer(&cluster, node, &format!("b{node}"), 40, n_conversations)).collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.nodes[0].child.start_kill().unwrap();
    cluster.nodes[0].child.wait().await.unwrap();
    balancer.switch(cluster.nodes[1].addr.parse().unwrap());
    for writer in writers {
        writer.await.unwrap();
    }
    assert_windows_match_store(&subscribers, &cluster.nodes[2].addr).await;
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    assert!(validator.frames_of_type("resumed") >= n_users / 3, "resumed: {}", validator.frames_of_type("resumed"));
    assert_eq!(validator.frames_of_type("snapshot-not-resumed"), 0, "no resume fell back to a fresh snapshot");
    validator.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_keep_reaching_other_nodes_while_redis_is_down_and_after_it_returns() {
    if postgres_url().is_none() {
        return;
    }
    let mut redis = Redis::start().await;
    let cluster = Cluster::start(3, &redis).await;
    let (n_users, n_conversations) = (12, 3);
    cluster.seed(n_users, n_conversations).await;
    let validator = spawn_gateway().await;
    let problems = Arc::new(Mutex::new(Vec::new()));
    let mut subscribers = Vec::new();
    for i in 0..n_users {
        let url = format!("ws://{}", cluster.nodes[(i / 3) % 3].addr);
        subscribers.push(subscribe(&validator, &url, i, n_conversations, &problems).await);
    }
    // Each node listens on Redis for what its sessions watch, and only that.
    assert_eq!(redis.subscribers_of(&format!("natter:c:{APP}:c0")).await, 3);
    assert_eq!(redis.subscribers_of(&format!("natter:c:{APP}:nobody-watches-this")).await, 0);
    let writers: Vec<_> =
        (0..3).map(|node| spawn_writer(&cluster, node, &format!("r{node}"), 60, n_conversations)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill().await;
    // While Redis is down, what one node commits reaches the others from the log.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = spawn_store_reader(&cluster.nodes[0].addr);
    for subscriber in &subscribers {
        let newest = store(subscriber.conversation.clone(), 1).await;
        // Writers go on meanwhile: the window holds the newest message of then, or has moved past it.
        let seq_of = |state: &SubscriptionState| ids_of(state).iter().position(|id| *id == newest[0]);
        within(subscriber.subscription.wait_for(|state| seq_of(state).is_some())).await;
    }
    redis.restart().await;
    for writer in writers {
        writer.await.unwrap();
    }
    assert_windows_match_store(&subscribers, &cluster.nodes[0].addr).await;
    // After the restart every node subscribed again.
    let channel = format!("natter:c:{APP}:c0");
    within(async {
        while redis.subscribers_of(&channel).await != 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    validator.assert_frames_valid();
    // A node stops listening when its last local subscriber of the conversation leaves.
    drop(subscribers);
    within(async {
        while redis.subscribers_of(&channel).await != 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_nodes() {
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let cluster = Cluster::start(3, &redis).await;
    cluster.seed(3, 1).await;
    // The same retried send reaches three nodes at once: one message, one id, whichever node commits first.
    let body = json!([{ "type": "UserMessage", "sender": "u0", "text": "once", "idempotencyKey": "k1" }]);
    let sends =
        (0..3).map(|node| cluster.call(node, reqwest::Method::POST, "/conversations/c0/messages", body.clone()));
    let replies = futures::future::join_all(sends).await;
    let ids: Vec<&str> = replies.iter().map(|reply| reply[0]["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let page: Value = cluster
        .http
        .get(format!("{}/conversations/c0/messages", cluster.nodes[2].base))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
}

/// Stops the shared PostgreSQL server, so it runs alone: `cargo test --test it cluster::postgres_outage --
/// --ignored` (CI does, after the suite), with `NATTER_TEST_POSTGRES_CTL` naming a command that takes `stop` or
/// `start` (`.ci/services postgres`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the shared PostgreSQL server: run alone"]
async fn postgres_outage() {
    let Some(_) = postgres_url() else { return };
    let control = std::env::var("NATTER_TEST_POSTGRES_CTL").expect("NATTER_TEST_POSTGRES_CTL");
    let postgres = |action: &'static str| {
        let status = std::process::Command::new("sh").arg("-c").arg(format!("{control} {action}")).status().unwrap();
        assert!(status.success(), "{control} {action} failed");
    };
    let redis = Redis::start().await;
    let cluster = Cluster::start(2, &redis).await;
    cluster.seed(4, 1).await;
    let validator = spawn_gateway().await;
    let problems = Arc::new(Mutex::new(Vec::new()));
    let subscribers = vec![
        subscribe(&validator, &format!("ws://{}", cluster.nodes[0].addr), 0, 1, &problems).await,
        subscribe(&validator, &format!("ws://{}", cluster.nodes[1].addr), 1, 1, &problems).await,
    ];
    let before = json!([{ "type": "UserMessage", "sender": "u0", "text": "before the outage" }]);
    let acknowledged = cluster.call(0, reqwest::Method::POST, "/conversations/c0/messages", before).await;

    postgres("stop");
    let node = &cluster.nodes[1];
    let refused = cluster
        .http
        .post(format!("{}/conversations/c0/messages", node.base))
        .bearer_auth(SECRET)
        .json(&json!([{ "type": "UserMessage", "sender": "u1", "text": "during" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "a write while the database is down");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errorCode"], "SERVICE_UNAVAILABLE", "{body}");
    let ready = cluster.http.get(format!("http://{}/readyz", node.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz while the database is down");

    postgres("start");
    // Service resumes by itself: the write goes through once the database is back, and everyone sees both.
    let after = json!([{ "type": "UserMessage", "sender": "u1", "text": "after the outage" }]);
    cluster.call(1, reqwest::Method::POST, "/conversations/c0/messages", after).await;
    let ready = cluster.http.get(format!("http://{}/readyz", node.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_windows_match_store(&subscribers, &node.addr).await;
    let ids = ids_of(&subscribers[0].subscription.state());
    assert!(ids.contains(&acknowledged[0]["id"].as_str().unwrap().to_owned()), "the acknowledged write is kept");
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn without_apps_given_the_first_node_creates_one_in_the_database_and_every_other_node_serves_it() {
    let Some(base) = postgres_url() else { return };
    let database_url = tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap();
    // Both at once: nodes starting together must agree on one app.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) =
        tokio::join!(start_without_apps(dir_a.path(), &database_url), start_without_apps(dir_b.path(), &database_url));
    let created: Vec<_> =
        [&a, &b].iter().filter(|(_, _, printed)| printed.contains("Created app")).map(|n| n.2.clone()).collect();
    assert_eq!(created.len(), 1, "exactly one node creates the app:\n{}\n---\n{}", a.2, b.2);
    let field =
        |name: &str| created[0].lines().find_map(|line| line.trim().strip_prefix(name)).map(|v| v.trim().to_owned());
    let (app, secret) = (field("app id:").unwrap(), field("secret:").unwrap());
    let other = if a.2.contains("Created app") { &b.2 } else { &a.2 };
    assert!(other.contains(&format!("Serving app {app}")) && other.contains("apps table"), "{other}");
    for (_, addr, _) in [&a, &b] {
        let status = reqwest::Client::new()
            .put(format!("http://{addr}/v1/{app}/users/u"))
            .bearer_auth(&secret)
            .json(&json!({ "name": "U" }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "every node serves the app the database holds");
    }
    for (mut child, _, _) in [a, b] {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

/// Starts a node on `database_url` with no apps given; returns it, its address and what it printed first.
async fn start_without_apps(dir: &std::path::Path, database_url: &str) -> (Child, String, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .arg(format!("--database-url={database_url}"))
        .env_remove("NATTER_APPS")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "natter=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = within(async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = crate::durability::listening_address(&line) {
                return addr;
            }
            printed.push(line);
        }
        panic!("natter exited before listening:\n{}", printed.join("\n"));
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, printed.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_connection_and_request_limits_hold_for_the_whole_cluster() {
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let base = postgres_url().unwrap();
    let database_url = tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        let env = [
            ("NATTER_DATABASE_URL", database_url.as_str()),
            ("NATTER_BROKER_URL", &redis.url()),
            ("NATTER_CONNECTIONS_PER_APP", "4"),
            ("NATTER_REST_REQUESTS_PER_SECOND", "10"),
        ];
        nodes.push(start_with(dir.path(), "127.0.0.1:0", &env).await);
    }
    let connect = |node: usize| {
        let url = format!("ws://{}/v1/{APP}/realtime?token={}", nodes[node].addr, user_token("u", None));
        async move { tokio_tungstenite::connect_async(url).await }
    };
    // Two connections on each node fill the app's four; the nodes learn of each other within a sync interval.
    let mut open = Vec::new();
    for node in [0, 0, 1, 1] {
        open.push(connect(node).await.expect("within the limit"));
    }
    let refused = within(async {
        loop {
            match connect(0).await {
                Err(_) => return true,
                Ok(socket) => drop(socket),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(refused, "a fifth connection, on either node, is refused");
    assert!(connect(1).await.is_err(), "and on the other node too");

    // 10 requests per second for the app (bursts of 20) across both nodes: each node charges a request twice, so
    // the cluster admits about 20 + 10/s in all; two nodes limiting on their own would admit 40 + 20/s.
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..100 {
        for node in &nodes {
            let reply = http.get(format!("{}/users/u", node.base)).bearer_auth(SECRET).send().await.unwrap();
            if reply.status() != 429 {
                ok += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cluster_bound = 20.0 + 10.0 * seconds + 4.0;
    assert!(f64::from(ok) <= cluster_bound, "{ok} of 200 got through in {seconds:.2} s: more than the cluster's limit");
    assert!(ok >= 15, "{ok} of 200 got through: the limit admits its burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_delivers_each_webhook_event_and_another_takes_over_when_it_dies() {
    let Some(base) = postgres_url() else { return };
    let receiver = crate::webhooks::Receiver::start().await;
    let redis = Redis::start().await;
    let database_url = tokio::task::spawn_blocking(move || fresh_schema(&base)).await.unwrap();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = |dir: &tempfile::TempDir| {
        let (database_url, redis_url, url) = (database_url.clone(), redis.url(), receiver.url.clone());
        let dir = dir.path().to_owned();
        async move {
            let env = [
                ("NATTER_DATABASE_URL", database_url.as_str()),
                ("NATTER_BROKER_URL", redis_url.as_str()),
                ("NATTER_REST_REQUESTS_PER_SECOND", "0"),
                ("NATTER_WEBHOOK_URL", url.as_str()),
                ("NATTER_WEBHOOK_LEASE_MS", "1500"),
            ];
            start_with(&dir, "127.0.0.1:0", &env).await
        }
    };
    let mut nodes = [env(&dirs[0]).await, env(&dirs[1]).await];
    let http = reqwest::Client::new();
    let put_user = crate::webhooks::put_user;
    for i in 0..10 {
        put_user(&http, &nodes[i % 2].base, &format!("u{i}")).await;
    }
    let events = receiver.wait_for("ten users", |events| events.len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_now = receiver.acknowledged();
    assert_eq!(events_now.len(), 10, "each event once, from one node: {events_now:#?}");
    let users: Vec<_> = events.iter().map(|e| e["data"]["user"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(users, (0..10).map(|i| format!("u{i}")).collect::<Vec<_>>(), "in commit order");
    // Kill both in turn: whichever held the receiver, the survivor delivers once the lease lapses.
    nodes[0].child.kill().await.unwrap();
    put_user(&http, &nodes[1].base, "v0").await;
    receiver.wait_for("v0", |events| events.iter().any(|e| e["data"]["user"]["id"] == "v0")).await;
    nodes[0] = env(&dirs[0]).await;
    nodes[1].child.kill().await.unwrap();
    put_user(&http, &nodes[0].base, "v1").await;
    let events = receiver.wait_for("v1", |events| events.iter().any(|e| e["data"]["user"]["id"] == "v1")).await;
    let users: Vec<_> = events.iter().map(|e| e["data"]["user"]["id"].as_str().unwrap()).collect();
    assert_eq!(&users[users.len() - 2..], ["v0", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_change_on_one_node_reaches_their_subscribers_on_another() {
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let cluster = Cluster::start(2, &redis).await;
    cluster.call(0, reqwest::Method::PUT, "/users/me", json!({"name": "Me"})).await;
    let url = format!("ws://{}/v1/{APP}/realtime?token={}", cluster.nodes[1].addr, user_token("me", None));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    async fn next_text(socket: &mut crate::realtime_auth::RawSocket) -> Value {
        use futures::StreamExt;
        loop {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = within(socket.next()).await.unwrap().unwrap() {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }
    let subscribe = json!({"type": "subscribeUser", "id": "1", "userId": "bob"}).to_string();
    futures::SinkExt::send(&mut socket, tokio_tungstenite::tungstenite::Message::text(subscribe)).await.unwrap();
    assert_eq!(next_text(&mut socket).await["user"], Value::Null);
    assert_eq!(next_text(&mut socket).await["type"], "ok");
    cluster.call(0, reqwest::Method::PUT, "/users/bob", json!({"name": "Bob"})).await;
    let created = next_text(&mut socket).await;
    assert_eq!((&created["seq"], &created["user"]["name"]), (&json!(1), &json!("Bob")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_conversation_lists_and_reads_reach_a_session_on_another_node() {
    use crate::{realtime_auth::read_frame, realtime_users::request};
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let cluster = Cluster::start(2, &redis).await;
    let log = crate::helpers::spawn_gateway().await; // only to check frames against the schemas
    cluster.call(0, reqwest::Method::PUT, "/users", json!({"me": {"name": "Me"}, "bob": {"name": "Bob"}})).await;
    for id in ["c1", "c2"] {
        cluster
            .call(0, reqwest::Method::PUT, &format!("/conversations/{id}"), json!({"participants": ["me", "bob"]}))
            .await;
    }
    let connect = |node: usize, user: &str| {
        let url = format!("ws://{}/v1/{APP}/realtime?token={}", cluster.nodes[node].addr, user_token(user, None));
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let mut me = connect(1, "me").await;
    request(&mut me, json!({"type": "subscribeTyping", "id": "t", "conversationId": "c1"})).await;
    assert_eq!(read_frame(&mut me, &log).await["typing"], json!({"many": false, "users": []}));
    assert_eq!(read_frame(&mut me, &log).await["type"], "ok");
    request(&mut me, json!({"type": "subscribeConversations", "id": "l"})).await;
    let first = read_frame(&mut me, &log).await;
    assert_eq!(first["conversations"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(read_frame(&mut me, &log).await["type"], "ok");

    // Bob types on the other node, then sends there: his typing shows and ends, and c1 moves to the front.
    let mut bob = connect(0, "bob").await;
    request(&mut bob, json!({"type": "markAsTyping", "id": "b", "conversationId": "c1"})).await;
    assert_eq!(read_frame(&mut bob, &log).await["type"], "ok");
    assert_eq!(read_frame(&mut me, &log).await["typing"]["users"][0]["id"], "bob");
    request(&mut bob, json!({"type": "sendMessage", "id": "s", "conversationId": "c1", "text": "from node 0"})).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = read_frame(&mut me, &log).await;
        seen.push(frame["type"].as_str().unwrap().to_owned());
        match frame["type"].as_str().unwrap() {
            "typing" => assert_eq!(frame["typing"]["users"], json!([])),
            "conversations" => {
                assert_eq!(frame["conversations"][0]["id"], "c1");
                assert_eq!(frame["conversations"][0]["lastMessage"]["plaintext"], "from node 0");
                assert_eq!(frame["conversations"][0]["unreadMessageCount"], 1);
            }
            other => panic!("unexpected {other}: {frame}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["conversations", "typing"]);
    // A read through REST on node 0 reaches the list on node 1.
    cluster.call(0, reqwest::Method::PUT, "/users/me/conversations/c1", json!({"isUnread": false})).await;
    let read = read_frame(&mut me, &log).await;
    assert_eq!(read["conversations"][0]["unreadMessageCount"], 0, "{read}");
    log.assert_frames_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_is_online_while_a_session_anywhere_counts_and_offline_once_their_node_dies() {
    use crate::{realtime_auth::read_frame, realtime_users::request};
    if postgres_url().is_none() {
        return;
    }
    let redis = Redis::start().await;
    let mut cluster = Cluster::start(2, &redis).await;
    let log = crate::helpers::spawn_gateway().await; // only to check frames against the schemas
    cluster.call(0, reqwest::Method::PUT, "/users", json!({"me": {"name": "Me"}, "bob": {"name": "Bob"}})).await;
    let connect = |node: usize, user: &str| {
        let url = format!("ws://{}/v1/{APP}/realtime?token={}", cluster.nodes[node].addr, user_token(user, None));
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let hold = json!({"type": "subscribeUser", "id": "h", "userId": "bob"});
    // Nothing changes for `me` within a while: a request nobody else answers is answered next.
    async fn quiet(socket: &mut crate::realtime_auth::RawSocket, log: &TestGateway, id: &str) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        request(socket, json!({"type": "unsubscribeUser", "id": id, "userId": "nobody"})).await;
        assert_eq!(read_frame(socket, log).await["id"], id);
    }

    let mut me = connect(1, "me").await;
    request(&mut me, json!({"type": "subscribeOnline", "id": "o", "userId": "bob"})).await;
    assert_eq!(read_frame(&mut me, &log).await["online"]["isConnected"], false);
    assert_eq!(read_frame(&mut me, &log).await["type"], "ok");

    // Bob on node 0: online on node 1 too.
    let mut on_zero = connect(0, "bob").await;
    request(&mut on_zero, hold.clone()).await;
    assert_eq!(read_frame(&mut me, &log).await["online"]["isConnected"], true);
    // A second session on node 1, then the first ends: still online.
    let mut on_one = connect(1, "bob").await;
    request(&mut on_one, hold.clone()).await;
    assert_eq!(read_frame(&mut on_one, &log).await["type"], "user");
    drop(on_zero);
    quiet(&mut me, &log, "q1").await;
    // Back on node 0, and the session on node 1 (me's node) ends: node 1 asks Redis and finds him on node 0.
    let mut again = connect(0, "bob").await;
    request(&mut again, hold.clone()).await;
    assert_eq!(read_frame(&mut again, &log).await["type"], "user");
    drop(on_one);
    quiet(&mut me, &log, "q2").await;
    // Node 0 dies with bob on it: once its report expires, node 1 sweeps it and bob is offline.
    cluster.nodes[0].child.start_kill().unwrap();
    cluster.nodes[0].child.wait().await.unwrap();
    let offline = read_frame(&mut me, &log).await;
    assert_eq!(offline["online"]["isConnected"], false, "{offline}");
    drop(again);
    log.assert_frames_valid();
}
