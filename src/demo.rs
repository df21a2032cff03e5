//! `natter --demo`: a chat page a person can use, served at `/demo/` from files embedded in the binary (the page
//! and the `@natter/client` library, `clients/js/demo/`), on a few seeded users and conversations.
//!
//! The page needs user tokens, which only an app's backend may issue: here `/demo/session` plays that backend
//! for the demo users alone, and only on a gateway that listens on a loopback address (`main` refuses `--demo`
//! otherwise), so that a gateway reachable from elsewhere never hands out tokens.

use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    app::{now_millis, AppState},
    domain::{
        conversation::ConversationPatch,
        ids::{AppId, ConversationId, UserId},
        message::{MessageBody, MessageType, NewMessage, Origin},
        user::UserPatch,
        Custom, Rejection,
    },
    http::error::ApiError,
    store::{ConversationQuery, Store, StoreResult},
};

/// The demo's users, `(id, name)`.
pub const USERS: &[(&str, &str)] = &[("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")];

/// The files of the page, by path under `/demo/`.
const FILES: &[(&str, &str, &str)] = &[
    ("", "text/html; charset=utf-8", include_str!("../clients/js/demo/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../clients/js/demo/style.css")),
    ("lib/index.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/index.js")),
    ("lib/session.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/session.js")),
    ("lib/connection.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/connection.js")),
    ("lib/window.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/window.js")),
    ("lib/types.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/types.js")),
    ("lib/user.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/user.js")),
    ("lib/lifecycle.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/lifecycle.js")),
    ("lib/live.js", "text/javascript; charset=utf-8", include_str!("../clients/js/demo/lib/live.js")),
];

/// How long a demo token lasts.
const TOKEN_SECONDS: u64 = 3600;

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/demo", get(|| async { axum::response::Redirect::permanent("/demo/") }))
        .route("/demo/session", get(session))
        .route("/demo/conversations", get(conversations));
    for (path, content_type, body) in FILES {
        let route = format!("/demo/{path}");
        router = router.route(&route, get(move || async move { ([(header::CONTENT_TYPE, *content_type)], *body) }));
    }
    router
}

/// The app the demo runs in: the first one configured.
fn demo_app(state: &AppState) -> Result<(AppId, String), ApiError> {
    let first = state.config.apps.first().ok_or_else(|| ApiError::Unavailable("no app".into()))?;
    let app = AppId::parse(&first.app_id).map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok((app, first.secret.clone()))
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
}

fn demo_user(raw: &str) -> Result<UserId, ApiError> {
    if !USERS.iter().any(|(id, _)| *id == raw) {
        return Err(Rejection::invalid("user", format!("{raw:?} is not a demo user")).into());
    }
    Ok(UserId::from_trusted(raw.to_owned()))
}

/// What the page needs to open a session as a demo user.
async fn session(State(state): State<AppState>, Query(query): Query<UserQuery>) -> Result<Response, ApiError> {
    let user = demo_user(&query.user)?;
    let (app, secret) = demo_app(&state)?;
    let expires_at = (now_millis() / 1000) as u64 + TOKEN_SECONDS;
    let token = crate::token::mint_user_token(&app, &secret, &user, expires_at);
    let users: Vec<_> = USERS.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect();
    Ok(Json(json!({ "appId": app.as_str(), "userId": user.as_str(), "token": token, "users": users })).into_response())
}

/// A demo user's conversations, newest activity first, with their unread state (the conversation list
/// subscription is not in the protocol yet, so the page asks again when it needs to).
async fn conversations(State(state): State<AppState>, Query(query): Query<UserQuery>) -> Result<Response, ApiError> {
    let user = demo_user(&query.user)?;
    let (app, _) = demo_app(&state)?;
    let query = ConversationQuery::latest(30);
    let entries = state.store.user_conversations(&app, &user, query).await?;
    let list: Vec<_> = entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.view.conversation.id.as_str(),
                "subject": entry.view.conversation.subject,
                "isUnread": entry.participant.is_unread,
                "unreadMessageCount": entry.participant.unread_message_count,
                "lastMessage": entry.view.last_message.as_ref().map(|message| message.text.clone()),
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

/// Creates the demo's users and conversations unless they exist: a welcome group with enough history to scroll
/// into, and a conversation of two.
pub async fn seed(store: &dyn Store, app: &AppId) -> StoreResult<()> {
    let now = now_millis();
    let users = USERS
        .iter()
        .map(|(id, name)| {
            (UserId::from_trusted((*id).to_owned()), UserPatch { name: Some((*name).to_owned()), ..Default::default() })
        })
        .collect();
    store.upsert_users(app, users, now).await?;
    let welcome = ConversationId::from_trusted("welcome".into());
    if store.conversation(app, &welcome).await?.is_some() {
        return Ok(());
    }
    let everyone: Vec<UserId> = USERS.iter().map(|(id, _)| UserId::from_trusted((*id).to_owned())).collect();
    let patch = ConversationPatch {
        subject: crate::domain::Field::Set("Welcome to Natter".into()),
        participants: everyone.clone(),
        ..Default::default()
    };
    store.upsert_conversation(app, &welcome, patch, now).await?;
    let lines = [
        "Welcome! This is a *Natter* demo: open it in a second window as another user.",
        "Messages, edits, deletes and reactions appear everywhere as they happen.",
        "Scroll up to load older messages.",
    ];
    for batch in 0..4 {
        let messages = (0..10)
            .map(|i| {
                let n = batch * 10 + i;
                let sender = &everyone[n % everyone.len()];
                text(Some(sender.clone()), &format!("Message {n} of the history"))
            })
            .collect();
        store.append_messages(app, &welcome, messages, now).await?;
    }
    let intro = lines.iter().map(|line| text(None, line)).collect();
    store.append_messages(app, &welcome, intro, now).await?;
    let pair = ConversationId::from_trusted("alice-bob".into());
    let patch = ConversationPatch {
        subject: crate::domain::Field::Set("Alice & Bob".into()),
        participants: everyone[..2].to_vec(),
        ..Default::default()
    };
    store.upsert_conversation(app, &pair, patch, now).await?;
    store.append_messages(app, &pair, vec![text(Some(everyone[0].clone()), "Hi Bob!")], now).await?;
    Ok(())
}

fn text(sender: Option<UserId>, text: &str) -> NewMessage {
    NewMessage {
        kind: if sender.is_some() { MessageType::UserMessage } else { MessageType::SystemMessage },
        sender_id: sender,
        body: MessageBody::Text(text.into()),
        links: crate::domain::content::Links::Allowed,
        custom: Custom::new(),
        referenced_message_id: None,
        idempotency_key: None,
        origin: Origin::Rest,
    }
}
