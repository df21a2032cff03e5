//! Subscriptions whose every frame is a whole state read from the store, without I/O: a conversation as its user
//! sees it (`subscribeConversation`), a conversation's participants (`subscribeParticipants`, windowed) and a
//! user's presence (`subscribeOnline`).
//!
//! Such a state depends on several streams (the conversation's events, read changes, the profiles of the users it
//! embeds, presence), so it is not patched from events but read again when one of them changes: an event only
//! marks it stale. One read is in flight at a time; events during a read make one more read after it, so a burst
//! of events costs two reads, and the last read always starts after the last event was received, so the last state
//! sent reflects it. A state equal to the one sent is not sent again.
//!
//! The session watches what the state depends on, and that follows the state: a conversation the user does not
//! take part in is not watched (the session's own user key brings the join), and the embedded users' profiles
//! are watched while they are embedded. A key newly watched after a read could have changed between that read
//! and the watch, so a read that adds keys is followed by one more.

use std::collections::{BTreeSet, VecDeque};

use super::{
    error::RealtimeError,
    frames::RequestId,
    output::{FetchId, Output, Watched},
    state::{State, Topic},
};
use std::sync::Arc;

use crate::{
    domain::{
        filter::ConversationFilter,
        ids::{ConversationId, UserId},
        message::MessageView,
    },
    hub::{EncodedEvent, Stream},
    store::{ConversationListPage, ConversationState},
};

/// Participants in a new participants window (the Data API's default).
pub const DEFAULT_PARTICIPANTS: usize = 10;
/// Participants one `loadMoreParticipants` may ask for at most.
pub const MAX_PARTICIPANTS_PAGE: usize = 50;
/// Conversations in a new conversation list, and one `loadMoreConversations` by default (the Data API's).
pub const DEFAULT_CONVERSATIONS: usize = 20;
/// Conversations one `loadMoreConversations` may ask for at most.
pub const MAX_CONVERSATIONS_PAGE: usize = 30;

impl Topic {
    /// A windowed topic's default and largest page, `None` for the others.
    pub fn page_sizes(&self) -> Option<(usize, usize)> {
        match self {
            Topic::Participants(_) => Some((DEFAULT_PARTICIPANTS, MAX_PARTICIPANTS_PAGE)),
            Topic::Conversations => Some((DEFAULT_CONVERSATIONS, MAX_CONVERSATIONS_PAGE)),
            Topic::Conversation(_) | Topic::Online(_) => None,
        }
    }
}

impl Topic {
    /// What the topic depends on before anything is read.
    fn first_watches(&self) -> BTreeSet<Watched> {
        match self {
            Topic::Conversation(conversation_id) | Topic::Participants(conversation_id) => {
                BTreeSet::from([Watched::Conversation(conversation_id.clone())])
            }
            Topic::Online(user_id) => {
                BTreeSet::from([Watched::Profile(user_id.clone()), Watched::Online(user_id.clone())])
            }
            // The session's user key, always watched, brings the joins.
            Topic::Conversations => BTreeSet::new(),
        }
    }

    fn conversation_id(&self) -> Option<&ConversationId> {
        match self {
            Topic::Conversation(conversation_id) | Topic::Participants(conversation_id) => Some(conversation_id),
            Topic::Online(_) | Topic::Conversations => None,
        }
    }
}

impl State {
    /// What this state depends on: whatever could change it.
    fn watches(&self, topic: &Topic) -> BTreeSet<Watched> {
        let mut watches = BTreeSet::new();
        let conversation = |watches: &mut BTreeSet<Watched>| {
            if let Some(conversation_id) = topic.conversation_id() {
                watches.insert(Watched::Conversation(conversation_id.clone()));
            }
        };
        match self {
            State::Conversation(None) | State::Participants(None) => {}
            State::Conversation(Some(state)) => {
                conversation(&mut watches);
                watches.extend(senders(state.last_message.as_ref()).map(|user| Watched::Profile(user.clone())));
            }
            State::Participants(Some(page)) => {
                conversation(&mut watches);
                watches.extend(page.participants.iter().map(|entry| Watched::Profile(entry.user.id.clone())));
            }
            State::Online(_) => watches = topic.first_watches(),
            State::Conversations(page) => {
                watches.extend(page.member_of.iter().cloned().map(Watched::Conversation));
                for state in &page.conversations {
                    watches.extend(senders(state.last_message.as_ref()).map(|user| Watched::Profile(user.clone())));
                }
            }
        }
        watches
    }

