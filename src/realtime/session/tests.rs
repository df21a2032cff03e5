//! The subscription state machine, driven without sockets: each test feeds inputs and compares the outputs,
//! rendered one per line.

use std::sync::Arc;

use super::*;
use crate::{
    domain::{
        content::Links,
        ids::{MessageId, Seq},
        message::{Message, MessageType, MessageView, Origin},
        Custom,
    },
    hub::{EncodedEvent, Membership, Stream},
    realtime::{
        output::Watched,
        state::{State, Topic, Typing},
        subscription::{decide_resume, ResumeDecision, MAX_HELD_EVENTS},
    },
};

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn conversation(id: &str) -> ConversationId {
    ConversationId::parse(id).unwrap()
}

fn request_id(id: &str) -> RequestId {
    RequestId(id.to_owned())
}

fn message(seq: i64) -> MessageView {
    MessageView {
        message: Message {
            id: MessageId::parse(&format!("m{seq}")).unwrap(),
            conversation_id: conversation("c"),
            seq: Seq(seq),
            kind: MessageType::SystemMessage,
            sender_id: None,
            text: format!("text {seq}"),
            links: Links::Allowed,
            custom: Custom::new(),
            referenced_message_id: None,
            attachment: None,
            location: None,
            origin: Origin::Rest,
            created_at: seq,
            edited_at: None,
            read_by: Vec::new(),
            reactions: Vec::new(),
        },
        sender: None,
        referenced: None,
    }
}

/// A window read at `seq` holding messages with these seqs (newest first).
fn window(seq: i64, messages: &[i64], loaded_all: bool) -> MessageWindow {
    MessageWindow {
        seq: Seq(seq),
        participant: true,
        messages: messages.iter().map(|&s| message(s)).collect(),
        loaded_all,
    }
}

fn null_window(seq: i64) -> MessageWindow {
    MessageWindow { seq: Seq(seq), participant: false, messages: Vec::new(), loaded_all: true }
}

fn event(seq: i64, membership: Option<Membership>) -> SharedEvent {
    Arc::new(EncodedEvent {
        app_id: crate::domain::ids::AppId::parse("app").unwrap(),
        stream: Stream::Conversation(conversation("c")),
        seq: Seq(seq),
        membership,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static("{}"),
    })
}

/// A run of logged events with these seqs, as a replay or a hole fill gives it.
fn run(seqs: impl IntoIterator<Item = i64>) -> Option<Vec<SharedEvent>> {
    Some(seqs.into_iter().map(|seq| event(seq, None)).collect())
}

fn render(output: &Output) -> String {
    let seqs = |window: &MessageWindow| {
        window.messages.iter().map(|view| view.message.seq.0.to_string()).collect::<Vec<_>>().join(",")
    };
    match output {
        Output::Forward(event) => match &event.stream {
            Stream::Conversation(conversation_id) => format!("forward {conversation_id} seq={}", event.seq),
            Stream::User(user_id) => format!("forward user {user_id} seq={}", event.seq),
            other => format!("forward {other:?}"),
        },
        Output::Snapshot { conversation_id, window, resumed } if !window.participant => {
            format!("snapshot {conversation_id} seq={} null{}", window.seq, resumed_note(*resumed))
        }
        Output::Snapshot { conversation_id, window, resumed } => format!(
            "snapshot {conversation_id} seq={} [{}] loadedAll={}{}",
            window.seq,
            seqs(window),
            window.loaded_all,
            resumed_note(*resumed)
        ),
        Output::Resumed { conversation_id, from_seq, seq } => {
            format!("resumed {conversation_id} from={from_seq} seq={seq}")
        }
        Output::Page { conversation_id, window } => {
            format!("page {conversation_id} seq={} [{}] loadedAll={}", window.seq, seqs(window), window.loaded_all)
        }
        Output::Ok { id } => format!("ok {}", id.0),
        Output::Error { id, error } => format!("error {} {}", id.0, error.code()),
        Output::SubscriptionError { conversation_id, error } => {
            format!("subscriptionError {conversation_id} {}", error.code())
        }
        Output::Fetch { fetch, conversation_id, before, limit, replay_after } => format!(
            "fetch#{} {conversation_id} before={} limit={limit}{}",
            fetch.0,
            before.map_or("none".to_owned(), |seq| seq.to_string()),
            replay_after.map_or(String::new(), |after| format!(" replay>{after}"))
        ),
        Output::FetchEvents { fetch, conversation_id, after, up_to } => {
            format!("fetchEvents#{} {conversation_id} after={after} upTo={up_to}", fetch.0)
        }
        Output::Watch(watched) => format!("watch {}", watched_name(watched)),
        Output::Unwatch(watched) => format!("unwatch {}", watched_name(watched)),
        Output::FetchUser { fetch, user_id } => format!("fetchUser#{} {user_id}", fetch.0),
        Output::UserState { user_id, seq, user } => {
            format!("user {user_id} seq={seq} {}", user.as_ref().map_or("null".to_owned(), |user| user.name.clone()))
        }
        Output::FetchState { fetch, topic, limit, .. } => format!("fetchState#{} {topic:?} limit={limit}", fetch.0),
        Output::State { topic, state } => format!("state {topic:?} {}", state_name(state)),
        Output::StateError { topic, error } => format!("stateError {topic:?} {}", error.code()),
        Output::FetchConversations { fetch, conversation_ids } => {
            let ids: Vec<String> = conversation_ids.iter().map(ToString::to_string).collect();
            format!("fetchConversations#{} [{}]", fetch.0, ids.join(","))
        }
        Output::FetchMembership { fetch, conversation_id } => format!("fetchMembership#{} {conversation_id}", fetch.0),
        Output::Typing { conversation_id, typing } => format!(
            "typing {conversation_id} {}",
            match typing {
                None => "null".to_owned(),
                Some(Typing::Many) => "many".to_owned(),
                Some(Typing::Few(users)) =>
                    format!("[{}]", users.iter().map(|user| user.as_str()).collect::<Vec<_>>().join(",")),
            }
        ),
        Output::TypingError { conversation_id, error } => format!("typingError {conversation_id} {}", error.code()),
        Output::Ping => "ping".to_owned(),
        Output::Close(reason) => format!("close {}", reason.code()),
    }
}

