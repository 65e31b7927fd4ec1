//! Bounded waits, recording channels, a gate, and blocking work on threads: all
//! independent of the runtime under test.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use futures_util::future::{Either, select};

/// The longest any single wait may take before the test fails.
pub const GUARD: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test if it takes longer than [`GUARD`].
///
/// The guard's timer is async-io's (it runs on its own thread when nobody drives the
/// reactor), not the runtime's under test: a wedged runtime still fails the test.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(GUARD, what, future).await
}

pub(crate) async fn within_for<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> T {
    let future = std::pin::pin!(future);
    match select(future, async_io::Timer::after(limit)).await {
        Either::Left((value, _)) => value,
        Either::Right(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` until it holds, failing the test after [`GUARD`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Runs blocking `work` on a new thread and awaits its result (a panic in it panics
/// here). The work bounds its own waits (socket timeouts of [`GUARD`]); the await is
/// bounded as well, at three times that.
pub async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("raw peer: {what}"))
        .spawn(move || {
            let _ = sender.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        })
        .expect("spawn a thread");
    match within_for(GUARD * 3, what, receiver).await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(oneshot::Canceled) => panic!("the thread doing {what} vanished"),
    }
}

/// Yields to the executor once.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// The sending end of a recording channel.
#[derive(Debug)]
pub struct Tx<T>(mpsc::UnboundedSender<T>);

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Tx<T> {
    /// Records `value`; false if the receiver is gone.
    pub fn send(&self, value: T) -> bool {
        self.0.unbounded_send(value).is_ok()
    }
}

/// The receiving end of a recording channel.
#[derive(Debug)]
pub struct Rx<T>(mpsc::UnboundedReceiver<T>);

impl<T> Rx<T> {
    /// The next recorded value, failing the test after [`GUARD`].
    pub async fn next(&mut self) -> T {
        within("a recorded value", self.0.next())
            .await
            .expect("recording channel closed")
    }

    /// A value recorded already, if any.
    pub fn try_next(&mut self) -> Option<T> {
        self.0.try_recv().ok()
    }
}

/// A recording channel (unbounded, usable from any runtime and any thread).
pub fn channel<T>() -> (Tx<T>, Rx<T>) {
    let (sender, receiver) = mpsc::unbounded();
    (Tx(sender), Rx(receiver))
}

/// A gate that lets one waiter through per permit given (a semaphore whose permits are
/// used up, or a notification that is remembered until someone waits).
#[derive(Clone, Debug)]
pub struct Gate {
    permits: mpsc::UnboundedSender<()>,
    waiting: Arc<futures_util::lock::Mutex<mpsc::UnboundedReceiver<()>>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        let (permits, waiting) = mpsc::unbounded();
        Self {
            permits,
            waiting: Arc::new(futures_util::lock::Mutex::new(waiting)),
        }
    }

    /// Lets `n` more waiters through (now or later).
    pub fn open(&self, n: usize) {
        for _ in 0..n {
            let _ = self.permits.unbounded_send(());
        }
    }

    /// Waits for a permit (unbounded: a handler may wait here until cancelled).
    pub async fn pass(&self) {
        let mut waiting = self.waiting.lock().await;
        let _ = waiting.next().await;
    }
}
