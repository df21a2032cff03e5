//! Redis pub/sub between nodes: the fast path of cross-node delivery, never the only one.
//!
//! `publish` delivers to this node at once (as the local broker does), then queues the event for Redis: a task
//! sends what is queued as one pipeline of `PUBLISH`es per round trip. Another task holds the subscription
//! connection: it subscribes to the channel of every key this node watches (told by `watch`/`unwatch`, in order),
//! resubscribes to all of them after a reconnect, and delivers what other nodes publish. Both reconnect with
//! jittered exponential backoff.
//!
//! Redis may lose events (a full queue, a dropped connection) and nodes' publications may overtake each other;
//! nothing depends on it: sessions fill holes from the event log, and while Redis is unreachable the node's
//! catch-up reader (`realtime::catchup`) delivers from the log instead. An event carries its node's id, so a node
//! skips its own events when Redis echoes them back.
//!
//! A message is a JSON header line (node, app, conversation, seq, membership change) and the encoded frame, so a
//! receiving node decodes it once and fans the same bytes out to all its sessions.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Broker, HubKey, Inbound, SharedEvent};
use crate::{
    domain::ids::{AppId, ConversationId, Seq, UserId},
    hub::{EncodedEvent, Membership, Stream},
};

/// Events queued for Redis at most; past it, events are dropped for Redis only (the log still has them).
const PUBLISH_QUEUE: usize = 65_536;
/// Events sent in one pipeline at most.
const MAX_PIPELINE: usize = 512;
/// How long connecting, or one round trip, may take before the connection counts as down.
const TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct RedisBroker {
    inbound: Inbound,
    node_id: u64,
    publish_tx: mpsc::Sender<(String, Vec<u8>)>,
    watch_tx: mpsc::UnboundedSender<Watch>,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Both connections are up: events from other nodes arrive through Redis.
    subscribed: AtomicBool,
    published: AtomicBool,
}

enum Watch {
    Start(String),
    Stop(String),
}

/// The header line of a message.
#[derive(Serialize, Deserialize)]
struct Header {
    node: u64,
    app: String,
    /// The conversation of a conversation's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation: Option<String>,
    /// The user of a user's own event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// The conversation of a read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read: Option<String>,
    /// The conversation and user of a typing signal, and whether they type or stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typing: Option<(String, String, bool)>,
    /// The user whose presence changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    online: Option<String>,
    seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joined: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

/// The channel of a key. Ids are percent-encoded where they could be mistaken for the separator.
fn channel(key: &HubKey) -> String {
    let encode = |id: &str| percent_encoding::utf8_percent_encode(id, CHANNEL_ESCAPES).to_string();
    match key {
        HubKey::Conversation { app_id, conversation_id } => {
            format!("natter:c:{}:{}", encode(app_id.as_str()), encode(conversation_id.as_str()))
        }
        HubKey::User { app_id, user_id } => {
            format!("natter:u:{}:{}", encode(app_id.as_str()), encode(user_id.as_str()))
        }
        HubKey::Profile { app_id, user_id } => {
            format!("natter:p:{}:{}", encode(app_id.as_str()), encode(user_id.as_str()))
        }
        HubKey::Typing { app_id, conversation_id } => {
            format!("natter:t:{}:{}", encode(app_id.as_str()), encode(conversation_id.as_str()))
        }
        HubKey::Online { app_id, user_id } => {
            format!("natter:o:{}:{}", encode(app_id.as_str()), encode(user_id.as_str()))
        }
    }
}

const CHANNEL_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b':').add(b'%').add(b' ');

/// The key a channel names.
fn key_of(channel: &str) -> Option<HubKey> {
    let decode = |id: &str| percent_encoding::percent_decode_str(id).decode_utf8().ok().map(|id| id.into_owned());
    let mut parts = channel.strip_prefix("natter:")?.splitn(3, ':');
    let (kind, app, id) = (parts.next()?, decode(parts.next()?)?, decode(parts.next()?)?);
    let app_id = AppId::from_trusted(app);
    match kind {
        "c" => Some(HubKey::Conversation { app_id, conversation_id: ConversationId::from_trusted(id) }),
        "u" => Some(HubKey::User { app_id, user_id: UserId::from_trusted(id) }),
        "p" => Some(HubKey::Profile { app_id, user_id: UserId::from_trusted(id) }),
        "t" => Some(HubKey::Typing { app_id, conversation_id: ConversationId::from_trusted(id) }),
        "o" => Some(HubKey::Online { app_id, user_id: UserId::from_trusted(id) }),
        _ => None,
    }
}

