//! The tokio runtime for etp-driver.

use std::future::Future;
use std::time::Instant;

/// Runs etp connections on the current tokio runtime (`tokio::spawn`, tokio timers).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

impl etp_driver::Runtime for TokioRuntime {
    type Sleep = tokio::time::Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that paused-time tests move connection timers too.
        tokio::time::Instant::now().into_std()
    }
}
