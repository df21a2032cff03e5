//! A session's bounded queue of shared encoded events, and the token that tells the session it fell behind.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SharedEvent;

#[derive(Debug, PartialEq, Eq)]
pub enum OutboxError {
    /// The session is not keeping up.
    Full,
    /// The session has ended.
    Closed,
}

/// The sending side, held by the hub.
#[derive(Clone)]
pub struct Outbox {
    events_tx: mpsc::Sender<SharedEvent>,
    slow: CancellationToken,
}

/// Creates an outbox holding at most `capacity` events; past that the session is cut off as slow.
pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<SharedEvent>) {
    let (events_tx, events_rx) = mpsc::channel(capacity);
    (Outbox { events_tx, slow: CancellationToken::new() }, events_rx)
}

impl Outbox {
    /// Never waits.
    pub fn try_send(&self, event: SharedEvent) -> Result<(), OutboxError> {
        self.events_tx.try_send(event).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => OutboxError::Full,
            mpsc::error::TrySendError::Closed(_) => OutboxError::Closed,
        })
    }

    pub fn cancel_slow(&self) {
        self.slow.cancel();
    }

    /// Cancelled when the hub found this outbox full; the session watches it and closes.
    pub fn cancelled_token(&self) -> CancellationToken {
        self.slow.clone()
    }
}
