//! The imperative shell around `Session`: reads frames and hub events, feeds the session, and carries out its
//! outputs (send, read from the store, watch on the node, close). Reads and writes run as tasks beside the loop;
//! their answers come back through one bounded channel. Every socket write, replies included, races the slow mark
//! of its outbox, the shutdown token and a timeout, so a client that stops reading cannot stall its session.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Instant,
};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{protocol::CloseFrame, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::{
    error::RealtimeError,
    frame_writer::Frames,
    frames::{self, ClientFrame, RequestId},
    handshake::Socket,
    output::Watched,
    publisher,
    session::{CloseReason, FetchId, Output, Request, Session, Violation},
    state::{OnlineState, State, Topic},
    subscription::Resume,
    writes,
};
use crate::{
    app::AppState,
    domain::{
        filter::ConversationFilter,
        ids::{AppId, ConversationId, Seq, UserId},
        user::User,
    },
    hub::{
        outbox::{self, Next},
        presence,
        windows::MAX_CACHED_PARTICIPANTS,
        HubKey, Outbox, SharedEvent, WatcherId,
    },
    store::{ConversationState, MessageWindow, StoreResult},
    token::verify_user_token,
    wire::{filter::parse_conversation_filter, snapshot::SnapshotContext},
};

/// A write to the socket that takes longer than this means the client stopped reading: the session ends
/// (`--socket-write-timeout-ms`).
pub const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a closing session tries to deliver its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Events taken from the outbox per wakeup; bounds the latency one busy session adds to its own frames.
const MAX_EVENTS_PER_FLUSH: usize = 64;
/// Writes one session may have in flight; another beyond that is refused.
const MAX_TASKS_IN_FLIGHT: usize = 32;
/// Store reads one session may have in flight; more wait in its queue (at most two per subscription: a window or
/// page, and a hole), and those no subscription waits for any more are dropped. Across sessions, the store's own
/// pool of reader connections bounds what runs at once.
const MAX_READS_IN_FLIGHT: usize = 4;

/// A store read a subscription asked for.
enum Read {
    /// A window page and, to resume, the events after `replay_after` up to it.
    Window {
        fetch: FetchId,
        conversation_id: ConversationId,
        before: Option<Seq>,
        limit: usize,
        replay_after: Option<Seq>,
    },
    /// The events that fill a hole.
    Events { fetch: FetchId, conversation_id: ConversationId, after: Seq, up_to: Seq },
    /// A user and their stream's `seq`.
    User { fetch: FetchId, user_id: UserId },
    /// A state subscription's state.
    State { fetch: FetchId, topic: Topic, limit: usize, filter: Option<Arc<ConversationFilter>> },
    /// Whether the session's user takes part in a conversation.
    Membership { fetch: FetchId, conversation_id: ConversationId },
    /// Some conversations of a list, as the session's user sees them.
    Conversations { fetch: FetchId, conversation_ids: Vec<ConversationId> },
}

impl Read {
    fn fetch(&self) -> FetchId {
        match self {
            Read::Window { fetch, .. }
            | Read::Events { fetch, .. }
            | Read::User { fetch, .. }
            | Read::State { fetch, .. }
            | Read::Membership { fetch, .. }
            | Read::Conversations { fetch, .. } => *fetch,
        }
    }

    async fn run(self, state: &AppState, app_id: &AppId, user_id: &UserId) -> Done {
        match self {
            Read::Window { fetch, conversation_id, before, limit, replay_after } => {
                let result = read_window(state, app_id, &conversation_id, user_id, before, limit).await;
                let replay = match (&result, replay_after) {
                    (Ok(window), Some(after)) if window.participant && after < window.seq => {
                        // A replay that cannot be read is a fresh snapshot, not a failed subscription.
                        publisher::replay(state, app_id, &conversation_id, after, window.seq).await.unwrap_or_else(
                            |error| {
                                tracing::debug!(cause = %error, "replay read failed");
                                None
                            },
                        )
                    }
                    (Ok(window), Some(after)) if window.participant && after == window.seq => Some(Vec::new()),
                    _ => None,
                };
                Done::Window { fetch, result, replay }
            }
            Read::Events { fetch, conversation_id, after, up_to } => {
                let result = publisher::replay(state, app_id, &conversation_id, after, up_to).await;
                Done::Events { fetch, result }
            }
            Read::User { fetch, user_id } => {
                Done::User { fetch, result: state.store.user_state(app_id, &user_id).await }
            }
            Read::State { fetch, topic, limit, filter } => {
                Done::State { fetch, result: read_state(state, app_id, user_id, topic, (limit, filter)).await }
            }
            Read::Conversations { fetch, conversation_ids } => {
                let result = state.store.conversation_states(app_id, user_id, conversation_ids).await;
                Done::Conversations { fetch, result }
            }
            Read::Membership { fetch, conversation_id } => {
                let result = state.store.participant_user(app_id, &conversation_id, user_id).await;
                Done::Membership { fetch, result: result.map(|user| user.is_some()) }
            }
        }
    }
}

/// A page of `user_id`'s window. The newest page comes from the node's window cache when it holds the
/// conversation; otherwise it is read with the participants, and kept for the next subscriber.
async fn read_window(
    state: &AppState,
    app_id: &AppId,
    conversation_id: &ConversationId,
    user_id: &UserId,
    before: Option<Seq>,
    limit: usize,
) -> StoreResult<MessageWindow> {
    let Some(windows) = state.node.windows().filter(|_| before.is_none()) else {
        return state.store.message_window(app_id, conversation_id, user_id, before, limit).await;
    };
    if let Some(window) = cached_window(state, app_id, conversation_id, user_id, limit) {
        return Ok(window);
    }
    let ticket = windows.begin(app_id, conversation_id);
    let read = state.store.newest_window(app_id, conversation_id, user_id, limit, MAX_CACHED_PARTICIPANTS).await?;
    // Events may have come since the read began; `fill` keeps it only if none did.
    windows.fill(app_id, conversation_id, ticket, &read);
    Ok(read.into_window_for(user_id))
}

/// `user_id`'s newest `limit` messages of the conversation, if the node's window cache holds them.
fn cached_window(
    state: &AppState,
    app_id: &AppId,
    conversation_id: &ConversationId,
    user_id: &UserId,
    limit: usize,
) -> Option<MessageWindow> {
    let window = state.node.windows()?.window(app_id, conversation_id, user_id, limit)?;
    state.metrics.window_cache_hits.inc();
    Some(window)
}

/// Reads a state subscription's state, as `user_id` sees it.
async fn read_state(
    state: &AppState,
    app_id: &AppId,
    user_id: &UserId,
    topic: Topic,
    (limit, filter): (usize, Option<Arc<ConversationFilter>>),
) -> StoreResult<State> {
    Ok(match topic {
        Topic::Conversation(conversation_id) => {
            State::Conversation(state.store.conversation_state(app_id, &conversation_id, user_id).await?.map(Box::new))
        }
        Topic::Participants(conversation_id) => {
            State::Participants(state.store.participants_page(app_id, &conversation_id, user_id, limit).await?)
        }
        Topic::Online(online) => {
            let (_, user) = state.store.user_state(app_id, &online).await?;
            let is_connected = state.node.presence().is_connected(app_id, &online).await;
            State::Online(user.map(|user| Box::new(OnlineState { user, is_connected })))
        }
        Topic::Conversations => {
            State::Conversations(state.store.conversation_list_state(app_id, user_id, limit, filter).await?)
        }
    })
}

/// Results of tasks the loop started.
enum Done {
    Window { fetch: FetchId, result: StoreResult<MessageWindow>, replay: Option<Vec<SharedEvent>> },
    Events { fetch: FetchId, result: StoreResult<Option<Vec<SharedEvent>>> },
    User { fetch: FetchId, result: StoreResult<(Seq, Option<User>)> },
    State { fetch: FetchId, result: StoreResult<State> },
    Membership { fetch: FetchId, result: StoreResult<bool> },
    Conversations { fetch: FetchId, result: StoreResult<Vec<(ConversationId, Option<ConversationState>)>> },
    Reply(Utf8Bytes),
}

pub struct Connection {
    pub state: AppState,
    pub app_id: AppId,
    pub user_id: UserId,
    pub expires_at: Option<Instant>,
    /// Counts this connection against its app's limit until the session ends.
    pub _guard: crate::limits::ConnectionGuard,
}

/// Sets the session up at once and returns the loop that runs it, so that the task holds only what the loop
/// needs: an `async fn` would also keep the socket and the connection it was made from, for its whole life.
pub fn run(socket: Socket, connection: Connection) -> impl std::future::Future<Output = ()> + Send + 'static {
    let Connection { state, app_id, user_id, expires_at, _guard: guard } = connection;
    // Bounded by config: a session this far behind is cut off as slow rather than let the hub wait.
    let (outbox, mut events) = outbox::channel(state.config.outbox_events);
    let shutdown = state.shutdown.clone();
    let max_subscriptions = state.limits.subscriptions_per_connection();
    let mut session = Session::with_max_subscriptions(user_id.clone(), expires_at, Instant::now(), max_subscriptions)
        .with_typing_timeout(state.config.typing_timeout)
        .with_request_linger(state.config.request_linger);
    let mut shell = Shell::new(state, app_id, user_id, socket, outbox);

    async move {
        // One timer for the session's life, moved only when its deadline does: a new one per wakeup would enter
        // and leave the timer wheel on every batch of events.
        let timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = None;
        while shell.carry_out(&mut session).await {
            let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
            if deadline != armed {
                if let Some(deadline) = deadline {
                    timer.as_mut().reset(deadline);
                }
                armed = deadline;
            }
            tokio::select! {
                incoming = shell.socket.next() => shell.handle_incoming(&mut session, incoming),
                next = events.recv() => match next {
                    Next::Event(event) => handle_events(&mut session, &event, &mut events),
                    Next::Slow => session.handle_slow(),
                },
                done = shell.answers.next() => shell.handle_done(&mut session, *done),
                () = &mut timer, if armed.is_some() => session.handle_timeout(Instant::now()),
                () = shutdown.cancelled() => session.handle_shutdown(),
            }
        }
        shell.finish();
        // Moved in, not left to `run`: the connection counts against its app's limit until the session ends.
        drop(guard);
    }
}

