//! What the driver needs from an async runtime: tasks and timers.

use std::future::Future;
use std::time::Instant;

/// An async runtime as the driver sees it: spawn a task, sleep until an instant, read
/// the clock. The adapters implement it for tokio and async-std; tests implement it with
/// a manual clock.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future returned by [`sleep_until`](Self::sleep_until).
    type Sleep: Future<Output = ()> + Send + 'static;

    /// Runs `future` to completion in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A future that completes at `deadline` (at once when it has passed).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// The current time, on the clock `sleep_until` uses.
    fn now(&self) -> Instant;
}