fn watched_name(watched: &Watched) -> String {
    match watched {
        Watched::Conversation(conversation_id) => conversation_id.to_string(),
        Watched::Profile(user_id) => format!("user {user_id}"),
        Watched::Typing(conversation_id) => format!("typing {conversation_id}"),
        Watched::Online(user_id) => format!("online {user_id}"),
    }
}

fn state_name(state: &State) -> String {
    match state {
        State::Conversation(None) | State::Participants(None) | State::Online(None) => "null".to_owned(),
        State::Conversation(Some(state)) => {
            format!("unread={}", state.participant.unread_message_count)
        }
        State::Participants(Some(page)) => format!(
            "[{}] loadedAll={}",
            page.participants.iter().map(|entry| entry.user.id.to_string()).collect::<Vec<_>>().join(","),
            page.loaded_all
        ),
        State::Online(Some(online)) => format!("connected={}", online.is_connected),
        State::Conversations(page) => format!(
            "[{}] loadedAll={}",
            page.conversations.iter().map(|state| state.conversation.id.to_string()).collect::<Vec<_>>().join(","),
            page.loaded_all
        ),
    }
}

fn resumed_note(resumed: Option<bool>) -> String {
    resumed.map_or(String::new(), |resumed| format!(" resumed={resumed}"))
}

fn drain(session: &mut Session) -> String {
    let mut lines = Vec::new();
    while let Some(output) = session.poll_output() {
        lines.push(render(&output));
    }
    lines.join("\n")
}

#[track_caller]
fn check(session: &mut Session, expected: &str) {
    let expected: Vec<&str> = expected.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    assert_eq!(drain(session), expected.join("\n"));
}

fn new_session(now: Instant) -> Session {
    Session::new(user("me"), None, now)
}

fn subscribe(session: &mut Session, limit: Option<u32>) {
    session.handle_request(Request::SubscribeMessages {
        id: request_id("s"),
        conversation_id: conversation("c"),
        limit,
        resume: None,
    });
}

fn resume(session: &mut Session, from_seq: i64) {
    session.handle_request(Request::SubscribeMessages {
        id: request_id("r"),
        conversation_id: conversation("c"),
        limit: Some(2),
        resume: Some(Resume { from_seq: Seq(from_seq), oldest: Some(Seq(3)), loaded_all: false }),
    });
}

fn load_more(session: &mut Session, id: &str, count: Option<u32>) {
    session.handle_request(Request::LoadMore { id: request_id(id), conversation_id: conversation("c"), count });
}

#[test]
fn subscribe_watches_before_it_reads_and_answers_with_the_snapshot() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    check(&mut session, "watch c\nfetch#0 c before=none limit=30");
    session.handle_window(FetchId(0), window(7, &[7, 6, 5], true), None);
    check(&mut session, "snapshot c seq=7 [7,6,5] loadedAll=true\nok s");
    session.handle_event(&event(8, None), Instant::now());
    check(&mut session, "forward c seq=8");
}

#[test]
fn events_committed_during_the_first_read_appear_exactly_once_in_order() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, Some(2));
    drain(&mut session);
    // 5 and 6 were committed before the read took its snapshot at seq 6; 7 and 8 after it.
    for seq in [5, 6, 7, 8] {
        session.handle_event(&event(seq, None), Instant::now());
    }
    check(&mut session, "");
    session.handle_window(FetchId(0), window(6, &[6, 5], false), None);
    check(
        &mut session,
        "snapshot c seq=6 [6,5] loadedAll=false
         ok s
         forward c seq=7
         forward c seq=8",
    );
    // The same event again (say, through the user key too) is not forwarded twice.
    session.handle_event(&event(8, None), Instant::now());
    check(&mut session, "");
}