/// Feeds the session an event, and whatever else is already queued, so one flush (one syscall) carries it all.
fn handle_events(session: &mut Session, first: &SharedEvent, events: &mut outbox::Events) {
    let now = Instant::now();
    session.handle_event(first, now);
    for _ in 1..MAX_EVENTS_PER_FLUSH {
        match events.try_recv() {
            Some(event) => session.handle_event(&event, now),
            None => break,
        }
    }
}

/// The channel the session's tasks (reads, writes) answer through, opened by the first task: a channel allocates
/// its first block of slots when it is made, and a session whose windows all come from the cache may never start
/// one.
#[derive(Default)]
struct Answers(Option<(mpsc::Sender<Box<Done>>, AnswersRx)>);

type AnswersRx = mpsc::Receiver<Box<Done>>;

impl Answers {
    /// Boxed: a `Done` is large, and the channel allocates its slots 32 at a time.
    fn sender(&mut self) -> mpsc::Sender<Box<Done>> {
        self.0.get_or_insert_with(|| mpsc::channel(MAX_TASKS_IN_FLIGHT)).0.clone()
    }

    /// The next task's answer; never, before a task has started.
    async fn next(&mut self) -> Box<Done> {
        match &mut self.0 {
            // The shell holds a sender itself, so the channel never closes.
            Some((_, answers)) => answers.recv().await.expect("the shell holds a sender"),
            None => std::future::pending().await,
        }
    }
}

