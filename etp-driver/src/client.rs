//! The client: one connection at a time, the same handlers and hooks as the server,
//! and optional reconnection with exponential backoff.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::conn::{Conn, Request};
use crate::driver::{Driver, WebSocket};
use crate::error::{AckError, DisconnectReason, EmitError, Error};
use crate::handler::{BuildError, Registry, hook_builder_methods};
use crate::observe::{self, Side};
use crate::runtime::Runtime;
use crate::server::run_hook;

/// Why a dial failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DialError {
    /// The URL is not `ws://`, `wss://`, `http://` or `https://` with a host, a header
    /// is invalid, or `wss` was asked for without TLS support compiled in.
    InvalidRequest(String),
    /// The TCP connection or the TLS handshake failed.
    Io(std::io::Error),
    /// The WebSocket handshake failed (including an HTTP refusal such as 403).
    Handshake(tungstenite::Error),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(why) => write!(f, "invalid dial request: {why}"),
            Self::Io(err) => write!(f, "connection failed: {err}"),
            Self::Handshake(err) => {
                write!(f, "websocket handshake failed: {err}")?;
                // A refusal's body says why (an etp server's authentication hook, say).
                if let tungstenite::Error::Http(response) = err
                    && let Some(body) = response.body()
                {
                    let body = String::from_utf8_lossy(body);
                    let body = body.trim();
                    if !body.is_empty() {
                        let shown: String = body.chars().take(REFUSAL_BODY_SHOWN).collect();
                        write!(f, ": {shown}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(err) => Some(err),
            Self::Handshake(err) => Some(err),
            Self::InvalidRequest(_) => None,
        }
    }
}

/// The most characters of a refusal's body a [`DialError`] shows: enough for an
/// explanation, not a whole error page.
const REFUSAL_BODY_SHOWN: usize = 200;

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
                state: Mutex::new(State::default()),
            }),
        })
    }
}

struct Shared<R> {
    runtime: R,
    registry: Arc<Registry>,
    reconnect: Option<Backoff>,
    state: Mutex<State>,
}

/// Which connection is current, under one lock so that `close`, a new dial and a
/// reconnection cannot interleave badly.
#[derive(Default)]
struct State {
    current: Option<Conn>,
    /// Set by `close`: no reconnection until the next dial.
    closed: bool,
    /// Counts dials by the application; a reconnection loop belongs to one dial and
    /// stops once another dial has happened.
    generation: u64,
}

impl<R> Shared<R> {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a client connection ends: resolves after its disconnect hook ran.
#[derive(Debug)]
pub struct Ended {
    receiver: oneshot::Receiver<DisconnectReason>,
    generation: u64,
}

impl Ended {
    /// Waits for the end; `None` if the connection's task was dropped without ending
    /// (its runtime shut down).
    pub async fn reason(&mut self) -> Option<DisconnectReason> {
        (&mut self.receiver).await.ok()
    }

    /// The reason if the connection has already ended, without waiting.
    pub fn try_reason(&mut self) -> Option<DisconnectReason> {
        self.receiver.try_recv().ok().flatten()
    }
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
        let current = self.shared.state().current.clone();
        current.filter(|c| !c.is_closed())
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
        let current = {
            let mut state = self.shared.state();
            state.closed = true;
            state.current.clone()
        };
        if let Some(conn) = current {
            conn.close();
        }
    }

    /// Starts a connection over an established WebSocket (the adapters dial it),
    /// replacing any current one, and returns it with its [`Ended`].
    pub fn start<S: WebSocket>(&self, ws: S, request: Request) -> (Conn, Ended) {
        let mut state = self.shared.state();
        state.closed = false;
        state.generation += 1;
        let generation = state.generation;
        let (conn, receiver) = self.spawn(&mut state, ws, request);
        (
            conn,
            Ended {
                receiver,
                generation,
            },
        )
    }

    /// A reconnection's start: only if the client was neither closed nor dialed again
    /// while the reconnection was dialing.
    fn restart<S: WebSocket>(&self, ws: S, request: Request, generation: u64) -> Option<Ended> {
        let mut state = self.shared.state();
        if state.closed || state.generation != generation {
            return None;
        }
        let (_, receiver) = self.spawn(&mut state, ws, request);
        Some(Ended {
            receiver,
            generation,
        })
    }

