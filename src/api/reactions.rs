//! `PUT`/`DELETE /conversations/{cid}/messages/{mid}/reactions/{emoji}/{uid}`: idempotent emoji reactions
//! (reference §1.7, §5 #12). The emoji is percent-encoded in the path and normalised before it is stored.

use axum::{extract::State, Extension};

use super::{auth::AuthenticatedApp, Empty};
use crate::http::{error::ApiError, extract::AppPath};
use crate::{
    app::{now_millis, AppState},
    domain::{
        ids::{ConversationId, MessageId, UserId},
        reaction::Emoji,
    },
};

type ReactionPath = AppPath<(String, String, String, String, String)>;

fn parse(
    conversation_id: &str,
    message_id: &str,
    emoji: &str,
    user_id: &str,
) -> Result<(ConversationId, MessageId, Emoji, UserId), ApiError> {
    Ok((
        ConversationId::parse(conversation_id)?,
        MessageId::parse(message_id)?,
        Emoji::parse(emoji)?,
        UserId::parse(user_id)?,
    ))
}

pub async fn put_reaction(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, message_id, emoji, user_id)): ReactionPath,
) -> Result<Empty, ApiError> {
    let (conversation_id, message_id, emoji, user_id) = parse(&conversation_id, &message_id, &emoji, &user_id)?;
    state.store.add_reaction(&app, &conversation_id, &message_id, &emoji, &user_id, now_millis()).await?;
    Ok(Empty)
}

pub async fn delete_reaction(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, message_id, emoji, user_id)): ReactionPath,
) -> Result<Empty, ApiError> {
    let (conversation_id, message_id, emoji, user_id) = parse(&conversation_id, &message_id, &emoji, &user_id)?;
    state.store.remove_reaction(&app, &conversation_id, &message_id, &emoji, &user_id).await?;
    Ok(Empty)
}