#[test]
fn a_non_participant_gets_a_null_snapshot_that_fills_on_join_and_empties_on_leave() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    drain(&mut session);
    session.handle_window(FetchId(0), null_window(3), None);
    check(&mut session, "unwatch c\nsnapshot c seq=3 null\nok s");
    // Nothing of the conversation reaches a non-participant.
    session.handle_event(&event(4, None), Instant::now());
    check(&mut session, "");
    session.handle_event(&event(5, Some(Membership::Joined(user("someone else")))), Instant::now());
    check(&mut session, "");
    session.handle_event(&event(6, Some(Membership::Joined(user("me")))), Instant::now());
    check(&mut session, "watch c\nfetch#1 c before=none limit=30");
    session.handle_event(&event(7, None), Instant::now());
    session.handle_window(FetchId(1), window(6, &[2, 1], true), None);
    check(&mut session, "snapshot c seq=6 [2,1] loadedAll=true\nforward c seq=7");
    session.handle_event(&event(8, Some(Membership::Left(user("me")))), Instant::now());
    check(&mut session, "unwatch c\nsnapshot c seq=8 null");
}

#[test]
fn deleting_the_conversation_turns_the_snapshot_null() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    session.handle_window(FetchId(0), window(2, &[2], true), None);
    drain(&mut session);
    session.handle_event(&event(3, Some(Membership::ConversationDeleted)), Instant::now());
    check(&mut session, "unwatch c\nsnapshot c seq=3 null");
}

#[test]
fn load_more_reads_before_the_oldest_loaded_message_until_loaded_all() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, Some(2));
    session.handle_window(FetchId(0), window(10, &[10, 9], false), None);
    drain(&mut session);
    load_more(&mut session, "l1", Some(3));
    check(&mut session, "fetch#1 c before=9 limit=3");
    // Events during the read wait behind the page.
    session.handle_event(&event(11, None), Instant::now());
    session.handle_window(FetchId(1), window(11, &[8, 7, 6], false), None);
    check(&mut session, "page c seq=11 [8,7,6] loadedAll=false\nok l1\nforward c seq=11");
    load_more(&mut session, "l2", None);
    check(&mut session, "fetch#2 c before=6 limit=30");
    session.handle_window(FetchId(2), window(11, &[5, 4, 3, 2, 1], true), None);
    check(&mut session, "page c seq=11 [5,4,3,2,1] loadedAll=true\nok l2");
    load_more(&mut session, "l3", None);
    check(&mut session, "ok l3");
}

#[test]
fn concurrent_load_more_calls_coalesce_into_the_largest() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, Some(1));
    session.handle_window(FetchId(0), window(20, &[20], false), None);
    drain(&mut session);
    load_more(&mut session, "a", Some(5));
    load_more(&mut session, "b", Some(10));
    check(&mut session, "fetch#1 c before=20 limit=5");
    session.handle_window(FetchId(1), window(20, &[19, 18, 17, 16, 15], false), None);
    check(&mut session, "page c seq=20 [19,18,17,16,15] loadedAll=false\nfetch#2 c before=15 limit=5");
    session.handle_window(FetchId(2), window(20, &[14, 13, 12, 11, 10], false), None);
    check(&mut session, "page c seq=20 [14,13,12,11,10] loadedAll=false\nok a\nok b");
}

#[test]
fn load_more_before_the_snapshot_or_without_a_subscription_is_refused() {
    let mut session = new_session(Instant::now());
    load_more(&mut session, "x", None);
    check(&mut session, "error x NOT_SUBSCRIBED");
    subscribe(&mut session, None);
    drain(&mut session);
    load_more(&mut session, "y", None);
    load_more(&mut session, "z", Some(101));
    check(&mut session, "error y SUBSCRIPTION_NOT_ACTIVE\nerror z INVALID_REQUEST");
    subscribe(&mut session, None);
    check(&mut session, "error s ALREADY_SUBSCRIBED");
}

#[test]
fn unsubscribe_stops_updates_and_ignores_late_reads() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    drain(&mut session);
    session.handle_request(Request::Unsubscribe { id: request_id("u"), conversation_id: conversation("c") });
    // The subscribe that waited for its first read still gets its one reply.
    check(&mut session, "unwatch c\nerror s UNSUBSCRIBED\nok u");
    session.handle_window(FetchId(0), window(1, &[1], true), None);
    session.handle_event(&event(2, None), Instant::now());
    check(&mut session, "");
}

#[test]
fn an_expired_token_ends_every_subscription_in_error_and_closes() {
    let start = Instant::now();
    let mut session = Session::new(user("me"), Some(start + Duration::from_secs(10)), start);
    subscribe(&mut session, None);
    session.handle_window(FetchId(0), window(1, &[1], true), None);
    drain(&mut session);
    session.handle_request(Request::TokenRefreshed {
        id: request_id("t"),
        expires_at: Some(start + Duration::from_secs(20)),
    });
    check(&mut session, "ok t");
    session.handle_activity(start + Duration::from_secs(15));
    session.handle_timeout(start + Duration::from_secs(15));
    check(&mut session, "");
    assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(20)));
    session.handle_timeout(start + Duration::from_secs(20));
    check(&mut session, "subscriptionError c TOKEN_EXPIRED\nclose 4001");
    session.handle_event(&event(2, None), Instant::now());
    check(&mut session, "");
}

