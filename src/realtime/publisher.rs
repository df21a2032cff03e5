//! From the store to the node: the `CommitListener` that encodes each committed event once and publishes it
//! under its conversation's key (and, for joins and leaves, the user's), and `replay`, which reads a run of
//! events back for a resume or a hole, from the node's cache or else the store's event log.

use std::sync::{atomic::AtomicI64, atomic::Ordering, Arc};

use super::frames;
use crate::{
    app::AppState,
    domain::{
        event::{EventKind, Logged, UserEvent, UserEventKind},
        ids::{AppId, ConversationId, Seq},
    },
    hub::{EncodedEvent, HubKey, Membership, Node, SharedEvent, Stream},
    metrics::Metrics,
    store::{CommitListener, Committed, StoreResult},
    wire::Links,
};

/// Encodes committed events once and hands them to the node. The store calls it from its writer, in commit order,
/// so it never waits: the broker and the hub only `try_send`.
pub struct Publisher {
    pub node: Node,
    pub links: Links,
    pub metrics: Arc<Metrics>,
    /// The log position of the last event published, to check the order the store promises.
    last_position: AtomicI64,
}

impl Publisher {
    pub fn new(node: Node, links: Links, metrics: Arc<Metrics>) -> Self {
        Self { node, links, metrics, last_position: AtomicI64::new(0) }
    }
}

impl CommitListener for Publisher {
    fn committed(&self, committed: &Committed) {
        for logged in &committed.events {
            let previous = self.last_position.swap(logged.position.0, Ordering::Relaxed);
            if logged.position.0 <= previous {
                // Sessions would still repair by seq; this says the store broke its promise.
                self.metrics.commit_order_violations.inc();
                tracing::error!(position = logged.position.0, previous, "committed events out of log order");
            }
            let event = match &logged.event {
                Logged::Conversation(event) => event,
                Logged::User(event) => {
                    if let Some((key, encoded)) = user_delivery(&committed.app, event) {
                        self.metrics.events_published.inc();
                        self.node.publish(&key, encoded);
                    }
                    continue;
                }
            };
            self.metrics.events_published.inc();
            let encoded = Arc::new(frames::event_frame(event, &committed.app, &self.links));
            for_each_key(&committed.app, &event.conversation_id, encoded, |key, event| self.node.publish(key, event));
            if let EventKind::MessageCreated { message } = &event.kind {
                if let Some(sender) = &message.sender {
                    // Sending stops the sender's typing, whichever channel the message came from.
                    let key = HubKey::Typing {
                        app_id: committed.app.clone(),
                        conversation_id: event.conversation_id.clone(),
                    };
                    let signal = frames::typing_signal(&committed.app, &event.conversation_id, &sender.id, None);
                    self.node.publish(&key, Arc::new(signal));
                }
            }
        }
    }
}

/// An event of a user's stream, encoded once, with the key of those it concerns: a change of the user goes to
/// those who subscribe to the user; a read to the conversation's subscribers, as a signal without `seq` that the
/// read state changed (the user's stream is what logs it).
pub fn user_delivery(app_id: &AppId, event: &UserEvent) -> Option<(HubKey, SharedEvent)> {
    if let UserEventKind::ConversationRead { conversation_id, .. } = &event.kind {
        let key = HubKey::Conversation { app_id: app_id.clone(), conversation_id: conversation_id.clone() };
        let signal = EncodedEvent {
            app_id: app_id.clone(),
            stream: Stream::Read(conversation_id.clone()),
            seq: Seq(0),
            membership: None,
            frame: Default::default(),
        };
        return Some((key, Arc::new(signal)));
    }
    let encoded = frames::user_event_frame(event, app_id)?;
    Some((HubKey::Profile { app_id: app_id.clone(), user_id: event.user_id.clone() }, Arc::new(encoded)))
}

/// Hands an encoded event to each key it goes to: its conversation's, and for joins and leaves also the user's,
/// so that a session that cannot see the conversation yet learns that its user joined.
pub fn for_each_key(
    app_id: &AppId,
    conversation_id: &ConversationId,
    encoded: SharedEvent,
    mut deliver: impl FnMut(&HubKey, SharedEvent),
) {
    if let Some(Membership::Joined(user_id) | Membership::Left(user_id)) = &encoded.membership {
        let key = HubKey::User { app_id: app_id.clone(), user_id: user_id.clone() };
        deliver(&key, Arc::clone(&encoded));
    }
    let key = HubKey::Conversation { app_id: app_id.clone(), conversation_id: conversation_id.clone() };
    deliver(&key, encoded);
}

/// The events of a conversation with `after < seq <= up_to`, encoded, if every one of them can still be read:
/// from the node's recent-events cache, or else the store's event log (what the log gives is cached too).
/// `Ok(None)` when the run is not whole (pruned, or longer than a replay may be).
pub async fn replay(
    state: &AppState,
    app_id: &AppId,
    conversation_id: &ConversationId,
    after: Seq,
    up_to: Seq,
) -> StoreResult<Option<Vec<SharedEvent>>> {
    if up_to.0 - after.0 > super::subscription::MAX_REPLAY_EVENTS {
        return Ok(None);
    }
    let (node, links) = (&state.node, &state.links);
    if let Some(run) = node.history().run(app_id, conversation_id, after, up_to) {
        return Ok(Some(run));
    }
    state.metrics.replay_log_reads.inc();
    let logged = state.store.conversation_events(app_id, conversation_id, after, up_to).await?;
    if !Seq::is_whole_run(logged.iter().map(|logged| logged.event.seq), after, up_to) {
        return Ok(None);
    }
    let events: Vec<SharedEvent> =
        logged.iter().map(|logged| Arc::new(frames::event_frame(&logged.event, app_id, links))).collect();
    for event in &events {
        node.history().record(event);
    }
    Ok(Some(events))
}
