//! The cross-node pub/sub seam (centrifuge's `broker.go` is the model). A broker carries encoded events from the
//! node that committed a write to every node that watches their key, and delivers them to each node's `Inbound`.
//!
//! A node tells its broker when it starts watching a key (its first local watcher) and when it stops (its last
//! left), so a cross-node broker subscribes only to what the node needs. `LocalBroker` is the single-node case;
//! `UnreliableBroker` delivers late, twice and out of order, to test that sessions repair what a real broker may do.
//!
//! The broker is best-effort: sessions fill every hole from the store's event log by `seq`.

mod local;
#[cfg(feature = "redis")]
mod redis;
mod unreliable;

pub use local::LocalBroker;
pub use unreliable::{Unreliability, UnreliableBroker};

use super::{node::Inbound, HubKey, SharedEvent};

pub trait Broker: Send + Sync + 'static {
    /// Publishes without waiting for delivery. Called from the store's writer, in commit order.
    fn publish(&self, key: &HubKey, event: SharedEvent);
    /// This node now has a watcher for `key`. Called with the key's hub entry locked: it must not block, nor
    /// call back into the node.
    fn watch(&self, key: &HubKey);
    /// This node's last watcher of `key` left. Same rules as `watch`.
    fn unwatch(&self, key: &HubKey);
    /// Events from other nodes arrive through the broker now (for a broker between nodes: it is connected).
    fn connected(&self) -> bool {
        true
    }
    /// The broker carries events between nodes, so events other nodes committed may reach this one only late
    /// or not at all through it: the node reads them from the event log too (`realtime::catchup`).
    fn spans_nodes(&self) -> bool {
        false
    }
}

/// Which broker a node uses.
#[derive(Clone, Debug, Default)]
pub enum BrokerConfig {
    /// One node: publishing is delivering to this node.
    #[default]
    Local,
    /// For tests: like `Local`, but delivers late, twice and out of order.
    Unreliable(Unreliability),
    /// Several nodes: Redis pub/sub at this URL (`redis://host:port`).
    Redis(String),
}

impl BrokerConfig {
    /// Builds the broker that delivers to `inbound`. Must run inside the tokio runtime.
    pub fn build(&self, inbound: Inbound) -> Result<std::sync::Arc<dyn Broker>, String> {
        Ok(match self {
            BrokerConfig::Local => std::sync::Arc::new(LocalBroker::new(inbound)),
            BrokerConfig::Unreliable(unreliability) => {
                std::sync::Arc::new(UnreliableBroker::new(inbound, unreliability.clone()))
            }
            #[cfg(feature = "redis")]
            BrokerConfig::Redis(url) => std::sync::Arc::new(redis::RedisBroker::start(inbound, url)?),
            #[cfg(not(feature = "redis"))]
            BrokerConfig::Redis(_) => return Err("the Redis broker is not compiled in (the \"redis\" feature)".into()),
        })
    }
}