#[test]
fn quiet_connections_are_pinged_and_dead_ones_closed() {
    let start = Instant::now();
    let mut session = new_session(start);
    assert_eq!(session.poll_timeout(), Some(start + PING_INTERVAL));
    session.handle_timeout(start + PING_INTERVAL);
    check(&mut session, "ping");
    session.handle_timeout(start + IDLE_TIMEOUT);
    check(&mut session, "close 4002");
}

#[test]
fn too_many_held_events_close_the_session_as_slow() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    drain(&mut session);
    for seq in 0..=MAX_HELD_EVENTS as i64 {
        session.handle_event(&event(seq + 1, None), Instant::now());
    }
    check(&mut session, "close 4000");
}

#[test]
fn a_failed_first_read_ends_the_subscription_in_error() {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    drain(&mut session);
    session.handle_fetch_failed(FetchId(0));
    check(&mut session, "unwatch c\nerror s SERVICE_UNAVAILABLE\nsubscriptionError c SERVICE_UNAVAILABLE");
}

#[test]
fn a_resume_with_every_missed_event_in_the_log_replays_exactly_those() {
    let mut session = new_session(Instant::now());
    resume(&mut session, 5);
    check(&mut session, "watch c\nfetch#0 c before=none limit=2 replay>5");
    // 10 arrived during the read, which saw seq 9; the log holds 6 to 9.
    session.handle_event(&event(10, None), Instant::now());
    session.handle_window(FetchId(0), window(9, &[9, 8], false), run(6..=9));
    check(
        &mut session,
        "resumed c from=5 seq=9
         ok r
         forward c seq=6
         forward c seq=7
         forward c seq=8
         forward c seq=9
         forward c seq=10",
    );
    // The window's far end is the client's: loadMore continues from it.
    load_more(&mut session, "l", Some(2));
    check(&mut session, "fetch#1 c before=3 limit=2");
}

#[test]
fn a_resume_from_before_the_retained_log_gets_a_fresh_snapshot_marked_so() {
    let mut session = new_session(Instant::now());
    resume(&mut session, 5);
    drain(&mut session);
    // Event 6 is no longer in the log: no replay.
    session.handle_window(FetchId(0), window(8, &[8, 7], false), None);
    check(&mut session, "snapshot c seq=8 [8,7] loadedAll=false resumed=false\nok r");
}

#[test]
fn a_resume_with_nothing_missed_replays_nothing() {
    let mut session = new_session(Instant::now());
    resume(&mut session, 8);
    drain(&mut session);
    session.handle_window(FetchId(0), window(8, &[8, 7], false), run([]));
    check(&mut session, "resumed c from=8 seq=8\nok r");
    session.handle_event(&event(9, None), Instant::now());
    check(&mut session, "forward c seq=9");
}

#[test]
fn a_resume_by_someone_who_is_no_longer_a_participant_gets_a_null_snapshot() {
    let mut session = new_session(Instant::now());
    resume(&mut session, 5);
    drain(&mut session);
    session.handle_window(FetchId(0), null_window(7), None);
    check(&mut session, "unwatch c\nsnapshot c seq=7 null resumed=false\nok r");
}

#[test]
fn the_resume_decision_needs_a_participant_a_reached_seq_and_a_run_without_a_hole() {
    let at = |from: i64| Resume { from_seq: Seq(from), oldest: None, loaded_all: false };
    let replays = |decision| matches!(decision, ResumeDecision::Replay(_));
    assert!(replays(decide_resume(&at(5), &window(8, &[8], false), run(6..=8))));
    assert!(replays(decide_resume(&at(8), &window(8, &[8], false), run([]))));
    assert!(!replays(decide_resume(&at(5), &window(8, &[8], false), run([6, 8]))), "7 is missing");
    assert!(!replays(decide_resume(&at(5), &window(8, &[8], false), run([6, 7]))), "8 is missing");
    assert!(!replays(decide_resume(&at(5), &window(8, &[8], false), None)));
    assert!(!replays(decide_resume(&at(9), &window(8, &[8], false), run([]))), "from a seq not reached");
    assert!(!replays(decide_resume(&at(5), &null_window(8), run(6..=8))));
}

/// A session that is active at `seq` with a window of one message.
fn active_at(seq: i64) -> Session {
    let mut session = new_session(Instant::now());
    subscribe(&mut session, None);
    session.handle_window(FetchId(0), window(seq, &[seq], false), None);
    drain(&mut session);
    session
}

#[test]
fn an_event_after_a_hole_is_held_and_the_hole_filled_from_the_log() {
    let mut session = active_at(5);
    session.handle_event(&event(8, None), Instant::now());
    check(&mut session, "fetchEvents#1 c after=5 upTo=7");
    // More arrive while the hole is being filled, one of them the missing 7 itself.
    session.handle_event(&event(9, None), Instant::now());
    session.handle_event(&event(7, None), Instant::now());
    check(&mut session, "");
    session.handle_events(FetchId(1), run([6, 7]));
    check(
        &mut session,
        "forward c seq=6
         forward c seq=7
         forward c seq=8
         forward c seq=9",
    );
    session.handle_event(&event(6, None), Instant::now());
    session.handle_event(&event(10, None), Instant::now());
    check(&mut session, "forward c seq=10");
}

