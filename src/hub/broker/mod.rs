//! Cross-node pub/sub seam. A broker carries encoded events from the node that committed a write to the hub of
//! every node. `LocalBroker` is the single-node case; a Redis or NATS broker would subscribe a node to a
//! conversation when its hub gains the first local subscriber and unsubscribe when it loses the last.
//!
//! The broker is best-effort: clients recover any gap from the store by `seq`.

mod local;

pub use local::LocalBroker;

use super::{HubKey, SharedEvent};

pub trait Broker: Send + Sync + 'static {
    /// Publishes without waiting for delivery.
    fn publish(&self, key: &HubKey, event: SharedEvent);
}