fn encode_message(node: u64, event: &EncodedEvent) -> Vec<u8> {
    let (joined, left, deleted) = match &event.membership {
        Some(Membership::Joined(user)) => (Some(user.as_str().to_owned()), None, false),
        Some(Membership::Left(user)) => (None, Some(user.as_str().to_owned()), false),
        Some(Membership::ConversationDeleted) => (None, None, true),
        None => (None, None, false),
    };
    let header = Header {
        node,
        app: event.app_id.as_str().to_owned(),
        conversation: event.conversation_id().map(|id| id.as_str().to_owned()),
        user: match &event.stream {
            Stream::User(user_id) => Some(user_id.as_str().to_owned()),
            _ => None,
        },
        read: match &event.stream {
            Stream::Read(conversation_id) => Some(conversation_id.as_str().to_owned()),
            _ => None,
        },
        typing: match &event.stream {
            Stream::Typing { conversation_id, user_id, typing } => {
                Some((conversation_id.as_str().to_owned(), user_id.as_str().to_owned(), *typing))
            }
            _ => None,
        },
        online: match &event.stream {
            Stream::Online(user_id) => Some(user_id.as_str().to_owned()),
            _ => None,
        },
        seq: event.seq.0,
        joined,
        left,
        deleted,
    };
    let mut message = serde_json::to_vec(&header).expect("headers always encode");
    message.push(b'\n');
    message.extend_from_slice(event.frame.as_str().as_bytes());
    message
}

/// The sending node and the event, or `None` for a message that is not one of ours.
fn decode_message(message: &[u8]) -> Option<(u64, EncodedEvent)> {
    let split = message.iter().position(|&byte| byte == b'\n')?;
    let header: Header = serde_json::from_slice(&message[..split]).ok()?;
    let frame = std::str::from_utf8(&message[split + 1..]).ok()?.to_owned();
    let membership = match (header.joined, header.left, header.deleted) {
        (Some(user), _, _) => Some(Membership::Joined(UserId::from_trusted(user))),
        (None, Some(user), _) => Some(Membership::Left(UserId::from_trusted(user))),
        (None, None, true) => Some(Membership::ConversationDeleted),
        (None, None, false) => None,
    };
    let stream = if let Some(conversation) = header.conversation {
        Stream::Conversation(ConversationId::from_trusted(conversation))
    } else if let Some(user) = header.user {
        Stream::User(UserId::from_trusted(user))
    } else if let Some(conversation) = header.read {
        Stream::Read(ConversationId::from_trusted(conversation))
    } else if let Some((conversation, user, typing)) = header.typing {
        Stream::Typing {
            conversation_id: ConversationId::from_trusted(conversation),
            user_id: UserId::from_trusted(user),
            typing,
        }
    } else if let Some(user) = header.online {
        Stream::Online(UserId::from_trusted(user))
    } else {
        return None;
    };
    let event = EncodedEvent {
        app_id: AppId::from_trusted(header.app),
        stream,
        seq: Seq(header.seq),
        membership,
        frame: frame.into(),
    };
    Some((header.node, event))
}

impl RedisBroker {
    /// Starts the publishing and subscribing tasks. Must be called inside the tokio runtime. A bad URL is an
    /// error now; an unreachable server is retried for as long as the node runs.
    pub fn start(inbound: Inbound, url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|error| format!("invalid broker URL: {error}"))?;
        let node_id = rand::random::<u64>();
        let state = Arc::new(State::default());
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_publisher(client.clone(), publish_rx, state.clone()));
        tokio::spawn(run_subscriber(client, watch_rx, inbound.clone(), node_id, state.clone()));
        Ok(Self { inbound, node_id, publish_tx, watch_tx, state })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, key: &HubKey, event: SharedEvent) {
        let message = encode_message(self.node_id, &event);
        self.inbound.deliver(key, event);
        if self.publish_tx.try_send((channel(key), message)).is_err() {
            tracing::debug!("broker queue full: an event goes to other nodes through the log only");
        }
    }

    fn watch(&self, key: &HubKey) {
        let _ = self.watch_tx.send(Watch::Start(channel(key)));
    }

    fn unwatch(&self, key: &HubKey) {
        let _ = self.watch_tx.send(Watch::Stop(channel(key)));
    }

    fn connected(&self) -> bool {
        self.state.subscribed.load(Ordering::Relaxed) && self.state.published.load(Ordering::Relaxed)
    }

    fn spans_nodes(&self) -> bool {
        true
    }
}

/// Sleeps for the backoff, then doubles it (with jitter) up to the maximum.
async fn back_off(backoff: &mut Duration) {
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    tokio::time::sleep(backoff.mul_f64(jitter)).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

async fn run_publisher(client: redis::Client, mut publish_rx: mpsc::Receiver<(String, Vec<u8>)>, state: Arc<State>) {
    let mut backoff = MIN_BACKOFF;
    let mut batch = Vec::with_capacity(MAX_PIPELINE);
    loop {
        let connection = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await;
        let mut connection = match connection {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                tracing::warn!(cause = %error, "cannot connect to the broker to publish");
                back_off(&mut backoff).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("connecting to the broker timed out");
                back_off(&mut backoff).await;
                continue;
            }
        };
        state.published.store(true, Ordering::Relaxed);
        backoff = MIN_BACKOFF;
        loop {
            if publish_rx.recv_many(&mut batch, MAX_PIPELINE).await == 0 {
                return;
            }
            let mut pipeline = redis::pipe();
            for (channel, message) in batch.drain(..) {
                pipeline.cmd("PUBLISH").arg(channel).arg(message).ignore();
            }
            match tokio::time::timeout(TIMEOUT, pipeline.exec_async(&mut connection)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(cause = %error, "publishing to the broker failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!("publishing to the broker timed out");
                    break;
                }
            }
        }
        // What was in the failed pipeline went to other nodes through the log.
        state.published.store(false, Ordering::Relaxed);
        back_off(&mut backoff).await;
    }
}