/// What the loop holds besides the session: the socket, the watches, the tasks' channel.
struct Shell {
    state: AppState,
    app_id: AppId,
    user_id: UserId,
    /// Read by tungstenite in the loop; written by `outgoing` (see `frame_writer`).
    socket: Socket,
    outbox: Outbox,
    user_watcher: WatcherId,
    /// The keys this session's subscriptions watch, each once on the node, with how many subscriptions watch it.
    watched: HashMap<HubKey, (WatcherId, usize)>,
    /// Whether this session counts towards its user's presence.
    present: bool,
    answers: Answers,
    /// Reads running, and how to cancel each.
    reads: HashMap<FetchId, tokio::task::AbortHandle>,
    queued_reads: VecDeque<Read>,
    writes_in_flight: Arc<Semaphore>,
    frame_limiter: Option<crate::limits::FrameLimiter>,
    /// Frames to send with the next flush: replies, then what the session produced.
    outgoing: Frames,
    /// The client closed the connection, or it broke.
    ended: bool,
}

impl Shell {
    fn new(state: AppState, app_id: AppId, user_id: UserId, socket: Socket, outbox: Outbox) -> Self {
        let user_key = HubKey::User { app_id: app_id.clone(), user_id: user_id.clone() };
        let user_watcher = state.node.watch(user_key, outbox.clone());
        state.metrics.connections.inc();
        Self {
            frame_limiter: state.limits.frame_limiter(),
            state,
            app_id,
            user_id,
            socket,
            outbox,
            user_watcher,
            watched: HashMap::new(),
            present: false,
            answers: Answers::default(),
            reads: HashMap::new(),
            queued_reads: VecDeque::new(),
            writes_in_flight: Arc::new(Semaphore::new(MAX_TASKS_IN_FLIGHT)),
            outgoing: Frames::default(),
            ended: false,
        }
    }