    fn loaded(&self) -> Option<(usize, bool)> {
        match self {
            State::Participants(Some(page)) => Some((page.participants.len(), page.loaded_all)),
            State::Conversations(page) => Some((page.conversations.len(), page.loaded_all)),
            _ => None,
        }
    }
}

/// What an event changes of a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Read it whole again.
    Whole,
    /// One conversation of a list: read it alone.
    Conversation(ConversationId),
}

/// The users a last message embeds: its sender, and the sender of the message it replies to.
fn senders(message: Option<&MessageView>) -> impl Iterator<Item = &UserId> {
    let sender = message.and_then(|message| message.sender.as_ref());
    let replied = message.and_then(|message| message.referenced.as_ref()).and_then(|r| r.sender.as_ref());
    [sender, replied].into_iter().flatten().map(|user| &user.id)
}

pub struct StateSubscription {
    topic: Topic,
    /// A conversation list's filter, applied on every read.
    filter: Option<Arc<ConversationFilter>>,
    /// The subscribe request, until the first state is sent.
    pending: Option<RequestId>,
    /// `loadMoreParticipants` requests and the limit each needs, answered when a read at that limit comes back.
    loading: Vec<(RequestId, usize)>,
    /// How many items a windowed state reads.
    limit: usize,
    /// The read in flight, and the limit it reads at.
    reading: Option<(FetchId, usize)>,
    /// The next read must be of the whole state: something changed that a list cannot patch in.
    stale: bool,
    /// A list's conversations changed since the read in flight started, to read alone and patch in.
    dirty: BTreeSet<ConversationId>,
    watching: BTreeSet<Watched>,
    /// The state sent last, shared with its output until the shell encoded it.
    sent: Option<Arc<State>>,
}

impl StateSubscription {
    /// Watches what the topic depends on, then reads it.
    pub fn start(
        outputs: &mut VecDeque<Output>,
        id: RequestId,
        topic: Topic,
        (limit, filter): (usize, Option<Arc<ConversationFilter>>),
        fetch: FetchId,
    ) -> Self {
        let watching = topic.first_watches();
        outputs.extend(watching.iter().cloned().map(Output::Watch));
        let mut subscription = Self {
            topic,
            filter,
            pending: Some(id),
            loading: Vec::new(),
            limit,
            reading: None,
            stale: false,
            dirty: BTreeSet::new(),
            watching,
            sent: None,
        };
        subscription.read(outputs, fetch);
        subscription
    }

    fn read(&mut self, outputs: &mut VecDeque<Output>, fetch: FetchId) {
        self.reading = Some((fetch, self.limit));
        // A whole read reflects everything that came before it.
        self.stale = false;
        self.dirty.clear();
        let (topic, filter) = (self.topic.clone(), self.filter.clone());
        outputs.push_back(Output::FetchState { fetch, topic, limit: self.limit, filter });
    }

    pub fn waits_for(&self, fetch: FetchId) -> bool {
        self.reading.is_some_and(|(reading, _)| reading == fetch)
    }

    /// What an event from the hub changes of this state, if anything.
    pub fn change_of(&self, event: &EncodedEvent) -> Option<Change> {
        let changed = match &event.stream {
            // A membership change of the session's user arrives through their own key, watched or not.
            Stream::Conversation(conversation_id) | Stream::Read(conversation_id) => {
                let membership = event.membership.is_some()
                    && (self.topic == Topic::Conversations || self.topic.conversation_id() == Some(conversation_id));
                if self.topic == Topic::Conversations && !membership && self.watches_conversation(conversation_id) {
                    // One conversation of a list: read alone and patched in.
                    return Some(Change::Conversation(conversation_id.clone()));
                }
                membership || self.watches_conversation(conversation_id)
            }
            Stream::User(user_id) => self.watching.contains(&Watched::Profile(user_id.clone())),
            Stream::Online(user_id) => self.watching.contains(&Watched::Online(user_id.clone())),
            Stream::Typing { .. } => false,
        };
        changed.then_some(Change::Whole)
    }

    fn watches_conversation(&self, conversation_id: &ConversationId) -> bool {
        self.watching.contains(&Watched::Conversation(conversation_id.clone()))
    }

