//! The in-process broker: publishing is delivering to this node. Every key is on this node, so watching is free.

use super::{Broker, HubKey, Inbound, SharedEvent};

pub struct LocalBroker {
    inbound: Inbound,
}

impl LocalBroker {
    pub fn new(inbound: Inbound) -> Self {
        Self { inbound }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, key: &HubKey, event: SharedEvent) {
        self.inbound.deliver(key, event);
    }

    fn watch(&self, _key: &HubKey) {}

    fn unwatch(&self, _key: &HubKey) {}
}