    fn key_of(&self, watched: Watched) -> HubKey {
        let app_id = self.app_id.clone();
        match watched {
            Watched::Conversation(conversation_id) => HubKey::Conversation { app_id, conversation_id },
            Watched::Profile(user_id) => HubKey::Profile { app_id, user_id },
            Watched::Typing(conversation_id) => HubKey::Typing { app_id, conversation_id },
            Watched::Online(user_id) => HubKey::Online { app_id, user_id },
        }
    }

    /// The session started or stopped counting as connected: on the user's first and last such session on this
    /// node, their `Online` key says so (through the shared view when there are other nodes).
    fn set_present(&mut self, present: bool) {
        if present == self.present {
            return;
        }
        self.present = present;
        if self.state.node.presence().set(&self.app_id, &self.user_id, present) == presence::Change::Signal {
            let key = HubKey::Online { app_id: self.app_id.clone(), user_id: self.user_id.clone() };
            self.state.node.publish(&key, presence::signal(&self.app_id, &self.user_id));
        }
    }

    /// Carries out everything the session asked for and sends it in one flush. Returns whether the session goes
    /// on.
    async fn carry_out(&mut self, session: &mut Session) -> bool {
        if self.ended {
            return false;
        }
        self.set_present(session.counts_as_connected());
        loop {
            // Everything the session produced goes out in one write.
            let close = self.prepare(session);
            if let Some(reason) = close {
                // Sends what is queued before the close frame.
                self.close(reason).await;
                return false;
            }
            if self.outgoing.is_empty() || self.guarded_write().await {
                return true;
            }
            // A write stalled: the session now has a close to carry out.
            self.stalled(session);
        }
    }

    /// Turns what the session asked for into frames for the next flush and does the rest (reads, watches);
    /// returns the close it asked for, if any. Not async, so that no output is kept across the socket's awaits:
    /// room for one would widen every session's task.
    fn prepare(&mut self, session: &mut Session) -> Option<CloseReason> {
        while let Some(output) = session.poll_output() {
            // A snapshot the cache holds is answered here, without a task: its frame then goes out in this
            // flush. The subscription watched before it asked, as it does for a read.
            if let Output::Fetch { fetch, conversation_id, before: None, limit, replay_after: None } = &output {
                let (state, app, user) = (&self.state, &self.app_id, &self.user_id);
                if let Some(window) = cached_window(state, app, conversation_id, user, *limit) {
                    session.handle_window(*fetch, window, None);
                    continue;
                }
            }
            match self.perform(output) {
                Err(reason) => return Some(reason),
                Ok(None) => {}
                Ok(Some(frame)) => self.outgoing.push_text(frame),
            }
        }
        None
    }

