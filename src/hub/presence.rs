//! Who is connected: per app and user, how many of their sessions on this node count as connected (the Data
//! API's rule: they hold a subscription or made a request in the last few seconds). Only the first arrival and the
//! last departure on a node change what a `subscribeOnline` shows, so only those are signalled on the user's
//! `Online` key.
//!
//! On one node the counts are the whole truth. Between nodes a `SharedPresence` (`cluster`, in Redis) holds which
//! node has whom: a change is written there before the signal goes out, so a node that reads on the signal sees
//! it, and a node that dies drops out of it by expiry.

use std::sync::{Arc, OnceLock};

use dashmap::{mapref::entry::Entry, DashMap};
use futures::future::BoxFuture;

use super::{EncodedEvent, SharedEvent, Stream};
use crate::domain::ids::{AppId, Seq, UserId};

/// What other nodes know: set up by `cluster` when the node has peers.
pub trait SharedPresence: Send + Sync {
    /// The user's presence on this node may have changed: record it, then signal it (`signal`) on their key.
    fn changed(&self, app: &AppId, user: &UserId);
    /// Whether another live node counts the user as connected. Answers `false` when it cannot tell.
    fn elsewhere<'a>(&'a self, app: &'a AppId, user: &'a UserId) -> BoxFuture<'a, bool>;
}

#[derive(Default)]
pub struct Presence {
    sessions: DashMap<(AppId, UserId), usize>,
    shared: OnceLock<Arc<dyn SharedPresence>>,
}

/// What changed when a session started or stopped counting.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The node's count moved but the user stays as they were here.
    None,
    /// First arrival or last departure here: signal it, or let the shared view do so.
    Signal,
    /// As `Signal`, but the shared view records it and signals once it has.
    Shared,
}

impl Presence {
    /// Shares presence with other nodes from now on. Only the first call takes effect.
    pub fn share(&self, shared: Arc<dyn SharedPresence>) {
        let _ = self.shared.set(shared);
    }

    /// A session of the user started counting (`present`) or stopped.
    pub fn set(&self, app: &AppId, user: &UserId, present: bool) -> Change {
        let changed = if present { self.arrive(app, user) } else { self.leave(app, user) };
        match (changed, self.shared.get()) {
            (false, _) => Change::None,
            (true, None) => Change::Signal,
            (true, Some(shared)) => {
                shared.changed(app, user);
                Change::Shared
            }
        }
    }

    fn arrive(&self, app: &AppId, user: &UserId) -> bool {
        let mut count = self.sessions.entry((app.clone(), user.clone())).or_insert(0);
        *count += 1;
        *count == 1
    }

    fn leave(&self, app: &AppId, user: &UserId) -> bool {
        match self.sessions.entry((app.clone(), user.clone())) {
            Entry::Occupied(mut entry) if *entry.get() > 1 => {
                *entry.get_mut() -= 1;
                false
            }
            Entry::Occupied(entry) => {
                entry.remove();
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Whether a session on this node counts the user as connected.
    pub fn is_here(&self, app: &AppId, user: &UserId) -> bool {
        self.sessions.contains_key(&(app.clone(), user.clone()))
    }

    /// Whether the user is connected on any node.
    pub async fn is_connected(&self, app: &AppId, user: &UserId) -> bool {
        if self.is_here(app, user) {
            return true;
        }
        match self.shared.get() {
            Some(shared) => shared.elsewhere(app, user).await,
            None => false,
        }
    }

    /// Everyone connected on this node, for rewriting the shared view.
    pub fn here(&self) -> Vec<(AppId, UserId)> {
        self.sessions.iter().map(|entry| entry.key().clone()).collect()
    }
}

/// The signal that a user's presence changed: subscriptions to it read it again.
pub fn signal(app: &AppId, user: &UserId) -> SharedEvent {
    Arc::new(EncodedEvent {
        app_id: app.clone(),
        stream: Stream::Online(user.clone()),
        seq: Seq(0),
        membership: None,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ids() -> (AppId, UserId) {
        (AppId::from_trusted("a".into()), UserId::from_trusted("u".into()))
    }

    #[test]
    fn a_user_is_present_from_their_first_session_to_their_last() {
        let (presence, (app, user)) = (Presence::default(), ids());
        assert_eq!(presence.set(&app, &user, true), Change::Signal);
        assert_eq!(presence.set(&app, &user, true), Change::None);
        assert_eq!(presence.set(&app, &user, false), Change::None);
        assert!(presence.is_here(&app, &user));
        assert_eq!(presence.set(&app, &user, false), Change::Signal);
        assert!(!presence.is_here(&app, &user));
        assert_eq!(presence.set(&app, &user, false), Change::None, "a departure nobody arrived for changes nothing");
    }

    #[derive(Default)]
    struct Recorded {
        changes: Mutex<Vec<UserId>>,
    }

    impl SharedPresence for Recorded {
        fn changed(&self, _app: &AppId, user: &UserId) {
            self.changes.lock().unwrap().push(user.clone());
        }
        fn elsewhere<'a>(&'a self, _app: &'a AppId, user: &'a UserId) -> BoxFuture<'a, bool> {
            Box::pin(async move { user.as_str() == "remote" })
        }
    }

    #[tokio::test]
    async fn a_shared_view_hears_first_arrivals_and_last_departures_and_answers_for_other_nodes() {
        let (presence, (app, user)) = (Presence::default(), ids());
        let shared = Arc::new(Recorded::default());
        presence.share(shared.clone());
        assert_eq!(presence.set(&app, &user, true), Change::Shared);
        assert_eq!(presence.set(&app, &user, true), Change::None);
        presence.set(&app, &user, false);
        assert_eq!(presence.set(&app, &user, false), Change::Shared);
        assert_eq!(shared.changes.lock().unwrap().len(), 2);
        assert!(!presence.is_connected(&app, &user).await);
        assert!(presence.is_connected(&app, &UserId::from_trusted("remote".into())).await);
        presence.set(&app, &user, true);
        assert!(presence.is_connected(&app, &user).await, "here needs nobody else");
    }
}