    fn spawn<S: WebSocket>(
        &self,
        state: &mut State,
        ws: S,
        request: Request,
    ) -> (Conn, oneshot::Receiver<DisconnectReason>) {
        let shared = self.shared.clone();
        let registry = shared.registry.clone();
        let (conn, receivers) = Conn::new(request, &registry, None);
        if let Some(previous) = state.current.replace(conn.clone()) {
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
        let span_conn = conn.clone();
        let runtime = shared.runtime.clone();
        let task = async move {
            let conn = task_conn;
            let _counted = observe::ConnGauge::open(Side::Client);
            if let Some(hook) = &registry.on_connect {
                let hook = run_hook(&registry, &conn, "on_connect", || hook(conn.clone()));
                driver.before_start(hook).await;
            }
            let reason = driver.run().await;
            observe::connection_ended(&reason);
            if let Some(hook) = &registry.on_disconnect {
                let for_hook = reason.clone();
                run_hook(&registry, &conn, "on_disconnect", || {
                    hook(conn.clone(), for_hook)
                })
                .await;
            }
            {
                let mut state = shared.state();
                if state.current.as_ref() == Some(&conn) {
                    state.current = None;
                }
            }
            drop(driver);
            let _ = ended.send(reason);
        };
        runtime.spawn(observe::in_conn_span(&span_conn, Side::Client, task));
        (conn, ended_rx)
    }

    /// True when reconnecting on behalf of the dial `generation` must stop.
    fn superseded(&self, generation: u64) -> bool {
        let state = self.shared.state();
        state.closed || state.generation != generation
    }

    /// Dials `url` with `connect` (the adapter's socket code), starts the connection,
    /// and with reconnection configured keeps the client connected with the same
    /// `connect`, URL and headers. `http(s)` URLs become `ws(s)`.
    pub async fn dial_with<S, C, Fut>(
        &self,
        url: &str,
        headers: http::HeaderMap,
        connect: C,
    ) -> Result<Conn, DialError>
    where
        S: WebSocket,
        C: Fn(String, http::HeaderMap) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(S, Request), DialError>> + Send + 'static,
    {
        let url = crate::handshake::websocket_url(url).map_err(DialError::InvalidRequest)?;
        let (ws, request) = connect(url.clone(), headers.clone()).await?;
        let (conn, ended) = self.start(ws, request);
        if let Some(backoff) = self.shared.reconnect {
            let client = self.clone();
            let redial = move || connect(url.clone(), headers.clone());
            self.shared.runtime.spawn(async move {
                client.keep_connected(ended, backoff, redial).await;
            });
        }
        Ok(conn)
    }

    /// Keeps the client connected: each time the connection behind `ended` ends, redials
    /// with `dial` after the backoff delays. Returns when the client is closed, dialed
    /// again by the application, or the attempts run out. Dial failures go to the error
    /// hook. [`dial_with`](Self::dial_with) spawns this after a successful first dial.
    pub async fn keep_connected<S, D, Fut>(&self, mut ended: Ended, backoff: Backoff, dial: D)
    where
        S: WebSocket,
        D: Fn() -> Fut,
        Fut: Future<Output = Result<(S, Request), DialError>>,
    {
        let generation = ended.generation;
        loop {
            let _ = ended.reason().await;
            let mut attempt = 0u32;
            loop {
                if self.superseded(generation)
                    || backoff.max_attempts.is_some_and(|max| attempt >= max)
                {
                    return;
                }
                let wake = self.shared.runtime.now() + backoff.delay(attempt);
                self.shared.runtime.sleep_until(wake).await;
                if self.superseded(generation) {
                    return;
                }
                match dial().await {
                    Ok((ws, request)) => match self.restart(ws, request, generation) {
                        Some(next) => {
                            ended = next;
                            break;
                        }
                        // Closed or dialed again meanwhile: the new socket is dropped.
                        None => return,
                    },
                    Err(err) => {
                        self.shared.registry.report(None, Error::Dial(err));
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: Option<&str>) -> DialError {
        let mut response = http::Response::new(body.map(|b| b.as_bytes().to_vec()));
        *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        DialError::Handshake(tungstenite::Error::Http(Box::new(response)))
    }

    #[test]
    fn a_refused_dial_shows_the_servers_message_up_to_the_limit() {
        let prefix = "websocket handshake failed: HTTP error: 401 Unauthorized";
        assert_eq!(
            refused(Some("a valid token is required\n")).to_string(),
            format!("{prefix}: a valid token is required")
        );
        assert_eq!(refused(None).to_string(), prefix);
        assert_eq!(refused(Some(" \n")).to_string(), prefix);
        let at_limit = "é".repeat(REFUSAL_BODY_SHOWN);
        assert_eq!(
            refused(Some(&at_limit)).to_string(),
            format!("{prefix}: {at_limit}")
        );
        let past_limit = format!("{at_limit}x");
        assert_eq!(
            refused(Some(&past_limit)).to_string(),
            format!("{prefix}: {at_limit}")
        );
    }
}
