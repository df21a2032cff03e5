//! A broker that misbehaves the way a real one may under failure: it delivers some events late (so that later
//! ones overtake them) and some twice, from its own task. It never loses one, so every event reaches a session
//! eventually, but sessions must tell holes from gaps and repair them from the event log. For tests only: it is
//! reachable through `Config`, not the command line.

use std::{sync::Mutex, time::Duration};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Broker, HubKey, Inbound, SharedEvent};

/// How badly it behaves.
#[derive(Clone, Debug)]
pub struct Unreliability {
    /// Seeds the choices, so that a failing run can be repeated.
    pub seed: u64,
    /// The share of events delivered late, from 0 to 1.
    pub late: f64,
    /// The share of events delivered twice (once on time, once late).
    pub twice: f64,
    /// Late events wait up to this long.
    pub max_delay: Duration,
}

pub struct UnreliableBroker {
    inbound: Inbound,
    unreliability: Unreliability,
    /// A std mutex: held only to draw the next choices.
    rng: Mutex<StdRng>,
    /// Publishing happens on the store's writer thread, outside the runtime: late deliveries are spawned here.
    runtime: tokio::runtime::Handle,
}

impl UnreliableBroker {
    /// Must be called inside the tokio runtime.
    pub fn new(inbound: Inbound, unreliability: Unreliability) -> Self {
        Self {
            inbound,
            rng: Mutex::new(StdRng::seed_from_u64(unreliability.seed)),
            unreliability,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn later(&self, key: &HubKey, event: SharedEvent, delay: Duration) {
        let (inbound, key) = (self.inbound.clone(), key.clone());
        // Bounded by the test's own rate: each late event is one short-lived timer task.
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            inbound.deliver(&key, event);
        });
    }
}

impl Broker for UnreliableBroker {
    fn publish(&self, key: &HubKey, event: SharedEvent) {
        let (late, twice, delay) = {
            let mut rng = self.rng.lock().expect("rng lock poisoned");
            let delay = self.unreliability.max_delay.mul_f64(rng.random::<f64>());
            (rng.random::<f64>() < self.unreliability.late, rng.random::<f64>() < self.unreliability.twice, delay)
        };
        if late {
            self.later(key, event, delay);
            return;
        }
        if twice {
            self.later(key, SharedEvent::clone(&event), delay);
        }
        self.inbound.deliver(key, event);
    }

    fn watch(&self, _key: &HubKey) {}

    fn unwatch(&self, _key: &HubKey) {}
}
