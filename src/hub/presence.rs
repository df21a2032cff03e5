//! Who is connected to this node: per app and user, how many of their sessions hold a subscription (the Data
//! API's rule for counting as connected). Only the first arrival and the last departure change what a
//! `subscribeOnline` shows, so only those are signalled on the user's `Online` key.
//!
//! The counts are this node's own: across nodes, the signal travels through the broker, but each node answers
//! from its own sessions (shared counts, say in Redis, are the step after).

use dashmap::{mapref::entry::Entry, DashMap};

use crate::domain::ids::{AppId, UserId};

#[derive(Default)]
pub struct Presence {
    sessions: DashMap<(AppId, UserId), usize>,
}

impl Presence {
    /// A session of the user started counting; returns whether the user just became present.
    pub fn arrive(&self, app: &AppId, user: &UserId) -> bool {
        let mut count = self.sessions.entry((app.clone(), user.clone())).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A session of the user stopped counting; returns whether that was the last one.
    pub fn leave(&self, app: &AppId, user: &UserId) -> bool {
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

    pub fn is_present(&self, app: &AppId, user: &UserId) -> bool {
        self.sessions.contains_key(&(app.clone(), user.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_present_from_their_first_session_to_their_last() {
        let (presence, app, user) =
            (Presence::default(), AppId::from_trusted("a".into()), UserId::from_trusted("u".into()));
        assert!(presence.arrive(&app, &user));
        assert!(!presence.arrive(&app, &user));
        assert!(!presence.leave(&app, &user));
        assert!(presence.is_present(&app, &user));
        assert!(presence.leave(&app, &user));
        assert!(!presence.is_present(&app, &user));
        assert!(!presence.leave(&app, &user), "a departure nobody arrived for changes nothing");
    }
}
