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
    frames_tx: mpsc::Sender<SharedEvent>,
    slow: CancellationToken,
}

/// Creates an outbox holding at most `capacity` events; past that the session is cut off as slow.
pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<SharedEvent>) {
    let (frames_tx, frames_rx) = mpsc::channel(capacity);
    (Outbox { frames_tx, slow: CancellationToken::new() }, frames_rx)
}

impl Outbox {
    /// Never waits.
    pub fn try_send(&self, frame: SharedEvent) -> Result<(), OutboxError> {
        self.frames_tx.try_send(frame).map_err(|error| match error {
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