#[test]
fn a_hole_that_cannot_be_filled_gives_a_fresh_snapshot_marked_so() {
    let mut session = active_at(5);
    session.handle_event(&event(8, None), Instant::now());
    check(&mut session, "fetchEvents#1 c after=5 upTo=7");
    // 6 and 7 are pruned from the log (or the read failed): the window is read again.
    session.handle_events(FetchId(1), None);
    check(&mut session, "fetch#2 c before=none limit=30");
    session.handle_event(&event(10, None), Instant::now());
    session.handle_window(FetchId(2), window(9, &[9, 5], false), None);
    check(&mut session, "snapshot c seq=9 [9,5] loadedAll=false resumed=false\nforward c seq=10");
}

#[test]
fn a_hole_too_long_to_replay_is_repaired_by_a_fresh_snapshot() {
    let mut session = active_at(5);
    session.handle_event(&event(5 + crate::realtime::subscription::MAX_REPLAY_EVENTS + 2, None), Instant::now());
    check(&mut session, "fetch#1 c before=none limit=30");
}

#[test]
fn a_hole_behind_a_load_more_is_filled_after_the_page() {
    let mut session = active_at(5);
    load_more(&mut session, "l", Some(1));
    check(&mut session, "fetch#1 c before=5 limit=1");
    session.handle_event(&event(7, None), Instant::now());
    check(&mut session, "");
    session.handle_window(FetchId(1), window(7, &[4], false), None);
    check(&mut session, "page c seq=7 [4] loadedAll=false\nok l\nfetchEvents#2 c after=5 upTo=6");
    session.handle_events(FetchId(2), run([6]));
    check(&mut session, "forward c seq=6\nforward c seq=7");
}

#[test]
fn duplicates_and_reordering_from_two_sources_in_any_interleaving_give_each_event_once_in_order() {
    use rand::{seq::SliceRandom, Rng, SeedableRng};
    for seed in 0..500 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut session = active_at(5);
        // Two sources (the broker twice, or the conversation key and the user key) each deliver 6 to 15, in
        // their own shuffled order; a source may also deliver an event twice.
        let mut deliveries: Vec<i64> = (6..=15).chain(6..=15).collect();
        deliveries.extend((0..3).map(|_| rng.random_range(6..=15)));
        deliveries.shuffle(&mut rng);
        let mut forwarded = Vec::new();
        let mut fills: Vec<(FetchId, Seq, Seq)> = Vec::new();
        let mut next = deliveries.into_iter();
        loop {
            // The log answers hole fills at random moments, between deliveries.
            if !fills.is_empty() && rng.random_bool(0.5) {
                let (fetch, after, up_to) = fills.remove(0);
                session.handle_events(fetch, run(after.0 + 1..=up_to.0));
            } else if let Some(seq) = next.next() {
                session.handle_event(&event(seq, None), Instant::now());
            } else if let Some((fetch, after, up_to)) = fills.pop() {
                session.handle_events(fetch, run(after.0 + 1..=up_to.0));
            } else {
                break;
            }
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Forward(event) => forwarded.push(event.seq.0),
                    Output::FetchEvents { fetch, after, up_to, .. } => fills.push((fetch, after, up_to)),
                    other => panic!("seed {seed}: unexpected {}", render(&other)),
                }
            }
        }
        assert_eq!(forwarded, (6..=15).collect::<Vec<_>>(), "seed {seed}");
    }
}

fn user_event(user_id: &str, seq: i64) -> SharedEvent {
    Arc::new(EncodedEvent {
        app_id: crate::domain::ids::AppId::parse("app").unwrap(),
        stream: Stream::User(user(user_id)),
        seq: Seq(seq),
        membership: None,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static("{}"),
    })
}

fn named(id: &str, name: &str) -> crate::domain::user::User {
    crate::domain::user::User {
        id: user(id),
        name: name.to_owned(),
        email: None,
        phone: None,
        photo_url: None,
        locale: None,
        role: None,
        welcome_message: None,
        custom: Custom::new(),
        push_tokens: None,
        created_at: 1,
    }
}

#[test]
fn a_user_subscription_watches_reads_and_sends_only_newer_states() {
    let mut session = new_session(Instant::now());
    session.handle_request(Request::SubscribeUser { id: request_id("u"), user_id: user("bob") });
    check(&mut session, "watch user bob\nfetchUser#0 bob");
    // Changes during the read: the newest is held; the read saw seq 3.
    session.handle_event(&user_event("bob", 3), Instant::now());
    session.handle_event(&user_event("bob", 4), Instant::now());
    check(&mut session, "");
    session.handle_user(FetchId(0), Seq(3), Some(named("bob", "Bob")));
    check(&mut session, "user bob seq=3 Bob\nforward user bob seq=4\nok u");
    session.handle_event(&user_event("bob", 4), Instant::now());
    session.handle_event(&user_event("bob", 6), Instant::now());
    session.handle_event(&user_event("bob", 5), Instant::now());
    check(&mut session, "forward user bob seq=6");
    session.handle_request(Request::SubscribeUser { id: request_id("again"), user_id: user("bob") });
    check(&mut session, "error again ALREADY_SUBSCRIBED");
    session.handle_request(Request::UnsubscribeUser { id: request_id("x"), user_id: user("bob") });
    check(&mut session, "unwatch user bob\nok x");
    session.handle_event(&user_event("bob", 7), Instant::now());
    check(&mut session, "");
}

