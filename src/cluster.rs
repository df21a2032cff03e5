//! What the nodes of one cluster tell each other, through the broker's Redis, so that per-app limits hold for the
//! cluster (`limits::ClusterView`): every `SYNC_INTERVAL` each node stores its open connections per app under a key
//! of its own that expires after `REPORT_TTL_SECONDS`, and reads the others'. A node whose key expired (it stopped
//! or died) no longer counts. While Redis is unreachable, a node keeps the last view it had.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{domain::ids::AppId, limits::Limits};

/// How often a node reports and reads the others: how stale the cluster view may be.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// A report lives this long: a node that stops reporting drops out of the view after it.
const REPORT_TTL_SECONDS: u64 = 5;
const TIMEOUT: Duration = Duration::from_secs(3);
const NODES_KEY: &str = "natter:nodes";

fn report_key(node: &str) -> String {
    format!("natter:node:{node}")
}

/// Starts the reports, until `stop`. A bad URL is an error now; an unreachable server is retried.
pub fn spawn(url: &str, limits: Arc<Limits>, stop: CancellationToken) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|error| format!("invalid broker URL: {error}"))?;
    let node = format!("{:016x}", rand::random::<u64>());
    tokio::spawn(async move {
        tokio::select! {
            () = run(client, node, limits) => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(())
}

async fn run(client: redis::Client, node: String, limits: Arc<Limits>) {
    let mut connection = None;
    loop {
        tokio::time::sleep(SYNC_INTERVAL).await;
        if connection.is_none() {
            connection = match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await {
                Ok(Ok(connection)) => Some(connection),
                _ => continue,
            };
        }
        let Some(open) = connection.as_mut() else { continue };
        match tokio::time::timeout(TIMEOUT, sync(open, &node, &limits)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(cause = %error, "cluster report failed");
                connection = None;
            }
            Err(_) => connection = None,
        }
    }
}

async fn sync(
    connection: &mut redis::aio::MultiplexedConnection,
    node: &str,
    limits: &Limits,
) -> redis::RedisResult<()> {
    let report: HashMap<String, usize> =
        limits.local_connections().into_iter().map(|(app, open)| (app.as_str().to_owned(), open)).collect();
    let report = serde_json::to_string(&report).expect("counts always encode");
    let (members,): (Vec<String>,) = redis::pipe()
        .cmd("SET")
        .arg(report_key(node))
        .arg(report)
        .arg("EX")
        .arg(REPORT_TTL_SECONDS)
        .ignore()
        .cmd("SADD")
        .arg(NODES_KEY)
        .arg(node)
        .ignore()
        .cmd("SMEMBERS")
        .arg(NODES_KEY)
        .query_async(connection)
        .await?;
    let keys: Vec<String> = members.iter().map(|member| report_key(member)).collect();
    let reports: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(connection).await?;
    let mut live = 0;
    let mut remote: HashMap<AppId, usize> = HashMap::new();
    let mut gone = Vec::new();
    for (member, report) in members.iter().zip(reports) {
        let Some(report) = report else {
            gone.push(member.clone());
            continue;
        };
        live += 1;
        if member == node {
            continue;
        }
        let counts: HashMap<String, usize> = serde_json::from_str(&report).unwrap_or_default();
        for (app, open) in counts {
            *remote.entry(AppId::from_trusted(app)).or_default() += open;
        }
    }
    if !gone.is_empty() {
        redis::cmd("SREM").arg(NODES_KEY).arg(&gone).query_async::<()>(connection).await?;
    }
    limits.cluster().update(live, remote);
    Ok(())
}
