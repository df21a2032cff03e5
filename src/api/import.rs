//! `POST /import/conversations/{cid}/messages`: history moved in from elsewhere (TalkJS "Importing messages"):
//! user messages with the time they were sent and who has read them, `origin: "import"`, not de-duplicated, no
//! webhooks; open windows do not show them live (`proto/REST.md` says where they go).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::Deserialize;

use super::auth::AuthenticatedApp;
use crate::http::{
    error::ApiError,
    extract::{AppJson, AppPath},
};
use crate::{
    app::{now_millis, AppState},
    domain::{
        content::Links,
        ids::{ConversationId, UserId},
        limits::MAX_MESSAGES_PER_SEND,
        message::{ImportedMessage, MessageBody, MessageType, NewMessage, Origin},
        Custom, Millis, Rejection, ValidationError,
    },
    wire::MessageIdJson,
};

/// One imported message: every field but `attachmentToken` and `custom` is required.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportItem {
    #[serde(rename = "type")]
    kind: Option<String>,
    sender: Option<String>,
    text: Option<String>,
    timestamp: Option<Millis>,
    read_by: Option<Vec<String>>,
    attachment_token: Option<String>,
    #[serde(default)]
    custom: Custom,
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ValidationError> {
    value.ok_or_else(|| ValidationError::new(field, "is required"))
}

impl ImportItem {
    fn into_imported(self) -> Result<ImportedMessage, ValidationError> {
        match required(self.kind, "type")?.as_str() {
            "UserMessage" => {}
            other => {
                return Err(ValidationError::new(
                    "type",
                    format!("must be \"UserMessage\" (imports are user messages), not {other:?}"),
                ))
            }
        }
        let sender = UserId::parse(&required(self.sender, "sender")?).map_err(|e| e.at("sender"))?;
        let text = required(self.text, "text")?;
        let timestamp = required(self.timestamp, "timestamp")?;
        let read_by = required(self.read_by, "readBy")?
            .iter()
            .enumerate()
            .map(|(index, user)| UserId::parse(user).map_err(|e| e.at(&format!("readBy[{index}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let body = match self.attachment_token {
            Some(token) if text.is_empty() => MessageBody::Attachment { token },
            Some(_) => {
                return Err(ValidationError::new(
                    "text",
                    "must be empty when attachmentToken is given: the message is the file",
                ))
            }
            None if text.is_empty() => return Err(ValidationError::new("text", "must not be empty")),
            None => MessageBody::Text(text),
        };
        let message = NewMessage {
            kind: MessageType::UserMessage,
            sender_id: Some(sender),
            body,
            links: Links::Allowed,
            custom: self.custom,
            referenced_message_id: None,
            idempotency_key: None,
            origin: Origin::Import,
        };
        message.validate()?;
        Ok(ImportedMessage { message, timestamp, read_by })
    }
}

pub async fn post_import_messages(
    State(state): State<AppState>,
    Extension(AuthenticatedApp(app)): Extension<AuthenticatedApp>,
    AppPath((_, conversation_id)): AppPath<(String, String)>,
    AppJson(items): AppJson<Vec<ImportItem>>,
) -> Result<Response, ApiError> {
    let conversation_id = ConversationId::parse(&conversation_id)?;
    if items.is_empty() || items.len() > MAX_MESSAGES_PER_SEND {
        return Err(Rejection::invalid(
            "",
            format!("import 1 to {MAX_MESSAGES_PER_SEND} messages per request, not {}", items.len()),
        )
        .into());
    }
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| item.into_imported().map_err(|error| error.at(&format!("[{index}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let imported = state.store.import_messages(&app, &conversation_id, messages, now_millis()).await?;
    let ids: Vec<_> = imported.ids.iter().map(|id| MessageIdJson { id: id.as_str() }).collect();
    Ok(Json(ids).into_response())
}