#[test]
fn a_user_that_does_not_exist_is_a_null_state_and_a_failed_read_fails_the_subscribe() {
    let mut session = new_session(Instant::now());
    session.handle_request(Request::SubscribeUser { id: request_id("u"), user_id: user("ghost") });
    session.handle_request(Request::SubscribeUser { id: request_id("v"), user_id: user("bob") });
    check(&mut session, "watch user ghost\nfetchUser#0 ghost\nwatch user bob\nfetchUser#1 bob");
    assert!(session.wants(FetchId(0)) && session.wants(FetchId(1)));
    session.handle_user(FetchId(0), Seq(0), None);
    check(&mut session, "user ghost seq=0 null\nok u");
    session.handle_fetch_failed(FetchId(1));
    check(&mut session, "unwatch user bob\nerror v SERVICE_UNAVAILABLE");
    assert!(!session.wants(FetchId(1)));
    session.handle_request(Request::SubscribeUser { id: request_id("w"), user_id: user("carl") });
    session.handle_request(Request::UnsubscribeUser { id: request_id("x"), user_id: user("carl") });
    check(&mut session, "watch user carl\nfetchUser#2 carl\nunwatch user carl\nerror w UNSUBSCRIBED\nok x");
    assert!(!session.wants(FetchId(2)), "the read of an unsubscribed user is not wanted");
}

#[test]
fn user_subscriptions_count_toward_the_limit() {
    let mut session = Session::with_max_subscriptions(user("me"), None, Instant::now(), 2);
    subscribe(&mut session, None);
    session.handle_request(Request::SubscribeUser { id: request_id("u"), user_id: user("bob") });
    session.handle_request(Request::SubscribeUser { id: request_id("v"), user_id: user("carl") });
    let outputs = drain(&mut session);
    assert!(outputs.ends_with("error v TOO_MANY_SUBSCRIPTIONS"), "{outputs}");
}

fn signal(stream: Stream, frame: &'static str) -> SharedEvent {
    Arc::new(EncodedEvent {
        app_id: crate::domain::ids::AppId::parse("app").unwrap(),
        stream,
        seq: Seq(0),
        membership: None,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static(frame),
    })
}

fn participants(ids: &[&str], loaded_all: bool) -> State {
    use crate::{
        domain::conversation::{Access, Notify},
        store::{ParticipantEntry, ParticipantsPage},
    };
    let participants = ids
        .iter()
        .map(|id| ParticipantEntry {
            user: named(id, id),
            access: Access::ReadWrite,
            notify: Notify::All,
            joined_at: 1,
        })
        .collect();
    State::Participants(Some(ParticipantsPage { participants, loaded_all }))
}

fn subscribe_participants(session: &mut Session, limit: Option<u32>) {
    let topic = Topic::Participants(conversation("c"));
    session.handle_request(Request::SubscribeState { id: request_id("p"), topic, limit, filter: None });
}

#[test]
fn a_state_subscription_reads_again_on_change_one_read_at_a_time_and_sends_only_changes() {
    let mut session = new_session(Instant::now());
    subscribe_participants(&mut session, None);
    check(&mut session, "watch c\nfetchState#0 Participants(ConversationId(\"c\")) limit=10");
    // Events during the read make one more read after it, however many they are.
    session.handle_event(&event(2, None), Instant::now());
    session.handle_event(&event(3, None), Instant::now());
    check(&mut session, "");
    session.handle_state(FetchId(0), participants(&["bob", "me"], true));
    check(
        &mut session,
        "watch user bob\nwatch user me\nstate Participants(ConversationId(\"c\")) [bob,me] loadedAll=true\nok p\n\
         fetchState#1 Participants(ConversationId(\"c\")) limit=10",
    );
    // The same state again is not sent; a profile change of an embedded user reads again.
    session.handle_state(FetchId(1), participants(&["bob", "me"], true));
    check(&mut session, "");
    session.handle_event(&user_event("bob", 4), Instant::now());
    session.handle_event(&user_event("stranger", 4), Instant::now());
    check(&mut session, "fetchState#2 Participants(ConversationId(\"c\")) limit=10");
    // Bob left: his profile is no longer watched.
    session.handle_state(FetchId(2), participants(&["me"], true));
    check(&mut session, "unwatch user bob\nstate Participants(ConversationId(\"c\")) [me] loadedAll=true");
    // Not a participant any more: null, and nothing of the conversation is watched (the user key brings a join).
    session.handle_event(&event(5, Some(Membership::Left(user("me")))), Instant::now());
    session.handle_state(FetchId(3), State::Participants(None));
    check(
        &mut session,
        "fetchState#3 Participants(ConversationId(\"c\")) limit=10\nunwatch c\nunwatch user me\n\
         state Participants(ConversationId(\"c\")) null",
    );
    let topic = Topic::Participants(conversation("c"));
    session.handle_request(Request::UnsubscribeState { id: request_id("x"), topic });
    check(&mut session, "ok x");
    assert!(!session.counts_as_connected());
}

