//! What the nodes of one cluster tell each other, through the broker's Redis.
//!
//! Limits: so that per-app limits hold for the cluster (`limits::ClusterView`), every `SYNC_INTERVAL` each node
//! stores its open connections per app under a key of its own that expires after `REPORT_TTL_SECONDS`, and reads
//! the others'. A node whose key expired (it stopped or died) no longer counts. While Redis is unreachable, a node
//! keeps the last view it had.
//!
//! Presence (`hub::presence::SharedPresence`): each node keeps the users it counts as connected in a set of its
//! own. A change is written there before its `Online` signal is published, so a node reading on the signal sees
//! it; a lookup asks, in one script, whether any other node with a live report holds the user. The node that finds
//! a dead node gone signals that node's users and deletes its set. A node whose set is missing (Redis restarted, or
//! a write failed) writes it whole again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::ids::{AppId, UserId},
    hub::{presence, HubKey, Node},
    limits::Limits,
};

/// How often a node reports and reads the others: how stale the cluster view may be.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// A report lives this long: a node that stops reporting drops out of the view after it.
const REPORT_TTL_SECONDS: u64 = 5;
/// A node's presence set outlives its report, so the node that finds it gone can still read whom to signal.
const PRESENCE_TTL_SECONDS: u64 = 60;
const TIMEOUT: Duration = Duration::from_secs(3);
/// A presence lookup that takes longer answers "not elsewhere".
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
const NODES_KEY: &str = "natter:nodes";
/// Members written per command when a presence set is written whole.
const REWRITE_CHUNK: usize = 1000;

/// Whether any node but `ARGV[1]` with a live report holds member `ARGV[2]` in its presence set.
const ELSEWHERE_SCRIPT: &str = r"
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[1] and redis.call('EXISTS', 'natter:node:' .. node) == 1
     and redis.call('SISMEMBER', 'natter:presence:' .. node, ARGV[2]) == 1 then
    return 1
  end
end
return 0
";

fn report_key(node: &str) -> String {
    format!("natter:node:{node}")
}

fn presence_key(node: &str) -> String {
    format!("natter:presence:{node}")
}

/// Ids hold no control characters, so a newline separates them.
fn presence_member(app: &AppId, user: &UserId) -> String {
    format!("{app}\n{user}")
}

fn parse_member(member: &str) -> Option<(AppId, UserId)> {
    let (app, user) = member.split_once('\n')?;
    Some((AppId::from_trusted(app.to_owned()), UserId::from_trusted(user.to_owned())))
}

/// This node's side of shared presence: the changes waiting to be written, and the connection lookups use.
struct ClusterPresence {
    node_id: String,
    dirty: Mutex<HashSet<(AppId, UserId)>>,
    wake: Notify,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl presence::SharedPresence for ClusterPresence {
    fn changed(&self, app: &AppId, user: &UserId) {
        self.dirty.lock().expect("presence lock poisoned").insert((app.clone(), user.clone()));
        self.wake.notify_one();
    }

    fn elsewhere<'a>(&'a self, app: &'a AppId, user: &'a UserId) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(mut connection) = self.connection.lock().expect("presence lock poisoned").clone() else {
                return false;
            };
            let mut command = redis::cmd("EVAL");
            command.arg(ELSEWHERE_SCRIPT).arg(1).arg(NODES_KEY).arg(&self.node_id).arg(presence_member(app, user));
            let lookup = command.query_async::<i64>(&mut connection);
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found == 1,
                Ok(Err(error)) => {
                    tracing::debug!(cause = %error, "presence lookup failed");
                    false
                }
                Err(_) => false,
            }
        })
    }
}

/// Starts the reports and shared presence, until `stop`. A bad URL is an error now; an unreachable server is
/// retried.
pub fn spawn(url: &str, limits: Arc<Limits>, node: Node, stop: CancellationToken) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|error| format!("invalid broker URL: {error}"))?;
    let presence = Arc::new(ClusterPresence {
        node_id: format!("{:016x}", rand::random::<u64>()),
        dirty: Mutex::default(),
        wake: Notify::new(),
        connection: Mutex::default(),
    });
    node.presence().share(presence.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = run(client, presence, limits, node) => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(())
}

/// One task does every write, so a presence set written whole and the changes around it reach Redis in order.
async fn run(client: redis::Client, presence: Arc<ClusterPresence>, limits: Arc<Limits>, node: Node) {
    let mut connection: Option<MultiplexedConnection> = None;
    // The first sync comes at once: other nodes must know this one before its first user arrives.
    let mut next_sync = tokio::time::Instant::now();
    let mut rewrite = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_sync) => {}
            () = presence.wake.notified() => {}
        }
        let mut result = Ok(());
        if tokio::time::Instant::now() >= next_sync {
            next_sync = tokio::time::Instant::now() + SYNC_INTERVAL;
            if connection.is_none() {
                let opening = client.get_multiplexed_async_connection();
                if let Ok(Ok(opened)) = tokio::time::timeout(TIMEOUT, opening).await {
                    *presence.connection.lock().expect("presence lock poisoned") = Some(opened.clone());
                    connection = Some(opened);
                    rewrite = true;
                }
            }
            if let Some(open) = connection.as_mut() {
                result = with_timeout(sync(open, &presence.node_id, &limits, &node, &mut rewrite)).await;
            }
        }
        // Written, or not (Redis is away): either way this node's own subscribers hear of the change.
        let changed: Vec<_> = presence.dirty.lock().expect("presence lock poisoned").drain().collect();
        if let (Ok(()), Some(open), false) = (&result, connection.as_mut(), changed.is_empty()) {
            result = with_timeout(write_changes(open, &presence.node_id, &node, &changed)).await;
        }
        for (app, user) in &changed {
            signal(&node, app, user);
        }
        if let Err(error) = result {
            tracing::debug!(cause = %error, "cluster sync failed");
            connection = None;
            *presence.connection.lock().expect("presence lock poisoned") = None;
        }
    }
}

