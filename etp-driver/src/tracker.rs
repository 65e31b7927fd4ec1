//! Waiting for a condition on shared state, and counting running connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::oneshot;

/// Tasks waiting for a condition to hold. The condition is checked, and changed, under
/// the same lock, so a waiter can neither miss the change nor register after it.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<Vec<oneshot::Sender<()>>>);

impl Waiters {
    /// Resolves once `holds()` is true (at once if it already is).
    pub(crate) async fn wait_until(&self, holds: impl Fn() -> bool) {
        let receiver = {
            let mut waiters = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if holds() {
                return;
            }
            let (sender, receiver) = oneshot::channel();
            waiters.push(sender);
            receiver
        };
        let _ = receiver.await;
    }

    /// Runs `change` under the lock and wakes every waiter if it says the condition now
    /// holds.
    pub(crate) fn change(&self, change: impl FnOnce() -> bool) {
        let mut waiters = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if change() {
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// How many connection tasks run, and who waits for the count to reach zero.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    active: AtomicUsize,
    idle: Waiters,
}

/// One running connection; dropping it counts the connection out.
pub(crate) struct Active(Arc<Tracker>);

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Resolves once no connection runs.
    pub(crate) async fn idle(&self) {
        self.idle.wait_until(|| self.active() == 0).await;
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let tracker = &self.0;
        tracker
            .idle
            .change(|| tracker.active.fetch_sub(1, Ordering::AcqRel) == 1);
    }
}
