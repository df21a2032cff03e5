//! The in-process broker: publishing is handing the frame to this node's hub.

use super::{Broker, ConversationKey, EncodedFrame};
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
    fn publish(&self, key: &ConversationKey, frame: EncodedFrame) {
        self.hub.publish(key, &frame);
    }
}