    /// Turns an output into a frame to send, or does what it asks (read, watch) and returns none; a close is
    /// handed back to the caller, which sends it.
    fn perform(&mut self, output: Output) -> Result<Option<Utf8Bytes>, CloseReason> {
        let context = SnapshotContext { app: &self.app_id, links: &self.state.links, me: Some(&self.user_id) };
        let text = match output {
            Output::Forward(event) => event.frame.clone(),
            Output::Snapshot { conversation_id, window, resumed } => {
                frames::snapshot_frame(&conversation_id, &window, &context, resumed)
            }
            Output::Resumed { conversation_id, from_seq, seq } => {
                frames::resumed_frame(&conversation_id, from_seq, seq)
            }
            Output::Page { conversation_id, window } => frames::page_frame(&conversation_id, &window, &context),
            Output::Ok { id } => frames::ok_frame(&id, json!({})),
            Output::Error { id, error } => frames::error_frame(Some(&id), error.code(), &error.reasons()),
            Output::SubscriptionError { conversation_id, error } => {
                frames::subscription_error_frame(&conversation_id, error.code(), &error.reasons())
            }
            Output::Fetch { fetch, conversation_id, before, limit, replay_after } => {
                self.request_read(Read::Window { fetch, conversation_id, before, limit, replay_after });
                return Ok(None);
            }
            Output::FetchEvents { fetch, conversation_id, after, up_to } => {
                self.request_read(Read::Events { fetch, conversation_id, after, up_to });
                return Ok(None);
            }
            Output::Watch(watched) => {
                self.watch(self.key_of(watched));
                return Ok(None);
            }
            Output::Unwatch(watched) => {
                self.unwatch(&self.key_of(watched));
                return Ok(None);
            }
            Output::FetchState { fetch, topic, limit, filter } => {
                self.request_read(Read::State { fetch, topic, limit, filter });
                return Ok(None);
            }
            Output::FetchConversations { fetch, conversation_ids } => {
                self.request_read(Read::Conversations { fetch, conversation_ids });
                return Ok(None);
            }
            Output::FetchMembership { fetch, conversation_id } => {
                self.request_read(Read::Membership { fetch, conversation_id });
                return Ok(None);
            }
            Output::State { topic, state } => frames::state_frame(&topic, &state, &context),
            Output::StateError { topic, error } => frames::state_error_frame(&topic, error.code(), &error.reasons()),
            Output::Typing { conversation_id, typing } => frames::typing_frame(&conversation_id, typing.as_ref()),
            Output::TypingError { conversation_id, error } => {
                frames::typing_error_frame(&conversation_id, error.code(), &error.reasons())
            }
            Output::FetchUser { fetch, user_id } => {
                self.request_read(Read::User { fetch, user_id });
                return Ok(None);
            }
            Output::UserState { user_id, seq, user } => frames::user_frame(&user_id, seq, user.as_deref()),
            Output::Ping => {
                self.outgoing.push_ping();
                return Ok(None);
            }
            Output::Close(reason) => return Err(reason),
        };
        Ok(Some(text))
    }

    /// Starts a read, or queues it behind the session's reads in flight.
    fn request_read(&mut self, read: Read) {
        if self.reads.len() < MAX_READS_IN_FLIGHT {
            self.start_read(read);
        } else {
            self.queued_reads.push_back(read);
        }
    }

    /// Runs a read beside the loop; its answer comes back through `answers`.
    fn start_read(&mut self, read: Read) {
        let fetch = read.fetch();
        let (state, app_id, user_id, done_tx) =
            (self.state.clone(), self.app_id.clone(), self.user_id.clone(), self.answers.sender());
        if matches!(read, Read::Events { .. }) {
            state.metrics.hole_fetches.inc();
        }
        state.metrics.session_reads_in_flight.inc();
        let task = tokio::spawn(async move {
            let done = read.run(&state, &app_id, &user_id).await;
            let _ = done_tx.send(Box::new(done)).await;
        });
        self.reads.insert(fetch, task.abort_handle());
    }

    /// A read answered: its slot goes to the next queued read the session still wants.
    fn finish_read(&mut self, fetch: FetchId, session: &Session) {
        if self.reads.remove(&fetch).is_some() {
            self.state.metrics.session_reads_in_flight.dec();
        }
        self.start_queued(session);
    }

    fn start_queued(&mut self, session: &Session) {
        while self.reads.len() < MAX_READS_IN_FLIGHT {
            let Some(read) = self.queued_reads.pop_front() else { return };
            if session.wants(read.fetch()) {
                self.start_read(read);
            }
        }
    }

    /// Cancels the reads, running or queued, that no subscription waits for any more (it was unsubscribed).
    fn discard_abandoned_reads(&mut self, session: &Session) {
        let metrics = &self.state.metrics;
        self.reads.retain(|fetch, task| {
            let wanted = session.wants(*fetch);
            if !wanted {
                task.abort();
                metrics.session_reads_in_flight.dec();
            }
            wanted
        });
        self.queued_reads.retain(|read| session.wants(read.fetch()));
        self.start_queued(session);
    }

