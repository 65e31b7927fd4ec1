//! What differs between the runtimes under test, and spawning on them.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use etp_driver::{Client, Conn, DialError, Runtime, Server};
use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::{Either, select};

/// A runtime the behaviour suite runs on: an etp [`Runtime`] plus what a test needs
/// from the adapter (run the test, serve a listener, dial).
pub trait TestRuntime: Runtime + Default {
    /// The runtime's name, for messages.
    const NAME: &'static str;

    /// Runs a test's future to completion on this runtime (a fresh runtime per call
    /// where the runtime has instances).
    fn block_on<F: Future>(future: F) -> F::Output;

    /// Serves `server` on an already bound std listener with the adapter's
    /// `ServerExt::serve`, in a task of this runtime; the task ends with `serve`
    /// (once shutdown has begun). Call it from inside [`block_on`](Self::block_on).
    fn serve(server: &Server<Self>, listener: std::net::TcpListener) -> Task<std::io::Result<()>>;

    /// Dials `url` with the adapter's `ClientExt::dial_with_headers`.
    fn dial(
        client: &Client<Self>,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send;

    /// Sleeps for `duration` on this runtime's timer.
    fn sleep(duration: Duration) -> Self::Sleep {
        let runtime = Self::default();
        runtime.sleep_until(runtime.now() + duration)
    }

    /// `future`'s output, or `None` if `duration` passes first (this runtime's timer).
    fn timeout<F: Future>(
        duration: Duration,
        future: F,
    ) -> impl Future<Output = Option<F::Output>> {
        async move {
            let future = std::pin::pin!(future);
            let sleep = std::pin::pin!(Self::sleep(duration));
            match select(future, sleep).await {
                Either::Left((output, _)) => Some(output),
                Either::Right(((), _)) => None,
            }
        }
    }

    /// Spawns `future` on this runtime; the returned [`Task`] resolves to its output
    /// (and re-raises its panic).
    fn spawn_task<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        Self::default().spawn(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            let _ = sender.send(outcome);
        });
        Task {
            state: State::Running(receiver),
        }
    }
}

impl TestRuntime for etp_tokio::TokioRuntime {
    const NAME: &'static str = "tokio";

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            // On the heap: a test's future is large in debug builds, and the test
            // thread's stack is 2 MiB.
            .block_on(Box::pin(future))
    }

    fn serve(server: &Server<Self>, listener: std::net::TcpListener) -> Task<std::io::Result<()>> {
        use etp_tokio::ServerExt;
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let server = server.clone();
        Self::spawn_task(async move { server.serve(listener).await })
    }

    fn dial(
        client: &Client<Self>,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send {
        etp_tokio::ClientExt::dial_with_headers(client, url, headers)
    }
}

impl TestRuntime for etp_async_std::AsyncStdRuntime {
    const NAME: &'static str = "async-std";

    fn block_on<F: Future>(future: F) -> F::Output {
        // On the heap: a test's future is large in debug builds, and async-std's
        // block_on keeps a few copies of it on the test thread's 2 MiB stack.
        async_std::task::block_on(Box::pin(future))
    }

    fn serve(server: &Server<Self>, listener: std::net::TcpListener) -> Task<std::io::Result<()>> {
        use etp_async_std::ServerExt;
        let listener = async_std::net::TcpListener::from(listener);
        let server = server.clone();
        Self::spawn_task(async move { server.serve(listener).await })
    }

    fn dial(
        client: &Client<Self>,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send {
        etp_async_std::ClientExt::dial_with_headers(client, url, headers)
    }
}

/// Dialing a client of any [`TestRuntime`] with the same calls as the adapters'
/// `ClientExt`.
pub trait DialExt {
    /// Connects to `url`.
    fn dial(&self, url: &str) -> impl Future<Output = Result<Conn, DialError>> + Send;

    /// Connects to `url` with extra request headers.
    fn dial_with_headers(
        &self,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send;
}

impl<R: TestRuntime> DialExt for Client<R> {
    fn dial(&self, url: &str) -> impl Future<Output = Result<Conn, DialError>> + Send {
        R::dial(self, url, http::HeaderMap::new())
    }

    fn dial_with_headers(
        &self,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send {
        R::dial(self, url, headers)
    }
}

/// A spawned task's output: await it (a panic in the task panics here), or ask
/// whether it has finished.
#[must_use = "a task's outcome is only seen by awaiting it"]
pub struct Task<T> {
    state: State<T>,
}

enum State<T> {
    Running(oneshot::Receiver<std::thread::Result<T>>),
    Finished(std::thread::Result<T>),
    Taken,
}

// The output is moved out, never pinned.
impl<T> Unpin for Task<T> {}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Finished(_) => "finished",
            State::Taken => "taken",
        };
        f.debug_struct("Task").field("state", &state).finish()
    }
}

impl<T> Task<T> {
    /// True once the task has ended (its output is kept for the await).
    pub fn is_finished(&mut self) -> bool {
        if let State::Running(receiver) = &mut self.state {
            match receiver.try_recv() {
                Ok(Some(outcome)) => self.state = State::Finished(outcome),
                Ok(None) => return false,
                // Dropped by its runtime: finished, in a way.
                Err(_) => return true,
            }
        }
        true
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let outcome = match std::mem::replace(&mut this.state, State::Taken) {
            State::Running(mut receiver) => match receiver.poll_unpin(cx) {
                Poll::Pending => {
                    this.state = State::Running(receiver);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(outcome)) => outcome,
                Poll::Ready(Err(oneshot::Canceled)) => {
                    panic!("the task was dropped by its runtime before it finished")
                }
            },
            State::Finished(outcome) => outcome,
            State::Taken => panic!("a task's output was awaited twice"),
        };
        match outcome {
            Ok(output) => Poll::Ready(output),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
