//! `/conversations/{cid}/messages`: send a batch, read one, list, edit, delete one, delete all (seed 000).

use std::collections::BTreeMap;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;

use super::{
    auth::AuthenticatedApp,
    listing::{page, ListParams},
    Empty,
};
use crate::http::{
    error::ApiError,
    extract::{AppJson, AppPath, AppQuery},
};
use crate::{
    app::{now_millis, AppState},
    domain::{
        content::Links,
        ids::{ConversationId, MessageId, UserId},
        limits::MAX_MESSAGES_PER_SEND,
        message::{Location, MessageBody, MessageEdit, MessageType, NewMessage, Origin},
        Actor, Custom, Rejection, ValidationError,
    },
    wire::{ListJson, MessageIdJson, MessageJson},
};

/// One item of a send batch: a UserMessage or a SystemMessage with text, an attachment or a location.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendItem {
    #[serde(rename = "type")]
    kind: Option<String>,
    sender: Option<String>,
    text: Option<String>,
    attachment_token: Option<String>,
    location: Option<Vec<f64>>,
    #[serde(default)]
    custom: Custom,
    referenced_message_id: Option<String>,
    idempotency_key: Option<String>,
}

impl SendItem {
    fn into_new_message(self) -> Result<NewMessage, ValidationError> {
        let kind = match self.kind.as_deref() {
            Some(raw) => MessageType::parse(raw)?,
            None => return Err(ValidationError::new("type", "is required: \"UserMessage\" or \"SystemMessage\"")),
        };
        let body = match (self.text, self.attachment_token, self.location) {
            (Some(text), None, None) => {
                if text.is_empty() {
                    return Err(ValidationError::new("text", "must not be empty"));
                }
                MessageBody::Text(text)
            }
            (None, Some(token), None) => MessageBody::Attachment { token },
            (None, None, Some(location)) => match location.as_slice() {
                [latitude, longitude] => MessageBody::Location(Location::parse(*latitude, *longitude)?),
                _ => return Err(ValidationError::new("location", "must be [latitude, longitude]")),
            },
            (None, None, None) => {
                return Err(ValidationError::new("", "a message needs one of text, attachmentToken or location"))
            }
            _ => {
                return Err(ValidationError::new("", "a message carries only one of text, attachmentToken or location"))
            }
        };
        let message = NewMessage {
            kind,
            sender_id: self.sender.as_deref().map(UserId::parse).transpose().map_err(|e| e.at("sender"))?,
            body,
            links: Links::Allowed,
            custom: self.custom,
            referenced_message_id: self
                .referenced_message_id
                .as_deref()
                .map(MessageId::parse)
                .transpose()
                .map_err(|e| ValidationError::new("referencedMessageId", e.reason))?,
            idempotency_key: self.idempotency_key,
            origin: Origin::Rest,
        };
        message.validate()?;
        Ok(message)
    }
}

type ConversationPath = AppPath<(String, String)>;
type MessagePath = AppPath<(String, String, String)>;

pub async fn post_messages(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): ConversationPath,
    AppJson(items): AppJson<Vec<SendItem>>,
) -> Result<Response, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    if items.is_empty() || items.len() > MAX_MESSAGES_PER_SEND {
        return Err(Rejection::invalid(
            "",
            format!("send 1 to {MAX_MESSAGES_PER_SEND} messages per request, not {}", items.len()),
        )
        .into());
    }
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| item.into_new_message().map_err(|error| error.at(&format!("[{index}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let appended = state.store.append_messages(&app, &conversation_id, messages, now_millis()).await?;
    let ids: Vec<_> = appended.ids.iter().map(|id| MessageIdJson { id: id.as_str() }).collect();
    Ok(Json(ids).into_response())
}

pub async fn get_message(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, message_id)): MessagePath,
) -> Result<Response, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let message_id = MessageId::parse(&message_id)?;
    let message = state
        .store
        .message(&app, &conversation_id, &message_id)
        .await?
        .ok_or(Rejection::MessageNotFound(message_id))?;
    Ok(Json(MessageJson::new(&message, &app, &state.links)).into_response())
}

/// Newest first; `startingAfter` is a message id and continues into the past.
pub async fn list_messages(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): ConversationPath,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let messages = state.store.messages(&app, &conversation_id, page(&params)?).await?;
    let data: Vec<_> = messages.iter().map(|message| MessageJson::new(message, &app, &state.links)).collect();
    Ok(Json(ListJson { data }).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditBody {
    text: Option<String>,
    custom: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    mark_edited: bool,
}

pub async fn put_message(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, message_id)): MessagePath,
    AppJson(body): AppJson<EditBody>,
) -> Result<Empty, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let message_id = MessageId::parse(&message_id)?;
    let edit = MessageEdit {
        text: body.text.map(|text| (text, Links::Allowed)),
        custom: body.custom,
        clear_custom: false,
        mark_edited: body.mark_edited,
    };
    edit.validate()?;
    state.store.edit_message(&app, &conversation_id, &message_id, edit, &Actor::App, now_millis()).await?;
    Ok(Empty)
}

pub async fn delete_message(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id, message_id)): MessagePath,
) -> Result<Empty, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    let message_id = MessageId::parse(&message_id)?;
    state.store.delete_message(&app, &conversation_id, &message_id, &Actor::App).await?;
    Ok(Empty)
}

pub async fn delete_all_messages(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): ConversationPath,
) -> Result<Empty, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    state.store.delete_all_messages(&app, &conversation_id).await?;
    Ok(Empty)
}
