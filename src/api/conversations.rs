//! `/conversations`: create or merge, read, list, delete (seed 001).

use std::collections::BTreeMap;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;

use super::{
    auth::AuthenticatedApp,
    listing::{conversation_query, ListParams},
    Empty,
};
use crate::http::{
    error::ApiError,
    extract::{AppJson, AppPath, AppQuery},
};
use crate::{
    app::{now_millis, AppState},
    domain::{
        conversation::ConversationPatch,
        ids::{ConversationId, UserId},
        message::validate_custom,
        Field, Rejection, ValidationError,
    },
    wire::{self, ConversationJson, ListJson},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationUpsert {
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default, deserialize_with = "wire::field")]
    subject: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    photo_url: Field<String>,
    #[serde(default, deserialize_with = "wire::field")]
    welcome_messages: Field<Vec<String>>,
    #[serde(default, deserialize_with = "wire::field")]
    custom: Field<BTreeMap<String, Option<String>>>,
}

impl ConversationUpsert {
    fn into_patch(self) -> Result<ConversationPatch, ValidationError> {
        if let Field::Set(custom) = &self.custom {
            validate_custom(custom.iter().map(|(key, value)| (key, value.as_ref())))?;
        }
        let participants = self
            .participants
            .iter()
            .enumerate()
            .map(|(index, id)| UserId::parse(id).map_err(|error| error.at(&format!("participants[{index}]"))))
            .collect::<Result<_, _>>()?;
        Ok(ConversationPatch {
            participants,
            subject: self.subject,
            photo_url: self.photo_url,
            welcome_messages: self.welcome_messages,
            custom: self.custom,
        })
    }
}

pub async fn put_conversation(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): AppPath<(String, String)>,
    AppJson(body): AppJson<ConversationUpsert>,
) -> Result<Empty, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let patch = body.into_patch()?;
    state.store.upsert_conversation(&app, &conversation_id, patch, now_millis()).await?;
    Ok(Empty)
}

pub async fn get_conversation(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let view = state
        .store
        .conversation(&app, &conversation_id)
        .await?
        .ok_or(Rejection::ConversationNotFound(conversation_id))?;
    Ok(Json(ConversationJson::new(&view, &app, &state.links)).into_response())
}

pub async fn delete_conversation(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): AppPath<(String, String)>,
) -> Result<Empty, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    state.store.delete_conversation(&app, &conversation_id).await?;
    Ok(Empty)
}

pub async fn list_conversations(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let query = conversation_query(&params, false)?;
    let views = state.store.conversations(&app, query).await?;
    let data: Vec<_> = views.iter().map(|view| ConversationJson::new(view, &app, &state.links)).collect();
    Ok(Json(ListJson { data }).into_response())
}