    fn watch(&mut self, key: HubKey) {
        // Watching twice would deliver every event twice into this outbox: a key is watched once, and counted.
        match self.watched.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut entry) => entry.get_mut().1 += 1,
            std::collections::hash_map::Entry::Vacant(entry) => {
                let watcher = self.state.node.watch(entry.key().clone(), self.outbox.clone());
                entry.insert((watcher, 1));
                self.state.metrics.subscriptions.inc();
            }
        }
    }

    fn unwatch(&mut self, key: &HubKey) {
        let Some((watcher, count)) = self.watched.get_mut(key) else { return };
        if *count > 1 {
            *count -= 1;
            return;
        }
        let watcher = *watcher;
        self.watched.remove(key);
        self.state.metrics.subscriptions.dec();
        self.state.node.unwatch(key, watcher);
    }

    fn handle_incoming(
        &mut self,
        session: &mut Session,
        incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        match incoming {
            Some(Ok(Message::Text(text))) => {
                session.handle_activity(Instant::now());
                if self.frame_limiter.as_ref().is_some_and(|limiter| !limiter.allow()) {
                    let id = frames::parse_client_frame(&text).ok().map(|(id, _)| id);
                    self.reply_error(id.as_ref(), &RealtimeError::TooManyFrames);
                } else {
                    self.handle_text(&text, session);
                    self.discard_abandoned_reads(session);
                }
            }
            Some(Ok(Message::Binary(_))) => {
                session.handle_activity(Instant::now());
                let error = RealtimeError::InvalidFrame("frames are JSON text; binary frames are not supported".into());
                self.reply_error(None, &error);
            }
            // tungstenite answers pings itself; a raw frame is only ever written, never read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                session.handle_activity(Instant::now())
            }
            Some(Ok(Message::Close(_))) | None => self.ended = true,
            Some(Err(error)) => {
                tracing::debug!(cause = %error, "socket read failed");
                session.handle_protocol_error(violation_of(error));
            }
        }
    }

    fn handle_done(&mut self, session: &mut Session, done: Done) {
        if let Done::Window { fetch, .. }
        | Done::Events { fetch, .. }
        | Done::User { fetch, .. }
        | Done::State { fetch, .. }
        | Done::Membership { fetch, .. }
        | Done::Conversations { fetch, .. } = &done
        {
            self.finish_read(*fetch, session);
        }
        match done {
            Done::Window { fetch, result: Ok(window), replay } => session.handle_window(fetch, window, replay),
            Done::Events { fetch, result: Ok(events) } => session.handle_events(fetch, events),
            Done::User { fetch, result: Ok((seq, user)) } => session.handle_user(fetch, seq, user),
            Done::State { fetch, result: Ok(state) } => session.handle_state(fetch, state),
            Done::Membership { fetch, result: Ok(participant) } => session.handle_membership(fetch, participant),
            Done::Conversations { fetch, result: Ok(states) } => session.handle_conversations(fetch, states),
            Done::Window { fetch, result: Err(error), .. }
            | Done::Events { fetch, result: Err(error) }
            | Done::User { fetch, result: Err(error) }
            | Done::State { fetch, result: Err(error) }
            | Done::Membership { fetch, result: Err(error) }
            | Done::Conversations { fetch, result: Err(error) } => {
                tracing::warn!(cause = %error, "store read failed");
                session.handle_fetch_failed(fetch);
            }
            Done::Reply(frame) => self.outgoing.push_text(frame),
        }
    }

    fn reply_error(&mut self, id: Option<&RequestId>, error: &RealtimeError) {
        self.outgoing.push_text(frames::error_frame(id, error.code(), &error.reasons()));
    }

    /// Handles one text frame: a request for the session, a token, or a write to run beside the loop.
    fn handle_text(&mut self, text: &str, session: &mut Session) {
        let (id, frame) = match frames::parse_client_frame(text) {
            Ok(parsed) => parsed,
            Err(error) => return self.reply_error(error.id.as_ref(), &RealtimeError::InvalidFrame(error.reason)),
        };
        session.handle_requested(Instant::now());
        match self.request_of(&id, frame) {
            Ok(Some(request)) => session.handle_request(request),
            Ok(None) => {}
            Err(error) => self.reply_error(Some(&id), &error),
        }
    }

    /// What a frame asks of the session; `None` when the frame is a write, started here.
    fn request_of(&mut self, id: &RequestId, frame: ClientFrame) -> Result<Option<Request>, RealtimeError> {
        let conversation =
            |raw: &str| ConversationId::parse(raw).map_err(|error| RealtimeError::InvalidRequest(error.to_string()));
        let user = |raw: &str| UserId::parse(raw).map_err(|error| RealtimeError::InvalidRequest(error.to_string()));
        let id = id.clone();
        Ok(Some(match frame {
            ClientFrame::SubscribeMessages { conversation_id, limit, resume, .. } => Request::SubscribeMessages {
                id,
                conversation_id: conversation(&conversation_id)?,
                limit,
                resume: resume.map(|resume| Resume {
                    from_seq: Seq(resume.from_seq),
                    oldest: resume.oldest_seq.map(Seq),
                    loaded_all: resume.loaded_all,
                }),
            },
            ClientFrame::LoadMore { conversation_id, count, .. } => {
                Request::LoadMore { id, conversation_id: conversation(&conversation_id)?, count }
            }
            ClientFrame::Unsubscribe { conversation_id, .. } => {
                Request::Unsubscribe { id, conversation_id: conversation(&conversation_id)? }
            }
            ClientFrame::SubscribeUser { user_id, .. } => Request::SubscribeUser { id, user_id: user(&user_id)? },
            ClientFrame::UnsubscribeUser { user_id, .. } => Request::UnsubscribeUser { id, user_id: user(&user_id)? },
            ClientFrame::SubscribeConversation { conversation_id, .. } => Request::SubscribeState {
                id,
                topic: Topic::Conversation(conversation(&conversation_id)?),
                limit: None,
                filter: None,
            },
            ClientFrame::UnsubscribeConversation { conversation_id, .. } => {
                Request::UnsubscribeState { id, topic: Topic::Conversation(conversation(&conversation_id)?) }
            }
            ClientFrame::SubscribeParticipants { conversation_id, limit, .. } => Request::SubscribeState {
                id,
                topic: Topic::Participants(conversation(&conversation_id)?),
                limit,
                filter: None,
            },
            ClientFrame::LoadMoreParticipants { conversation_id, count, .. } => {
                Request::LoadMoreState { id, topic: Topic::Participants(conversation(&conversation_id)?), count }
            }
            ClientFrame::UnsubscribeParticipants { conversation_id, .. } => {
                Request::UnsubscribeState { id, topic: Topic::Participants(conversation(&conversation_id)?) }
            }
            ClientFrame::SubscribeOnline { user_id, .. } => {
                Request::SubscribeState { id, topic: Topic::Online(user(&user_id)?), limit: None, filter: None }
            }
            ClientFrame::UnsubscribeOnline { user_id, .. } => {
                Request::UnsubscribeState { id, topic: Topic::Online(user(&user_id)?) }
            }
            ClientFrame::SubscribeConversations { limit, filter, .. } => {
                let filter = match filter {
                    Some(filter) => Some(Arc::new(
                        parse_conversation_filter(&filter.to_string())
                            .map_err(|error| RealtimeError::InvalidRequest(error.to_string()))?,
                    )),
                    None => None,
                };
                Request::SubscribeState { id, topic: Topic::Conversations, limit, filter }
            }
            ClientFrame::LoadMoreConversations { count, .. } => {
                Request::LoadMoreState { id, topic: Topic::Conversations, count }
            }
            ClientFrame::UnsubscribeConversations { .. } => {
                Request::UnsubscribeState { id, topic: Topic::Conversations }
            }
            ClientFrame::SubscribeTyping { conversation_id, .. } => {
                Request::SubscribeTyping { id, conversation_id: conversation(&conversation_id)? }
            }
            ClientFrame::UnsubscribeTyping { conversation_id, .. } => {
                Request::UnsubscribeTyping { id, conversation_id: conversation(&conversation_id)? }
            }
            ClientFrame::UpdateToken { token, .. } => {
                let secret = self.state.apps.get(&self.app_id).expect("the session's app exists");
                let claims = verify_user_token(&self.app_id, secret, &token).map_err(RealtimeError::Unauthorized)?;
                if claims.user_id != self.user_id {
                    return Err(RealtimeError::TokenForAnotherUser);
                }
                Request::TokenRefreshed { id, expires_at: expires_at(claims.expires_at) }
            }
            write => {
                self.spawn_write(id, write)?;
                return Ok(None);
            }
        }))
    }

    /// Runs a write beside the loop, so that a commit never delays this session's event delivery.
    fn spawn_write(&mut self, id: RequestId, write: ClientFrame) -> Result<(), RealtimeError> {
        let permit =
            Arc::clone(&self.writes_in_flight).try_acquire_owned().map_err(|_| RealtimeError::TooManyInFlight)?;
        let (state, app_id, user_id, done_tx) =
            (self.state.clone(), self.app_id.clone(), self.user_id.clone(), self.answers.sender());
        tokio::spawn(async move {
            let reply = match writes::perform(&state, &app_id, &user_id, write).await {
                Ok(result) => {
                    let value = match result.message_id {
                        Some(message_id) => json!({ "messageId": message_id.as_str() }),
                        None => json!({}),
                    };
                    frames::ok_frame(&id, value)
                }
                Err(error) => {
                    let error = RealtimeError::from(error);
                    frames::error_frame(Some(&id), error.code(), &error.reasons())
                }
            };
            drop(permit);
            let _ = done_tx.send(Box::new(Done::Reply(reply))).await;
        });
        Ok(())
    }

    /// A write did not complete: the gateway is shutting down, or the client is too slow or gone.
    fn stalled(&self, session: &mut Session) {
        if self.state.shutdown.is_cancelled() {
            session.handle_shutdown();
        } else {
            session.handle_slow();
        }
    }

    // Not an `async fn`, here and in `guarded`: those keep their arguments twice, a write future in every
    // session's task.
    /// Writes the queued frames.
    fn guarded_write(&mut self) -> impl std::future::Future<Output = bool> + '_ {
        let timeout = self.state.config.socket_write_timeout;
        let (socket, outgoing) = (&mut self.socket, &mut self.outgoing);
        let write = std::future::poll_fn(move |cx| poll_write_frames(socket, outgoing, cx));
        guarded(write, timeout, &self.outbox, &self.state.shutdown)
    }

    async fn close(&mut self, reason: CloseReason) {
        if reason == CloseReason::SlowConsumer {
            self.state.metrics.slow_consumer_disconnects.inc();
        }
        let close = CloseFrame { code: reason.code().into(), reason: Utf8Bytes::from_static(reason.reason()) };
        // Best effort: a client that stopped reading may never take the close frame.
        // Boxed, like a stalled write: only a closing session needs room for the timer.
        let (socket, outgoing) = (&mut self.socket, &mut self.outgoing);
        let closing = async move {
            if std::future::poll_fn(|cx| poll_write_frames(socket, outgoing, cx)).await.is_ok() {
                let _ = socket.send(Message::Close(Some(close))).await;
            }
        };
        let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, closing)).await;
    }

    /// Stops every watch of the session.
    fn finish(mut self) {
        self.set_present(false);
        for task in self.reads.values() {
            task.abort();
            self.state.metrics.session_reads_in_flight.dec();
        }
        let user_key = HubKey::User { app_id: self.app_id.clone(), user_id: self.user_id.clone() };
        self.state.node.unwatch(&user_key, self.user_watcher);
        for (key, (watcher, _)) in &self.watched {
            self.state.metrics.subscriptions.dec();
            self.state.node.unwatch(key, *watcher);
        }
        self.state.metrics.connections.dec();
    }
}