    /// Something this state depends on changed: read it again, now or after the read in flight.
    pub fn handle_change(
        &mut self,
        outputs: &mut VecDeque<Output>,
        change: Change,
        new_fetch: impl FnOnce() -> FetchId,
    ) {
        match change {
            Change::Whole => self.stale = true,
            Change::Conversation(conversation_id) => {
                self.dirty.insert(conversation_id);
            }
        }
        self.next_read(outputs, new_fetch);
    }

    /// Starts the read the state needs, unless one is in flight: the whole state, or a list's changed
    /// conversations alone.
    fn next_read(&mut self, outputs: &mut VecDeque<Output>, new_fetch: impl FnOnce() -> FetchId) {
        if self.reading.is_some() {
            return;
        }
        if self.stale {
            self.read(outputs, new_fetch());
        } else if !self.dirty.is_empty() {
            let fetch = new_fetch();
            self.reading = Some((fetch, self.limit));
            let conversation_ids = std::mem::take(&mut self.dirty).into_iter().collect();
            outputs.push_back(Output::FetchConversations { fetch, conversation_ids });
        }
    }

    /// A read of a list's changed conversations came back: patch them in (a conversation that left the window
    /// makes room that only a whole read can fill), watch what the list embeds now, send it if it changed.
    pub fn handle_conversations(
        &mut self,
        outputs: &mut VecDeque<Output>,
        states: Vec<(ConversationId, Option<ConversationState>)>,
        new_fetch: impl FnOnce() -> FetchId,
    ) {
        self.reading = None;
        let filter = self.filter.clone();
        let shows = |state: &ConversationState| filter.as_deref().is_none_or(|f| f.matches(&state.filter_subject()));
        let states: Vec<_> = states.into_iter().map(|(id, state)| (id, state.filter(|state| shows(state)))).collect();
        // What the client holds is patched in place: the frame sent last shares it, and is gone by now.
        let Some(mut sent) = self.sent.take() else {
            self.stale = true;
            return self.next_read(outputs, new_fetch);
        };
        let State::Conversations(page) = Arc::make_mut(&mut sent) else {
            self.sent = Some(sent);
            self.stale = true;
            return self.next_read(outputs, new_fetch);
        };
        let held = |page: &ConversationListPage, id: &ConversationId| {
            page.conversations.iter().position(|held| held.conversation.id == *id)
        };
        // One that leaves a window beyond which others wait makes a hole: the whole read after this one fills it.
        if !page.loaded_all && states.iter().any(|(id, state)| state.is_none() && held(page, id).is_some()) {
            self.sent = Some(sent);
            self.stale = true;
            return self.next_read(outputs, new_fetch);
        }
        let (mut changed, mut inserted) = (false, Vec::new());
        for (conversation_id, state) in states {
            match (held(page, &conversation_id), state) {
                (Some(at), Some(state)) if page.conversations[at] == state => {}
                (Some(at), Some(state)) => (page.conversations[at], changed) = (state, true),
                (None, Some(state)) => {
                    page.conversations.push(state);
                    inserted.push(conversation_id);
                }
                (Some(at), None) => (_, changed) = (page.conversations.remove(at), true),
                (None, None) => {}
            }
        }
        if changed || !inserted.is_empty() {
            page.conversations.sort_by(|a, b| {
                b.activity_at().cmp(&a.activity_at()).then_with(|| a.conversation.id.cmp(&b.conversation.id))
            });
            if page.conversations.len() > self.limit {
                page.conversations.truncate(self.limit);
                // Only news if the window held everything before.
                changed |= std::mem::replace(&mut page.loaded_all, false);
            }
            // One that came in with older activity than the whole window is not in it: nothing to show.
            changed |= inserted.iter().any(|id| held(page, id).is_some());
        }
        // The conversations watched stay (only joins and leaves change them); the profiles follow the window.
        let profiles: BTreeSet<Watched> = page
            .conversations
            .iter()
            .flat_map(|state| senders(state.last_message.as_ref()))
            .map(|user| Watched::Profile(user.clone()))
            .collect();
        let dropped: Vec<Watched> = self
            .watching
            .iter()
            .filter(|watched| matches!(watched, Watched::Profile(_)) && !profiles.contains(watched))
            .cloned()
            .collect();
        for watched in dropped {
            self.watching.remove(&watched);
            outputs.push_back(Output::Unwatch(watched));
        }
        for watched in profiles {
            if self.watching.insert(watched.clone()) {
                // Watched only now, it could have changed since the read: read what embeds it once more.
                let Watched::Profile(user) = &watched else { unreachable!("profiles only") };
                for state in &page.conversations {
                    if senders(state.last_message.as_ref()).any(|sender| sender == user) {
                        self.dirty.insert(state.conversation.id.clone());
                    }
                }
                outputs.push_back(Output::Watch(watched));
            }
        }
        if changed {
            outputs.push_back(Output::State { topic: self.topic.clone(), state: Arc::clone(&sent) });
        }
        self.sent = Some(sent);
        self.next_read(outputs, new_fetch);
    }

