//! The client's snapshot types, read from the wire.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSnapshot {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    pub photo_url: Option<String>,
    pub role: String,
    pub locale: Option<String>,
    pub welcome_message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionSnapshot {
    pub emoji: String,
    pub count: u64,
    pub current_user_reacted: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferencedMessageSnapshot {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sender: Option<UserSnapshot>,
    pub content: Vec<Value>,
    pub plaintext: String,
    pub custom: BTreeMap<String, String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub origin: String,
    pub referenced_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSnapshot {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The sequence number of the event that created the message.
    pub seq: i64,
    pub sender: Option<UserSnapshot>,
    pub content: Vec<Value>,
    pub plaintext: String,
    pub custom: BTreeMap<String, String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub origin: String,
    pub referenced_message_id: Option<String>,
    pub referenced_message: Option<ReferencedMessageSnapshot>,
    #[serde(default)]
    pub reactions: Vec<ReactionSnapshot>,
}

impl MessageSnapshot {
    /// The same message as a reply's target shows it.
    pub fn as_referenced(&self) -> ReferencedMessageSnapshot {
        ReferencedMessageSnapshot {
            id: self.id.clone(),
            kind: self.kind.clone(),
            sender: self.sender.clone(),
            content: self.content.clone(),
            plaintext: self.plaintext.clone(),
            custom: self.custom.clone(),
            created_at: self.created_at,
            edited_at: self.edited_at,
            origin: self.origin.clone(),
            referenced_message_id: self.referenced_message_id.clone(),
        }
    }
}

/// Reads `sub` from a JWT without verifying it: the server verifies; the client only needs to know who it is.
pub fn token_subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}