/// Writes the session's frames once tungstenite has written its own (a pong it owes, say), so that neither cuts
/// into the other's.
fn poll_write_frames(
    socket: &mut Socket,
    outgoing: &mut Frames,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<(), ()>> {
    std::task::ready!(futures::Sink::<Message>::poll_flush(std::pin::Pin::new(&mut *socket), cx)).map_err(drop)?;
    outgoing.poll_write(socket.get_mut(), cx).map_err(drop)
}

/// Which rule of RFC 6455 a read error broke, for the close code.
fn violation_of(error: tokio_tungstenite::tungstenite::Error) -> Violation {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(_) => Violation::TooBig,
        Error::Utf8(_) => Violation::InvalidUtf8,
        _ => Violation::Protocol,
    }
}

/// Runs a socket write unless the session is cut off as slow, the gateway shuts down, or the write stalls.
/// Returns whether the write completed.
#[allow(clippy::manual_async_fn)] // see `feed`: an `async fn` would hold the write future twice
fn guarded<'a, E>(
    mut write: impl std::future::Future<Output = Result<(), E>> + Unpin + 'a,
    timeout: std::time::Duration,
    outbox: &'a Outbox,
    shutdown: &'a CancellationToken,
) -> impl std::future::Future<Output = bool> + 'a {
    async move {
        // Almost every write completes at once (the frame fits the buffer, the kernel takes the bytes): those need
        // no timer and no cancellation waiters, which would otherwise be set up and torn down twice per delivery.
        if let std::task::Poll::Ready(result) = futures::poll!(&mut write) {
            return result.is_ok();
        }
        // The rest on the heap: its timer and waiters would otherwise widen every session's task by their size.
        Box::pin(async move {
            tokio::select! {
                result = tokio::time::timeout(timeout, write) => matches!(result, Ok(Ok(()))),
                () = outbox.slowed() => false,
                () = shutdown.cancelled() => false,
            }
        })
        .await
    }
}

/// Converts a token's `exp` (Unix seconds) to a monotonic deadline.
pub fn expires_at(unix_seconds: Option<u64>) -> Option<Instant> {
    unix_seconds.map(|unix_seconds| {
        let now_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        Instant::now() + std::time::Duration::from_secs(unix_seconds.saturating_sub(now_unix))
    })
}