async fn run_subscriber(
    client: redis::Client,
    mut watch_rx: mpsc::UnboundedReceiver<Watch>,
    inbound: Inbound,
    node_id: u64,
    state: Arc<State>,
) {
    let mut watched = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    loop {
        let pubsub = match tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                if let Ok(Err(error)) = failed {
                    tracing::warn!(cause = %error, "cannot connect to the broker to subscribe");
                }
                // Keep the watched set current while disconnected.
                while let Ok(change) = watch_rx.try_recv() {
                    apply(&mut watched, &change);
                }
                back_off(&mut backoff).await;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut healthy = true;
        for channel in &watched {
            if sink.subscribe(channel).await.is_err() {
                healthy = false;
                break;
            }
        }
        if healthy {
            state.subscribed.store(true, Ordering::Relaxed);
            backoff = MIN_BACKOFF;
            tracing::info!(channels = watched.len(), "subscribed to the broker");
        }
        while healthy {
            tokio::select! {
                change = watch_rx.recv() => {
                    let Some(change) = change else { return };
                    let result = match &change {
                        Watch::Start(channel) if !watched.contains(channel) => sink.subscribe(channel).await,
                        Watch::Stop(channel) if watched.contains(channel) => sink.unsubscribe(channel).await,
                        _ => Ok(()),
                    };
                    apply(&mut watched, &change);
                    healthy = result.is_ok();
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(key) = key_of(message.get_channel_name()) else { continue };
                    match decode_message(message.get_payload_bytes()) {
                        Some((from, _)) if from == node_id => {}
                        Some((_, event)) => inbound.deliver(&key, Arc::new(event)),
                        None => tracing::warn!(channel = message.get_channel_name(), "unreadable broker message"),
                    }
                }
            }
        }
        state.subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("lost the broker subscription; events from other nodes come from the log until it is back");
        back_off(&mut backoff).await;
    }
}

fn apply(watched: &mut HashSet<String>, change: &Watch) {
    match change {
        Watch::Start(channel) => {
            watched.insert(channel.clone());
        }
        Watch::Stop(channel) => {
            watched.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_keys_whatever_the_ids_hold() {
        let key = HubKey::Conversation {
            app_id: AppId::from_trusted("app:1".into()),
            conversation_id: ConversationId::from_trusted("a:b%c d".into()),
        };
        assert_eq!(key_of(&channel(&key)), Some(key));
        let key =
            HubKey::User { app_id: AppId::from_trusted("app".into()), user_id: UserId::from_trusted("ü:x".into()) };
        assert_eq!(key_of(&channel(&key)), Some(key));
        let key =
            HubKey::Profile { app_id: AppId::from_trusted("app".into()), user_id: UserId::from_trusted("b".into()) };
        assert_eq!(key_of(&channel(&key)), Some(key));
        let key = HubKey::Typing {
            app_id: AppId::from_trusted("app".into()),
            conversation_id: ConversationId::from_trusted("c".into()),
        };
        assert_eq!(key_of(&channel(&key)), Some(key));
        let key =
            HubKey::Online { app_id: AppId::from_trusted("app".into()), user_id: UserId::from_trusted("o".into()) };
        assert_eq!(key_of(&channel(&key)), Some(key));
        assert_eq!(key_of("other:c:a:b"), None);
    }

    #[test]
    fn a_message_carries_the_event_and_its_node() {
        let event = EncodedEvent {
            app_id: AppId::from_trusted("app".into()),
            stream: Stream::Conversation(ConversationId::from_trusted("c".into())),
            seq: Seq(7),
            membership: Some(Membership::Left(UserId::from_trusted("bob".into()))),
            frame: "{\"type\":\"event\"}\n".into(),
        };
        let (node, decoded) = decode_message(&encode_message(42, &event)).unwrap();
        assert_eq!(node, 42);
        assert_eq!(
            (decoded.seq, decoded.membership, decoded.frame.as_str()),
            (event.seq, event.membership, "{\"type\":\"event\"}\n")
        );
        assert!(decode_message(b"not a message").is_none());
    }

    #[test]
    fn a_message_carries_what_reads_typing_and_presence_are_about() {
        let streams = [
            Stream::User(UserId::from_trusted("u".into())),
            Stream::Read(ConversationId::from_trusted("c".into())),
            Stream::Typing {
                conversation_id: ConversationId::from_trusted("c".into()),
                user_id: UserId::from_trusted("u".into()),
                typing: true,
            },
            Stream::Online(UserId::from_trusted("u".into())),
        ];
        for stream in streams {
            let event = EncodedEvent {
                app_id: AppId::from_trusted("app".into()),
                stream: stream.clone(),
                seq: Seq(0),
                membership: None,
                frame: "{}".into(),
            };
            let (_, decoded) = decode_message(&encode_message(1, &event)).unwrap();
            assert_eq!(decoded.stream, stream);
        }
    }
}
