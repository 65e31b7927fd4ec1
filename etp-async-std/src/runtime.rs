//! The async-std runtime for etp-driver.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Runs etp connections on async-std's executor (`async_std::task::spawn`) with
/// async-io timers. async-std and smol share the async-io reactor, so this runtime
/// works under smol too.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdRuntime;

/// A timer that completes at its deadline.
#[derive(Debug)]
pub struct Sleep(async_io::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl etp_driver::Runtime for AsyncStdRuntime {
    type Sleep = Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        async_std::task::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep(async_io::Timer::at(deadline))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}
