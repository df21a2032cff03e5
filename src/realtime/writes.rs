//! Writes a user makes over the socket, as the Data API does: send, edit, delete, delete fields, reactions,
//! mark as read. The store enforces the participation rules inside its transaction; these functions turn frames
//! into domain requests and publish what was committed.

use crate::{
    app::{now_millis, AppState},
    domain::{
        content::Links,
        ids::{AppId, ConversationId, MessageId, UserId},
        message::{MessageBody, MessageEdit, MessageType, NewMessage, Origin},
        reaction::Emoji,
        Actor, CustomPatch, Rejection, ValidationError,
    },
    http::error::ApiError,
    hub::HubKey,
    realtime::frames::{self, ClientFrame},
    wire::content::parse_send_content,
};

/// What a successful write reports back.
#[derive(Debug, Default)]
pub struct WriteResult {
    pub message_id: Option<MessageId>,
}

/// Runs one write frame for `user`. Frames that are not writes are a caller error.
pub async fn perform(
    state: &AppState,
    app: &AppId,
    user: &UserId,
    frame: ClientFrame,
) -> Result<WriteResult, ApiError> {
    let actor = Actor::User(user.clone());
    match frame {
        ClientFrame::SendMessage {
            conversation_id,
            text,
            content,
            custom,
            referenced_message_id,
            idempotency_key,
            ..
        } => {
            let conversation_id = ConversationId::parse(&conversation_id)?;
            let body = match (text, content) {
                (Some(text), None) if !text.is_empty() => MessageBody::Text(text),
                (None, Some(content)) => parse_send_content(&content)?.into_body()?,
                _ => return Err(ValidationError::new("", "send exactly one of a non-empty text or content").into()),
            };
            let referenced_message_id = referenced_message_id
                .as_deref()
                .map(MessageId::parse)
                .transpose()
                .map_err(|error| ValidationError::new("referencedMessageId", error.reason))?;
            let message = NewMessage {
                kind: MessageType::UserMessage,
                sender_id: Some(user.clone()),
                body,
                links: Links::Refused,
                custom,
                referenced_message_id,
                idempotency_key,
                origin: Origin::Rest,
            };
            message.validate()?;
            let appended = state.store.append_messages(app, &conversation_id, vec![message], now_millis()).await?;
            Ok(WriteResult { message_id: appended.ids.into_iter().next() })
        }
        ClientFrame::EditMessage { conversation_id, message_id, text, content, custom, .. } => {
            let text = match (text, content) {
                (Some(text), None) => Some(text),
                (None, Some(content)) => match parse_send_content(&content)?.into_body()? {
                    MessageBody::Text(text) => Some(text),
                    _ => return Err(ValidationError::new("content", "only text content can be edited").into()),
                },
                (None, None) => None,
                (Some(_), Some(_)) => return Err(ValidationError::new("", "edit either text or content").into()),
            };
            if text.as_deref() == Some("") {
                return Err(ValidationError::new("text", "must not be empty").into());
            }
            // The Data API marks client edits as edited (reference §5 #11).
            let edit = MessageEdit {
                text: text.map(|text| (text, Links::Refused)),
                custom,
                clear_custom: false,
                mark_edited: true,
            };
            edit_message(state, app, &conversation_id, &message_id, edit, &actor).await
        }
        ClientFrame::DeleteMessageFields { conversation_id, message_id, fields, .. } => {
            let mut edit = MessageEdit { text: None, custom: None, clear_custom: false, mark_edited: false };
            let mut patch = CustomPatch::new();
            for field in fields {
                match field.strip_prefix("custom.") {
                    Some(key) if !key.is_empty() => {
                        patch.insert(key.to_owned(), None);
                    }
                    _ if field == "custom" => edit.clear_custom = true,
                    _ => {
                        return Err(ValidationError::new(
                            "fields",
                            format!("{field:?} cannot be deleted (use \"custom\" or \"custom.<key>\")"),
                        )
                        .into())
                    }
                }
            }
            edit.custom = Some(patch);
            edit_message(state, app, &conversation_id, &message_id, edit, &actor).await
        }
        ClientFrame::DeleteMessage { conversation_id, message_id, .. } => {
            let conversation_id = ConversationId::parse(&conversation_id)?;
            let message_id = MessageId::parse(&message_id)?;
            state.store.delete_message(app, &conversation_id, &message_id, &actor).await?;
            Ok(WriteResult::default())
        }
        ClientFrame::AddReaction { conversation_id, message_id, emoji, .. } => {
            let (conversation_id, message_id, emoji) = reaction_ids(&conversation_id, &message_id, &emoji)?;
            state.store.add_reaction(app, &conversation_id, &message_id, &emoji, user, now_millis()).await?;
            Ok(WriteResult::default())
        }
        ClientFrame::RemoveReaction { conversation_id, message_id, emoji, .. } => {
            let (conversation_id, message_id, emoji) = reaction_ids(&conversation_id, &message_id, &emoji)?;
            state.store.remove_reaction(app, &conversation_id, &message_id, &emoji, user).await?;
            Ok(WriteResult::default())
        }
        ClientFrame::MarkAsRead { conversation_id, .. } => {
            let conversation_id = ConversationId::parse(&conversation_id)?;
            state.store.set_read_state(app, &conversation_id, user, Some(false)).await.map_err(
                |error| match error {
                    crate::store::StoreError::Rejected(Rejection::ParticipantNotFound { user, .. }) => {
                        ApiError::Rejected(Rejection::NotAParticipant { field: "conversationId".into(), user })
                    }
                    other => other.into(),
                },
            )?;
            Ok(WriteResult::default())
        }
        ClientFrame::MarkAsTyping { conversation_id, .. } => {
            // Typing is a signal, not a write: nothing is logged, it lasts until each subscriber's timeout.
            let conversation_id = ConversationId::parse(&conversation_id)?;
            let Some(typist) = state.store.participant_user(app, &conversation_id, user).await? else {
                let field = "conversationId".into();
                return Err(ApiError::Rejected(Rejection::NotAParticipant { field, user: user.clone() }));
            };
            let key = HubKey::Typing { app_id: app.clone(), conversation_id: conversation_id.clone() };
            let signal = frames::typing_signal(app, &conversation_id, user, Some(&typist));
            state.node.publish(&key, std::sync::Arc::new(signal));
            Ok(WriteResult::default())
        }
        ClientFrame::SubscribeMessages { .. }
        | ClientFrame::LoadMore { .. }
        | ClientFrame::Unsubscribe { .. }
        | ClientFrame::UpdateToken { .. }
        | ClientFrame::SubscribeUser { .. }
        | ClientFrame::UnsubscribeUser { .. }
        | ClientFrame::SubscribeConversation { .. }
        | ClientFrame::UnsubscribeConversation { .. }
        | ClientFrame::SubscribeParticipants { .. }
        | ClientFrame::LoadMoreParticipants { .. }
        | ClientFrame::UnsubscribeParticipants { .. }
        | ClientFrame::SubscribeTyping { .. }
        | ClientFrame::UnsubscribeTyping { .. }
        | ClientFrame::SubscribeOnline { .. }
        | ClientFrame::UnsubscribeOnline { .. }
        | ClientFrame::SubscribeConversations { .. }
        | ClientFrame::LoadMoreConversations { .. }
        | ClientFrame::UnsubscribeConversations { .. } => Err(ValidationError::new("type", "not a write").into()),
    }
}

async fn edit_message(
    state: &AppState,
    app: &AppId,
    conversation_id: &str,
    message_id: &str,
    edit: MessageEdit,
    actor: &Actor,
) -> Result<WriteResult, ApiError> {
    let conversation_id = ConversationId::parse(conversation_id)?;
    let message_id = MessageId::parse(message_id)?;
    edit.validate()?;
    state.store.edit_message(app, &conversation_id, &message_id, edit, actor, now_millis()).await?;
    Ok(WriteResult::default())
}

fn reaction_ids(
    conversation_id: &str,
    message_id: &str,
    emoji: &str,
) -> Result<(ConversationId, MessageId, Emoji), ApiError> {
    Ok((ConversationId::parse(conversation_id)?, MessageId::parse(message_id)?, Emoji::parse(emoji)?))
}
