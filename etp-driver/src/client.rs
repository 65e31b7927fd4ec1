//! The client: one connection at a time, the same handlers and hooks as the server,
//! and optional reconnection with exponential backoff.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::conn::{Conn, Request};
use crate::driver::{Driver, WebSocket};
use crate::error::{AckError, DisconnectReason, EmitError, Error};
use crate::handler::{BuildError, Registry, hook_builder_methods};
use crate::runtime::Runtime;
use crate::server::run_hook;

/// Reconnection delays: exponential from `initial` up to `max`, each with full jitter
/// (a random delay between half and all of it), so that clients of a restarted server
/// do not all return at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Give up after this many failed attempts in a row; `None`: never.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.min(20));
        let full = exp.min(self.max);
        let mut random = [0u8; 4];
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        full.mul_f64(0.5 + 0.5 * fraction)
    }
}

/// Configures a [`Client`].
pub struct ClientBuilder<R> {
    runtime: R,
    registry: Registry,
    reconnect: Option<Backoff>,
}

impl<R: Runtime> ClientBuilder<R> {
    /// A builder whose connection runs on `runtime`.
    pub fn with_runtime(runtime: R) -> Self {
        Self {
            runtime,
            registry: Registry::default(),
            reconnect: None,
        }
    }

    hook_builder_methods!();

    /// Reconnect automatically after a connection is lost (not after
    /// [`Client::close`]), waiting per `backoff` between attempts.
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// The client, or the first invalid handler registration.
    pub fn build(self) -> Result<Client<R>, BuildError> {
        if let Some(err) = self.registry.invalid {
            return Err(err);
        }
        Ok(Client {
            shared: Arc::new(Shared {
                runtime: self.runtime,
                registry: Arc::new(self.registry),
                reconnect: self.reconnect,
                current: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        })
    }
}

struct Shared<R> {
    runtime: R,
    registry: Arc<Registry>,
    reconnect: Option<Backoff>,
    current: Mutex<Option<Conn>>,
    /// Set by `close`: no reconnection until the next dial.
    closed: AtomicBool,
}

/// An etp client: one connection at a time. Cheap to clone.
///
/// Between connections every call fails with [`EmitError::Closed`] ("client closed");
/// the client can dial again.
pub struct Client<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<R> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.conn())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> Client<R> {
    /// A builder on the default instance of the runtime.
    pub fn builder() -> ClientBuilder<R> {
        ClientBuilder::with_runtime(R::default())
    }
}

impl<R> Client<R> {
    /// The current connection, if connected.
    pub fn conn(&self) -> Option<Conn> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.clone().filter(|c| !c.is_closed())
    }
}

impl<R: Runtime> Client<R> {
    /// The reconnection policy, if any.
    pub fn reconnect_policy(&self) -> Option<Backoff> {
        self.shared.reconnect
    }

    /// The settings the connection gets (read limit, keepalive, bounds).
    pub fn conn_config(&self) -> &crate::ConnConfig {
        &self.shared.registry.config
    }

    /// True while a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn().is_some()
    }

    /// Emits an event on the current connection.
    pub fn emit(&self, name: &str, data: impl Into<Bytes>) -> Result<(), EmitError> {
        self.conn().ok_or(EmitError::Closed)?.emit(name, data)
    }

    /// Emits an event and waits for the acknowledgement (default deadline).
    pub async fn emit_with_ack(
        &self,
        name: &str,
        data: impl Into<Bytes>,
    ) -> Result<Bytes, AckError> {
        let conn = self.conn().ok_or(AckError::Emit(EmitError::Closed))?;
        conn.emit_with_ack(name, data).await
    }

    /// Emits an event and waits for the acknowledgement at most `timeout`.
    pub async fn emit_with_ack_timeout(
        &self,
        name: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, AckError> {
        let conn = self.conn().ok_or(AckError::Emit(EmitError::Closed))?;
        conn.emit_with_ack_timeout(name, data, timeout).await
    }

    /// Sends a WebSocket ping and waits for the pong.
    pub async fn ping(&self) -> Result<(), EmitError> {
        self.conn().ok_or(EmitError::Closed)?.ping().await
    }

    /// Closes the connection with 1000 and stops reconnecting.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(conn) = self.conn() {
            conn.close();
        }
    }

    /// Starts a connection over an established WebSocket (the adapters dial it) and
    /// returns it with a receiver that yields how it ended, after the disconnect hook.
    pub fn start<S: WebSocket>(
        &self,
        ws: S,
        request: Request,
    ) -> (Conn, oneshot::Receiver<DisconnectReason>) {
        let shared = self.shared.clone();
        shared.closed.store(false, Ordering::Release);
        let registry = shared.registry.clone();
        let (conn, receivers) = Conn::new(request, &registry.config, None);
        let previous = shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(conn.clone());
        if let Some(previous) = previous {
            // One connection per client: a new dial replaces the old connection.
            previous.close();
        }
        let (ended, ended_rx) = oneshot::channel();
        let mut driver = Driver::new(
            shared.runtime.clone(),
            ws,
            conn.clone(),
            receivers,
            registry.clone(),
        );
        let task_conn = conn.clone();
        shared.runtime.clone().spawn(async move {
            let conn = task_conn;
            if let Some(hook) = &registry.on_connect {
                let hook = run_hook(&registry, &conn, "on_connect", || hook(conn.clone()));
                driver.before_start(hook).await;
            }
            let reason = driver.run().await;
            if let Some(hook) = &registry.on_disconnect {
                let for_hook = reason.clone();
                run_hook(&registry, &conn, "on_disconnect", || {
                    hook(conn.clone(), for_hook)
                })
                .await;
            }
            {
                let mut current = shared
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if current.as_ref() == Some(&conn) {
                    *current = None;
                }
            }
            drop(driver);
            let _ = ended.send(reason);
        });
        (conn, ended_rx)
    }

    /// Keeps the client connected: each time the connection behind `ended` ends (and
    /// the client was not closed), redials with `dial` after the backoff delays. Returns
    /// when the client is closed or the attempts run out. Dial failures go to the error
    /// hook. The adapters spawn this after a successful first dial.
    pub async fn keep_connected<S, D, Fut, E>(
        &self,
        mut ended: oneshot::Receiver<DisconnectReason>,
        backoff: Backoff,
        dial: D,
    ) where
        S: WebSocket,
        D: Fn() -> Fut,
        Fut: Future<Output = Result<(S, Request), E>>,
        E: Into<std::io::Error>,
    {
        loop {
            let _ = (&mut ended).await;
            let mut attempt = 0u32;
            loop {
                if self.shared.closed.load(Ordering::Acquire) {
                    return;
                }
                if backoff.max_attempts.is_some_and(|max| attempt >= max) {
                    return;
                }
                let wake = self.shared.runtime.now() + backoff.delay(attempt);
                self.shared.runtime.sleep_until(wake).await;
                if self.shared.closed.load(Ordering::Acquire) {
                    return;
                }
                match dial().await {
                    Ok((ws, request)) => {
                        ended = self.start(ws, request).1;
                        break;
                    }
                    Err(err) => {
                        self.shared.registry.report(None, Error::Io(err.into()));
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }
}
