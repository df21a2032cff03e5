//! The in-process broker: publishing is handing the event to this node's hub.

use super::{Broker, HubKey, SharedEvent};
use crate::hub::Hub;

pub struct LocalBroker {
    hub: Hub,
}

impl LocalBroker {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, key: &HubKey, event: SharedEvent) {
        self.hub.publish(key, &event);
    }
}