#[test]
fn load_more_participants_coalesces_into_the_largest_and_is_refused_out_of_range() {
    let mut session = new_session(Instant::now());
    subscribe_participants(&mut session, Some(2));
    session.handle_state(FetchId(0), participants(&["a", "b"], false));
    // The first read added watches, so it reads once more (a change between the read and the watch).
    session.handle_state(FetchId(1), participants(&["a", "b"], false));
    drain(&mut session);
    let topic = || Topic::Participants(conversation("c"));
    for (id, count) in [("m1", Some(1)), ("m2", Some(5)), ("m3", Some(3))] {
        session.handle_request(Request::LoadMoreState { id: request_id(id), topic: topic(), count });
    }
    session.handle_request(Request::LoadMoreState { id: request_id("big"), topic: topic(), count: Some(51) });
    check(&mut session, "fetchState#2 Participants(ConversationId(\"c\")) limit=3\nerror big INVALID_REQUEST");
    // The read at 3 answers the first ask; the larger ones (7 and 5) wait for one more read, at 7.
    session.handle_state(FetchId(2), participants(&["a", "b", "x"], false));
    let outputs = drain(&mut session);
    assert!(outputs.contains("ok m1\nfetchState#3 Participants(ConversationId(\"c\")) limit=7"), "{outputs}");
    session.handle_state(FetchId(3), participants(&["a", "b", "x", "y"], true));
    let outputs = drain(&mut session);
    assert!(outputs.contains("loadedAll=true\nok m2\nok m3"), "{outputs}");
    session.handle_request(Request::SubscribeState {
        id: request_id("bad"),
        topic: topic(),
        limit: None,
        filter: None,
    });
    check(&mut session, "error bad ALREADY_SUBSCRIBED");
}

fn subscribe_typing(session: &mut Session) {
    session.handle_request(Request::SubscribeTyping { id: request_id("t"), conversation_id: conversation("c") });
}

fn typing(user_id: &str, frame: &'static str, typing: bool) -> SharedEvent {
    signal(Stream::Typing { conversation_id: conversation("c"), user_id: user(user_id), typing }, frame)
}

#[test]
fn typists_are_listed_longest_first_never_the_user_and_expire_after_the_timeout() {
    let start = Instant::now();
    let mut session = new_session(start).with_typing_timeout(Duration::from_secs(10));
    subscribe_typing(&mut session);
    check(&mut session, "watch typing c\nfetchMembership#0 c");
    session.handle_membership(FetchId(0), true);
    check(&mut session, "typing c []\nok t");
    session.handle_event(&typing("bob", "B", true), start);
    session.handle_event(&typing("me", "ME", true), start);
    session.handle_event(&typing("carl", "C", true), start + Duration::from_secs(3));
    check(&mut session, "typing c [B]\ntyping c [B,C]");
    assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(10)));
    // Bob types again: he keeps his place and his time moves on.
    session.handle_event(&typing("bob", "B", true), start + Duration::from_secs(5));
    session.handle_timeout(start + Duration::from_secs(13));
    check(&mut session, "typing c [B]");
    // Sending stops typing.
    session.handle_event(&typing("bob", "", false), start + Duration::from_secs(14));
    check(&mut session, "typing c []");
}

#[test]
fn more_than_five_typists_is_many_and_further_typists_send_nothing() {
    let now = Instant::now();
    let mut session = new_session(now);
    subscribe_typing(&mut session);
    session.handle_membership(FetchId(0), true);
    drain(&mut session);
    for (user_id, frame) in [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")] {
        session.handle_event(&typing(user_id, frame, true), now);
    }
    let outputs = drain(&mut session);
    assert!(outputs.ends_with("typing c [A,B,C,D,E]"), "{outputs}");
    session.handle_event(&typing("f", "F", true), now);
    session.handle_event(&typing("g", "G", true), now);
    check(&mut session, "typing c many");
    session.handle_event(&typing("g", "", false), now);
    check(&mut session, "");
    session.handle_event(&typing("f", "", false), now);
    check(&mut session, "typing c [A,B,C,D,E]");
}

#[test]
fn typing_is_null_for_a_non_participant_and_fills_when_they_join() {
    let now = Instant::now();
    let mut session = new_session(now);
    subscribe_typing(&mut session);
    drain(&mut session);
    session.handle_membership(FetchId(0), false);
    check(&mut session, "typing c null\nok t");
    session.handle_event(&typing("bob", "B", true), now);
    check(&mut session, "");
    session.handle_event(&event(4, Some(Membership::Joined(user("me")))), now);
    check(&mut session, "fetchMembership#1 c");
    session.handle_membership(FetchId(1), true);
    check(&mut session, "typing c []");
    session.handle_request(Request::UnsubscribeTyping { id: request_id("x"), conversation_id: conversation("c") });
    check(&mut session, "unwatch typing c\nok x");
}

