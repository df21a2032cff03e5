//! Participation (`/conversations/{cid}/participants/{uid}`) and read state (`/users/{uid}/conversations/{cid}`,
//! and the legacy `POST /conversations/{cid}/readBy/{uid}`).

use axum::{extract::State, Extension};
use serde::Deserialize;

use super::{auth::AuthenticatedApp, Empty};
use crate::http::{
    error::ApiError,
    extract::{AppPath, OptionalJson},
};
use crate::{
    app::{now_millis, AppState},
    domain::{
        conversation::{Access, ParticipantSettings},
        ids::{ConversationId, UserId},
    },
    wire::NotifyJson,
};

/// No body means all defaults.
#[derive(Deserialize, Default)]
pub struct ParticipationBody {
    access: Option<String>,
    notify: Option<NotifyJson>,
}

impl ParticipationBody {
    fn settings(self) -> Result<ParticipantSettings, ApiError> {
        Ok(ParticipantSettings {
            access: self.access.as_deref().map(Access::parse).transpose()?,
            notify: self.notify.map(Into::into),
        })
    }
}

type ParticipantPath = AppPath<(String, String, String)>;

fn ids(conversation_id: &str, user_id: &str) -> Result<(ConversationId, UserId), ApiError> {
    Ok((ConversationId::parse(conversation_id)?, UserId::parse(user_id)?))
}

pub async fn put_participant(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, user_id)): ParticipantPath,
    OptionalJson(body): OptionalJson<ParticipationBody>,
) -> Result<Empty, ApiError> {
    let (conversation_id, user_id) = ids(&conversation_id, &user_id)?;
    let settings = body.unwrap_or_default().settings()?;
    state.store.put_participant(&app, &conversation_id, &user_id, settings, now_millis()).await?;
    Ok(Empty)
}

pub async fn patch_participant(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, user_id)): ParticipantPath,
    OptionalJson(body): OptionalJson<ParticipationBody>,
) -> Result<Empty, ApiError> {
    let (conversation_id, user_id) = ids(&conversation_id, &user_id)?;
    let settings = body.unwrap_or_default().settings()?;
    state.store.patch_participant(&app, &conversation_id, &user_id, settings).await?;
    Ok(Empty)
}

pub async fn delete_participant(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, user_id)): ParticipantPath,
) -> Result<Empty, ApiError> {
    let (conversation_id, user_id) = ids(&conversation_id, &user_id)?;
    state.store.remove_participant(&app, &conversation_id, &user_id).await?;
    Ok(Empty)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReadStateBody {
    is_unread: Option<bool>,
}

/// `PATCH /users/{uid}/conversations/{cid}` with `{isUnread}` (seed 001). Path order: user, then conversation.
pub async fn patch_read_state(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, user_id, conversation_id)): ParticipantPath,
    OptionalJson(body): OptionalJson<ReadStateBody>,
) -> Result<Empty, ApiError> {
    let (conversation_id, user_id) = ids(&conversation_id, &user_id)?;
    let is_unread = body.and_then(|body| body.is_unread);
    state.store.set_read_state(&app, &conversation_id, &user_id, is_unread).await?;
    Ok(Empty)
}

/// Legacy `POST /conversations/{cid}/readBy/{uid}`: marks the conversation read by that user.
pub async fn post_read_by(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, user_id)): ParticipantPath,
) -> Result<Empty, ApiError> {
    let (conversation_id, user_id) = ids(&conversation_id, &user_id)?;
    state.store.set_read_state(&app, &conversation_id, &user_id, Some(false)).await?;
    Ok(Empty)
}
