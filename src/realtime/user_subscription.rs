//! A subscription to one user's public fields (`subscribeUser`), without I/O. Unlike a message window it needs no
//! replay: every frame carries the user's whole state and the `seq` of the user's stream it is as of, so the
//! newest frame wins and a skipped `seq` loses nothing.
//!
//! As for windows, the session watches first and reads second: a change committed while the read is in flight is
//! held (the newest only) and sent after the first state if the read did not already see it. The read takes the
//! `seq` before the user, so the state it returns is as of that `seq` or newer (a change in between, whose own
//! frame then follows, harmlessly), never older.

use std::collections::VecDeque;

use super::{
    error::RealtimeError,
    frames::RequestId,
    output::{FetchId, Output, Watched},
};
use crate::{
    domain::{
        ids::{Seq, UserId},
        user::User,
    },
    hub::SharedEvent,
};

pub struct UserSubscription {
    user_id: UserId,
    /// The `subscribeUser` request and the read it waits for, until the first state is sent.
    pending: Option<(RequestId, FetchId)>,
    /// The `seq` of the state the client has.
    seq: Option<Seq>,
    /// The newest change that came during the first read.
    held: Option<SharedEvent>,
}

impl UserSubscription {
    /// Watches the user and reads their state.
    pub fn start(outputs: &mut VecDeque<Output>, id: RequestId, user_id: UserId, fetch: FetchId) -> Self {
        outputs.push_back(Output::Watch(Watched::Profile(user_id.clone())));
        outputs.push_back(Output::FetchUser { fetch, user_id: user_id.clone() });
        Self { user_id, pending: Some((id, fetch)), seq: None, held: None }
    }

    pub fn waits_for(&self, fetch: FetchId) -> bool {
        self.pending.as_ref().is_some_and(|(_, waiting)| *waiting == fetch)
    }

    /// The first read came back.
    pub fn handle_user(&mut self, outputs: &mut VecDeque<Output>, seq: Seq, user: Option<User>) {
        let Some((id, _)) = self.pending.take() else { return };
        outputs.push_back(Output::UserState { user_id: self.user_id.clone(), seq, user: user.map(Box::new) });
        self.seq = Some(seq);
        if let Some(held) = self.held.take().filter(|held| held.seq > seq) {
            self.seq = Some(held.seq);
            outputs.push_back(Output::Forward(held));
        }
        outputs.push_back(Output::Ok { id });
    }

    /// A change of the user from the hub.
    pub fn handle_event(&mut self, outputs: &mut VecDeque<Output>, event: &SharedEvent) {
        if self.pending.is_some() {
            if self.held.as_ref().is_none_or(|held| held.seq < event.seq) {
                self.held = Some(SharedEvent::clone(event));
            }
            return;
        }
        if self.seq.is_none_or(|seq| seq < event.seq) {
            self.seq = Some(event.seq);
            outputs.push_back(Output::Forward(SharedEvent::clone(event)));
        }
    }

    /// The first read failed: the subscribe is answered with the error, and the subscription is gone.
    pub fn handle_fetch_failed(self, outputs: &mut VecDeque<Output>) {
        outputs.push_back(Output::Unwatch(Watched::Profile(self.user_id)));
        if let Some((id, _)) = self.pending {
            outputs.push_back(Output::Error { id, error: RealtimeError::StoreUnavailable });
        }
    }

    pub fn unsubscribe(self, outputs: &mut VecDeque<Output>) {
        outputs.push_back(Output::Unwatch(Watched::Profile(self.user_id)));
        if let Some((id, _)) = self.pending {
            outputs.push_back(Output::Error { id, error: RealtimeError::Unsubscribed });
        }
    }
}
