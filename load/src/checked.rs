//! Full clients beside the lean subscribers: `natter-client` sessions, one per conversation up to
//! `--checked-clients`, whose windows are compared with the store at the end of a run. The lean subscribers count
//! what arrives without parsing it (they measure the gateway, not a client); these check what a real client ends
//! up showing after applying every frame by `seq`, holes and resumes included.

use std::time::Duration;

use anyhow::Context;
use natter_client::{ClientConfig, MessageSubscription, Session, SubscriptionState};
use serde_json::Value;

use crate::gateway::Gateway;

/// How long a window may take to show the store's newest messages once publishing is over.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Checked {
    clients: Vec<(Session, MessageSubscription, usize)>,
}

/// Connects `n` clients: client `i` is user `i` and subscribes to its conversation, `i % conversations`.
pub async fn connect(gateway: &Gateway, n: usize, conversations: usize) -> anyhow::Result<Checked> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let user = gateway.user(i);
        let config = ClientConfig {
            url: gateway.ws_base(i),
            app_id: gateway.target.app.clone(),
            token: gateway.token(&user),
            observer: None,
        };
        let session = Session::connect(config).await.with_context(|| format!("checked client {user}"))?;
        let conversation = i % conversations.max(1);
        let subscription = session.conversation(&gateway.conversation(conversation)).subscribe_messages().await?;
        subscription.connected().await.map_err(|state| anyhow::anyhow!("checked client {user}: {state:?}"))?;
        clients.push((session, subscription, conversation));
    }
    Ok(Checked { clients })
}

impl Checked {
    /// How many clients' windows do not show their conversation's newest messages as the store has them.
    pub async fn mismatches(self, gateway: &Gateway) -> anyhow::Result<u64> {
        let mut mismatches = 0;
        for (session, subscription, conversation) in self.clients {
            let newest = gateway.newest_message_ids(conversation, 30).await?;
            let shows = |state: &SubscriptionState| match state {
                SubscriptionState::Active { latest_snapshot: Some(messages), .. } => messages
                    .iter()
                    .take(newest.len())
                    .map(|message| message.id.as_str())
                    .eq(newest.iter().map(String::as_str)),
                _ => false,
            };
            if tokio::time::timeout(SETTLE_TIMEOUT, subscription.wait_for(shows)).await.is_err() {
                eprintln!("checked client of conversation {conversation} does not show the store's newest messages");
                mismatches += 1;
            }
            session.close().await;
        }
        Ok(mismatches)
    }
}

impl Gateway {
    /// The ids of a conversation's newest messages, newest first, as REST reads them.
    pub async fn newest_message_ids(&self, conversation: usize, limit: usize) -> anyhow::Result<Vec<String>> {
        let path = format!("/conversations/{}/messages?limit={limit}", self.conversation(conversation));
        let reply: Value = self.get(&path).await?;
        Ok(reply["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
    }
}