async fn with_timeout(work: impl std::future::Future<Output = redis::RedisResult<()>>) -> redis::RedisResult<()> {
    tokio::time::timeout(TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))))
}

fn signal(node: &Node, app: &AppId, user: &UserId) {
    let key = HubKey::Online { app_id: app.clone(), user_id: user.clone() };
    node.publish(&key, presence::signal(app, user));
}

/// Adds or removes each changed user as this node counts them now.
async fn write_changes(
    connection: &mut MultiplexedConnection,
    node_id: &str,
    node: &Node,
    changed: &[(AppId, UserId)],
) -> redis::RedisResult<()> {
    let key = presence_key(node_id);
    let mut pipe = redis::pipe();
    for (app, user) in changed {
        let command = if node.presence().is_here(app, user) { "SADD" } else { "SREM" };
        pipe.cmd(command).arg(&key).arg(presence_member(app, user)).ignore();
    }
    pipe.cmd("EXPIRE").arg(&key).arg(PRESENCE_TTL_SECONDS).ignore();
    pipe.query_async(connection).await
}

/// Replaces this node's presence set with whom it counts now, in one transaction.
async fn rewrite_presence(
    connection: &mut MultiplexedConnection,
    node_id: &str,
    node: &Node,
) -> redis::RedisResult<()> {
    let key = presence_key(node_id);
    let members: Vec<String> = node.presence().here().iter().map(|(app, user)| presence_member(app, user)).collect();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(&key).ignore();
    for chunk in members.chunks(REWRITE_CHUNK) {
        pipe.cmd("SADD").arg(&key).arg(chunk).ignore();
    }
    pipe.cmd("EXPIRE").arg(&key).arg(PRESENCE_TTL_SECONDS).ignore();
    pipe.query_async(connection).await
}

/// A node found gone: if this node is the one that removes it, it signals the gone node's users and deletes its
/// set.
async fn sweep(connection: &mut MultiplexedConnection, gone: &str, node: &Node) -> redis::RedisResult<()> {
    let removed: i64 = redis::cmd("SREM").arg(NODES_KEY).arg(gone).query_async(connection).await?;
    if removed == 0 {
        return Ok(());
    }
    let key = presence_key(gone);
    let (members,): (Vec<String>,) =
        redis::pipe().atomic().cmd("SMEMBERS").arg(&key).cmd("DEL").arg(&key).ignore().query_async(connection).await?;
    for (app, user) in members.iter().filter_map(|member| parse_member(member)) {
        signal(node, &app, &user);
    }
    Ok(())
}

/// Reports this node's connections, reads the others', keeps this node's presence set alive (or writes it whole),
/// and sweeps nodes found gone.
async fn sync(
    connection: &mut MultiplexedConnection,
    node_id: &str,
    limits: &Limits,
    node: &Node,
    rewrite: &mut bool,
) -> redis::RedisResult<()> {
    let report: HashMap<String, usize> =
        limits.local_connections().into_iter().map(|(app, open)| (app.as_str().to_owned(), open)).collect();
    let report = serde_json::to_string(&report).expect("counts always encode");
    let (kept, members): (i64, Vec<String>) = redis::pipe()
        .cmd("SET")
        .arg(report_key(node_id))
        .arg(report)
        .arg("EX")
        .arg(REPORT_TTL_SECONDS)
        .ignore()
        .cmd("SADD")
        .arg(NODES_KEY)
        .arg(node_id)
        .ignore()
        .cmd("EXPIRE")
        .arg(presence_key(node_id))
        .arg(PRESENCE_TTL_SECONDS)
        .cmd("SMEMBERS")
        .arg(NODES_KEY)
        .query_async(connection)
        .await?;
    // No set to keep alive while someone is here: it was lost, write it whole.
    if *rewrite || (kept == 0 && !node.presence().here().is_empty()) {
        rewrite_presence(connection, node_id, node).await?;
        *rewrite = false;
    }
    let keys: Vec<String> = members.iter().map(|member| report_key(member)).collect();
    let reports: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(connection).await?;
    let mut live = 0;
    let mut remote: HashMap<AppId, usize> = HashMap::new();
    for (member, report) in members.iter().zip(reports) {
        let Some(report) = report else {
            sweep(connection, member, node).await?;
            continue;
        };
        live += 1;
        if member == node_id {
            continue;
        }
        let counts: HashMap<String, usize> = serde_json::from_str(&report).unwrap_or_default();
        for (app, open) in counts {
            *remote.entry(AppId::from_trusted(app)).or_default() += open;
        }
    }
    limits.cluster().update(live, remote);
    Ok(())
}