    /// A read came back: watch what the state depends on now, send it if it changed, answer what waited for it.
    pub fn handle_state(&mut self, outputs: &mut VecDeque<Output>, state: State, new_fetch: impl FnOnce() -> FetchId) {
        let read_limit = self.reading.take().map_or(self.limit, |(_, limit)| limit);
        // A null state or one that holds everything answers every load; otherwise those the read was large enough for.
        let complete = state.loaded().is_none_or(|(_, loaded_all)| loaded_all);
        let watches = state.watches(&self.topic);
        let added: Vec<_> = watches.difference(&self.watching).cloned().collect();
        outputs.extend(self.watching.difference(&watches).cloned().map(Output::Unwatch));
        outputs.extend(added.iter().cloned().map(Output::Watch));
        self.watching = watches;
        if self.sent.as_deref() != Some(&state) {
            let state = Arc::new(state);
            outputs.push_back(Output::State { topic: self.topic.clone(), state: Arc::clone(&state) });
            self.sent = Some(state);
        }
        outputs.extend(self.pending.take().map(|id| Output::Ok { id }));
        let (answered, waiting) =
            std::mem::take(&mut self.loading).into_iter().partition(|(_, wanted)| complete || *wanted <= read_limit);
        self.loading = waiting;
        outputs.extend(answered.into_iter().map(|(id, _)| Output::Ok { id }));
        if !added.is_empty() {
            self.stale = true;
        }
        self.next_read(outputs, new_fetch);
    }

    /// Asks for `count` more items than are loaded; calls made before the first of them is answered coalesce
    /// into the largest (the Data API's rule), and a window that holds everything answers at once.
    pub fn load_more(
        &mut self,
        outputs: &mut VecDeque<Output>,
        id: RequestId,
        count: usize,
        new_fetch: impl FnOnce() -> FetchId,
    ) {
        let Some((loaded, loaded_all)) = self.sent.as_deref().and_then(State::loaded) else {
            // Nothing windowed to extend: not active yet, or null.
            let error = if self.sent.is_some() { RealtimeError::NotSubscribed } else { RealtimeError::NotActive };
            outputs.push_back(Output::Error { id, error });
            return;
        };
        if loaded_all && self.loading.is_empty() {
            outputs.push_back(Output::Ok { id });
            return;
        }
        let wanted = loaded + count;
        self.loading.push((id, wanted));
        if wanted > self.limit {
            self.limit = wanted;
            self.handle_change(outputs, Change::Whole, new_fetch);
        }
    }

    /// A read failed. The first read answers the subscribe with the error; a later one ends the subscription in
    /// the error state. Either way it is gone: returns its last outputs.
    pub fn handle_fetch_failed(self, outputs: &mut VecDeque<Output>) {
        let error = || RealtimeError::StoreUnavailable;
        outputs.extend(self.watching.into_iter().map(Output::Unwatch));
        for (id, _) in self.loading {
            outputs.push_back(Output::Error { id, error: error() });
        }
        match self.pending {
            Some(id) => outputs.push_back(Output::Error { id, error: error() }),
            None => outputs.push_back(Output::StateError { topic: self.topic, error: error() }),
        }
    }

    pub fn unsubscribe(self, outputs: &mut VecDeque<Output>) {
        outputs.extend(self.watching.into_iter().map(Output::Unwatch));
        for id in self.pending.into_iter().chain(self.loading.into_iter().map(|(id, _)| id)) {
            outputs.push_back(Output::Error { id, error: RealtimeError::Unsubscribed });
        }
    }
}
