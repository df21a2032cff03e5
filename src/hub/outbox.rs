//! A session's bounded queue of shared encoded events, and the mark that tells the session it fell behind.
//!
//! Written here rather than taken from `tokio::sync::mpsc`: every subscribed connection holds one, and a tokio
//! channel with a cancellation token beside it takes about 900 bytes before the first event; this takes under 100
//! and allocates its slots as events arrive. One lock guards the queue; neither side holds it while it wakes the
//! other or hands an event on.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use super::SharedEvent;

#[derive(Debug, PartialEq, Eq)]
pub enum OutboxError {
    /// The session is not keeping up.
    Full,
    /// The session has ended.
    Closed,
}

/// The sending side, held by the hub (and by the session, to learn that it was cut off while it writes).
#[derive(Clone)]
pub struct Outbox(Arc<Shared>);

/// The receiving side, held by the session's loop. Dropping it closes the outbox.
pub struct Events(Arc<Shared>);

/// What the session takes from its outbox.
#[derive(Debug)]
pub enum Next {
    Event(SharedEvent),
    /// The hub found the outbox full: the session closes, and its client resubscribes.
    Slow,
}

struct Shared {
    capacity: usize,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<SharedEvent>,
    /// The session's task, while it waits for an event or for the slow mark. One task polls both, so one slot
    /// serves.
    waker: Option<Waker>,
    slow: bool,
    closed: bool,
}

impl Queue {
    fn register(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|held| held.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }
}

/// Creates an outbox holding at most `capacity` events; past that the session is cut off as slow.
pub fn channel(capacity: usize) -> (Outbox, Events) {
    let shared = Arc::new(Shared { capacity, queue: Mutex::new(Queue::default()) });
    (Outbox(Arc::clone(&shared)), Events(shared))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outbox {
    /// Never waits.
    pub fn try_send(&self, event: SharedEvent) -> Result<(), OutboxError> {
        let waker = {
            let mut queue = self.0.lock();
            if queue.closed {
                return Err(OutboxError::Closed);
            }
            if queue.slow || queue.events.len() >= self.0.capacity {
                return Err(OutboxError::Full);
            }
            queue.events.push_back(event);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Marks the session as cut off: it takes no more events, and the ones queued are dropped.
    pub fn cancel_slow(&self) {
        let (waker, dropped) = {
            let mut queue = self.0.lock();
            queue.slow = true;
            (queue.waker.take(), std::mem::take(&mut queue.events))
        };
        drop(dropped);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub fn is_slow(&self) -> bool {
        self.0.lock().slow
    }

    /// Resolves once the hub has cut the session off. Polled only by the session's own task, as `Events` is.
    pub fn slowed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            let mut queue = self.0.lock();
            if queue.slow {
                return Poll::Ready(());
            }
            queue.register(cx.waker());
            Poll::Pending
        })
    }
}

impl Events {
    /// Takes from the task's cooperative budget, as tokio's own channels do: a session whose outbox never empties
    /// still yields to the others now and then.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        let budget = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut queue = self.0.lock();
        if queue.slow {
            budget.made_progress();
            return Poll::Ready(Next::Slow);
        }
        match queue.events.pop_front() {
            Some(event) => {
                budget.made_progress();
                Poll::Ready(Next::Event(event))
            }
            None => {
                queue.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// The next event, or the slow mark (which comes first: the queued events are dropped with it).
    pub fn recv(&mut self) -> impl Future<Output = Next> + '_ {
        std::future::poll_fn(|cx| self.poll_next(cx))
    }

    /// An event already queued, if the session has not been cut off.
    pub fn try_recv(&mut self) -> Option<SharedEvent> {
        let mut queue = self.0.lock();
        if queue.slow {
            return None;
        }
        queue.events.pop_front()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let dropped = {
            let mut queue = self.0.lock();
            queue.closed = true;
            queue.waker = None;
            std::mem::take(&mut queue.events)
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{
        domain::ids::{AppId, ConversationId, Seq},
        hub::{EncodedEvent, Stream},
    };

    fn event() -> SharedEvent {
        Arc::new(EncodedEvent {
            app_id: AppId::parse("app").unwrap(),
            stream: Stream::Conversation(ConversationId::parse("one").unwrap()),
            seq: Seq(1),
            membership: None,
            frame: tokio_tungstenite::tungstenite::Utf8Bytes::from_static("{}"),
        })
    }

    /// Counts wakes, to check that a waiting receiver is woken exactly when something arrives.
    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn events_come_out_in_order_and_a_full_outbox_refuses_more() {
        let (outbox, mut events) = channel(2);
        let (first, second) = (event(), event());
        outbox.try_send(Arc::clone(&first)).unwrap();
        outbox.try_send(Arc::clone(&second)).unwrap();
        assert_eq!(outbox.try_send(event()), Err(OutboxError::Full));
        assert!(Arc::ptr_eq(&events.try_recv().unwrap(), &first));
        outbox.try_send(event()).expect("a slot was freed");
        assert!(Arc::ptr_eq(&events.try_recv().unwrap(), &second));
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_an_event_and_by_the_slow_mark() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let (outbox, mut events) = channel(4);
        assert!(events.poll_next(&mut cx).is_pending());
        outbox.try_send(event()).unwrap();
        outbox.try_send(event()).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake for the receiver that waited");
        assert!(matches!(events.poll_next(&mut cx), Poll::Ready(Next::Event(_))));
        outbox.cancel_slow();
        assert!(matches!(events.poll_next(&mut cx), Poll::Ready(Next::Slow)), "the slow mark comes first");
        assert!(events.try_recv().is_none(), "queued events are dropped with it");
        assert_eq!(outbox.try_send(event()), Err(OutboxError::Full));
        assert!(outbox.is_slow());
    }

    #[test]
    fn slowed_resolves_once_the_session_is_cut_off() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let (outbox, _events) = channel(1);
        let shell_side = outbox.clone();
        let mut slowed = std::pin::pin!(shell_side.slowed());
        assert!(slowed.as_mut().poll(&mut cx).is_pending());
        outbox.cancel_slow();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(slowed.poll(&mut cx).is_ready());
    }

    #[test]
    fn a_dropped_receiver_closes_the_outbox() {
        let (outbox, events) = channel(4);
        outbox.try_send(event()).unwrap();
        drop(events);
        assert_eq!(outbox.try_send(event()), Err(OutboxError::Closed));
    }
}