#[test]
fn a_session_counts_as_connected_while_it_holds_a_subscription() {
    let mut session = new_session(Instant::now());
    assert!(!session.counts_as_connected());
    let topic = Topic::Online(user("bob"));
    session.handle_request(Request::SubscribeState { id: request_id("o"), topic, limit: None, filter: None });
    check(&mut session, "watch user bob\nwatch online bob\nfetchState#0 Online(UserId(\"bob\")) limit=1");
    assert!(session.counts_as_connected());
    session.handle_event(&signal(Stream::Online(user("bob")), ""), Instant::now());
    session.handle_event(&signal(Stream::Online(user("carl")), ""), Instant::now());
    check(&mut session, "");
    session.handle_fetch_failed(FetchId(0));
    let outputs = drain(&mut session);
    assert!(outputs.ends_with("error o SERVICE_UNAVAILABLE"), "{outputs}");
    assert!(!session.counts_as_connected());
}

fn listed(id: &str, activity: i64) -> crate::store::ConversationState {
    use crate::domain::conversation::{Access, Conversation, Notify, Participant};
    crate::store::ConversationState {
        conversation: Conversation {
            id: conversation(id),
            subject: None,
            photo_url: None,
            welcome_messages: None,
            custom: Custom::new(),
            created_at: 1,
            last_message_at: Some(activity),
            last_seq: Seq(0),
        },
        participant: Participant {
            user_id: user("me"),
            access: Access::ReadWrite,
            notify: Notify::All,
            joined_at: 1,
            is_unread: false,
            unread_message_count: 0,
        },
        last_message: None,
        read_until: 0,
        everyone_read_until: 0,
    }
}

fn list(held: &[(&str, i64)], loaded_all: bool, member_of: &[&str]) -> State {
    State::Conversations(crate::store::ConversationListPage {
        conversations: held.iter().map(|(id, activity)| listed(id, *activity)).collect(),
        loaded_all,
        member_of: member_of.iter().map(|id| conversation(id)).collect(),
    })
}

fn conversation_event(id: &str, seq: i64) -> SharedEvent {
    Arc::new(EncodedEvent {
        app_id: crate::domain::ids::AppId::parse("app").unwrap(),
        stream: Stream::Conversation(conversation(id)),
        seq: Seq(seq),
        membership: None,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static("{}"),
    })
}

#[test]
fn a_conversation_list_reads_changed_conversations_alone_and_patches_them_in() {
    let mut session = new_session(Instant::now());
    let topic = Topic::Conversations;
    session.handle_request(Request::SubscribeState { id: request_id("l"), topic, limit: Some(2), filter: None });
    check(&mut session, "fetchState#0 Conversations limit=2");
    session.handle_state(FetchId(0), list(&[("a", 30), ("b", 20)], false, &["a", "b", "c"]));
    check(&mut session, "watch a\nwatch b\nwatch c\nstate Conversations [a,b] loadedAll=false\nok l\nfetchState#1 Conversations limit=2");
    session.handle_state(FetchId(1), list(&[("a", 30), ("b", 20)], false, &["a", "b", "c"]));
    check(&mut session, "");
    // Activity in c, outside the window: c alone is read, and moves in at the front.
    session.handle_event(&conversation_event("c", 5), Instant::now());
    session.handle_event(&conversation_event("b", 9), Instant::now());
    check(&mut session, "fetchConversations#2 [c]");
    session.handle_conversations(FetchId(2), vec![(conversation("c"), Some(listed("c", 40)))]);
    check(&mut session, "state Conversations [c,a] loadedAll=false\nfetchConversations#3 [b]");
    // b, now outside the window, had older activity than what the window holds: nothing changes.
    session.handle_conversations(FetchId(3), vec![(conversation("b"), Some(listed("b", 25)))]);
    check(&mut session, "");
    // A conversation that no longer shows leaves a hole only a whole read fills; a join reads the whole list.
    session.handle_event(&conversation_event("a", 6), Instant::now());
    session.handle_conversations(FetchId(4), vec![(conversation("a"), None)]);
    check(&mut session, "fetchConversations#4 [a]\nfetchState#5 Conversations limit=2");
    session.handle_event(&event(7, Some(Membership::Joined(user("me")))), Instant::now());
    check(&mut session, "");
}

#[test]
fn a_request_counts_as_connected_until_the_linger_is_over() {
    let start = Instant::now();
    let mut session = new_session(start).with_request_linger(Duration::from_secs(5));
    session.handle_requested(start);
    assert!(session.counts_as_connected());
    let until = start + Duration::from_secs(5);
    assert_eq!(session.poll_timeout(), Some(until));
    session.handle_timeout(until - Duration::from_millis(1));
    assert!(session.counts_as_connected());
    session.handle_timeout(until);
    assert!(!session.counts_as_connected());
    assert!(session.poll_timeout().is_some_and(|next| next > until), "the linger no longer wakes the session");
}
