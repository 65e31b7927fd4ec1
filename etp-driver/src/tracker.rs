//! Counting running connections and waiting until none is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::oneshot;

/// How many connection tasks run, and who waits for the count to reach zero.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    active: AtomicUsize,
    waiters: Mutex<Vec<oneshot::Sender<()>>>,
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
        let receiver = {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if self.active() == 0 {
                return;
            }
            let (sender, receiver) = oneshot::channel();
            waiters.push(sender);
            receiver
        };
        let _ = receiver.await;
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // The lock orders this decrement against `idle`'s check-then-register.
        let mut waiters = self
            .0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}
