//! The server: accepts upgraded WebSockets, runs their connections, owns the rooms.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{Either, select};

use crate::cluster::{Broker, Cluster, ClusterConfig, Node};
use crate::conn::{Conn, Control, Request};
use crate::driver::{Driver, WebSocket};
use crate::error::{Error, panic_message};
use crate::handler::{BoxFuture, BuildError, Registry, hook_builder_methods};
use crate::handshake::{HandshakeError, OriginPolicy};
use crate::hub::{Hub, Rooms};
use crate::observe::{self, Side};
use crate::runtime::Runtime;
use crate::tracker::{Tracker, Waiters};

/// The authentication hook: the upgrade request in, the request to connect with (or
/// the refusal) out.
type AuthHook = Arc<dyn Fn(Request) -> BoxFuture<Result<Request, HandshakeError>> + Send + Sync>;

/// Configures a [`Server`]: handlers, hooks, limits, origin policy.
pub struct ServerBuilder<R> {
    runtime: R,
    registry: Registry,
    origins: OriginPolicy,
    handshake_timeout: Duration,
    auth: Option<AuthHook>,
    cluster: Option<(Box<dyn Broker>, ClusterConfig)>,
}

/// How long a client may take to send its upgrade request, unless configured.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl<R: Runtime> ServerBuilder<R> {
    /// A builder whose connections run on `runtime`.
    pub fn with_runtime(runtime: R) -> Self {
        Self {
            runtime,
            registry: Registry::default(),
            origins: OriginPolicy::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            auth: None,
            cluster: None,
        }
    }

    /// Makes the server one node of a [cluster](crate::cluster): broadcasts reach every
    /// node, and [`Server::cluster`] answers for all of them. `broker` carries the
    /// messages (`etp-redis` for Redis, [`MemoryBus`](crate::cluster::MemoryBus) in one
    /// process). Without it the server is on its own, at no extra cost.
    ///
    /// [`build`](Self::build) then starts the node (its heartbeat task, the broker) on
    /// the server's runtime, so call it from inside that runtime.
    pub fn cluster(mut self, broker: impl Broker, config: ClusterConfig) -> Self {
        self.cluster = Some((Box::new(broker), config));
        self
    }

    hook_builder_methods!();

    /// Which browser origins may connect. Default: [`OriginPolicy::same_host`].
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origins = policy;
        self
    }

    /// How long a client may take to send its whole upgrade request head, from the
    /// moment its TCP connection is accepted (and again for each request after a
    /// refusal on the same connection). A client that stalls is dropped without an
    /// answer. Default: [`DEFAULT_HANDSHAKE_TIMEOUT`] (10 s). The adapters' standalone
    /// `serve` applies it; behind your own HTTP server, configure that server's.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Same host, or origins matching these glob patterns (case-insensitive).
    pub fn origin_patterns<I, S>(self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origin_policy(OriginPolicy::patterns(patterns))
    }

    /// Decides, before the upgrade, whether a request may connect: the hook gets the
    /// request (URI with query, headers, the extensions earlier tower layers set, the
    /// peer's address) once the handshake and origin checks passed, and either returns
    /// it, possibly with values added to its extensions, which `on_connect` and the
    /// handlers then read from [`Conn::request`], or refuses with a status and a
    /// message ([`HandshakeError::unauthorized`], [`HandshakeError::forbidden`],
    /// [`HandshakeError::refuse`]) that the client gets as the HTTP response. Refusals
    /// go to the error hook as [`Error::Refused`]; a panicking hook refuses with 500
    /// and is reported as [`Error::HookPanicked`] (`"authenticate"`).
    ///
    /// Every adapter runs it: standalone `listen`/`serve`, hyper's `upgrade`, the axum
    /// route, async-std's server. The hook may await (a database, a token service);
    /// the client's upgrade waits meanwhile, so bound such calls with a timeout.
    ///
    /// ```
    /// # fn demo(builder: etp_driver::ServerBuilder<impl etp_driver::Runtime>) {
    /// use etp_driver::{HandshakeError, Request};
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    ///
    /// let builder = builder.authenticate(|mut request: Request| async move {
    ///     match request.query_param("token") {
    ///         Some("secret") => {
    ///             request.extensions_mut().insert(User("ana".into()));
    ///             Ok(request)
    ///         }
    ///         _ => Err(HandshakeError::unauthorized("a valid token is required")),
    ///     }
    /// });
    /// # }
    /// ```
    pub fn authenticate<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Request, HandshakeError>> + Send + 'static,
    {
        self.auth = Some(Arc::new(move |request| Box::pin(hook(request))));
        self
    }

    /// The server, or the first invalid handler registration.
    pub fn build(self) -> Result<Server<R>, BuildError> {
        if let Some(err) = self.registry.invalid {
            return Err(err);
        }
        let encoding = self.registry.config.session.encoding;
        let node = self.cluster.map(|(broker, config)| {
            Arc::new(Node::new(self.runtime.clone(), broker, config, encoding))
        });
        let hub = Arc::new(Hub::new(encoding, node));
        if let Some(node) = &hub.node {
            node.start(Arc::downgrade(&hub));
        }
        Ok(Server {
            shared: Arc::new(Shared {
                runtime: self.runtime,
                registry: Arc::new(self.registry),
                hub,
                origins: self.origins,
                handshake_timeout: self.handshake_timeout,
                auth: self.auth,
                tracker: Arc::new(Tracker::default()),
                shutting_down: AtomicBool::new(false),
                shutdown_waiters: Waiters::default(),
            }),
        })
    }
}

struct Shared<R> {
    runtime: R,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    origins: OriginPolicy,
    handshake_timeout: Duration,
    auth: Option<AuthHook>,
    tracker: Arc<Tracker>,
    shutting_down: AtomicBool,
    /// Accept loops waiting for shutdown to begin.
    shutdown_waiters: Waiters,
}

/// An etp server: handlers and hooks, the rooms, and the running connections.
///
/// Cheap to clone. The runtime adapters accept TCP connections and upgrades and hand
/// each WebSocket to [`serve_connection`](Self::serve_connection).
pub struct Server<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for Server<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<R> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.shared.tracker.active())
            .field(
                "shutting_down",
                &self.shared.shutting_down.load(Ordering::Acquire),
            )
            .finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> Server<R> {
    /// A builder on the default instance of the runtime.
    pub fn builder() -> ServerBuilder<R> {
        ServerBuilder::with_runtime(R::default())
    }
}

impl<R: Runtime> Server<R> {
    /// The rooms and live connections.
    pub fn rooms(&self) -> Rooms {
        Rooms {
            hub: self.shared.hub.clone(),
        }
    }

    /// The cluster this server is a node of: emits, joins and room questions for
    /// every node (answered locally on a server without a cluster).
    pub fn cluster(&self) -> Cluster {
        self.rooms().cluster()
    }

    /// The runtime connections run on.
    pub fn runtime(&self) -> &R {
        &self.shared.runtime
    }

    /// The origin policy upgrades are checked against.
    pub fn origin_policy(&self) -> &OriginPolicy {
        &self.shared.origins
    }

    /// The settings every connection gets (read limit, keepalive, bounds).
    pub fn conn_config(&self) -> &crate::ConnConfig {
        &self.shared.registry.config
    }

    /// Checks an upgrade request (method, headers, origin) and returns the `101`
    /// response to send, or the refusal (also reported to the error hook, without a
    /// connection).
    pub fn accept_upgrade(
        &self,
        method: &http::Method,
        version: http::Version,
        headers: &http::HeaderMap,
    ) -> Result<http::Response<()>, HandshakeError> {
        // The request's own faults first (they say more), then the server's state.
        let accepted = crate::handshake::accept(method, version, headers, &self.shared.origins)
            .and_then(|response| match self.is_shutting_down() {
                true => Err(HandshakeError::service_unavailable()),
                false => Ok(response),
            });
        accepted.inspect_err(|err| {
            self.shared
                .registry
                .report(None, Error::Handshake(err.clone()));
        })
    }

    /// Runs the authentication hook (if any) on a request that passed
    /// [`accept_upgrade`](Self::accept_upgrade): the request to serve the connection
    /// with, or the refusal to answer with (already reported to the error hook).
    /// Adapters call it between the checks and sending `101`.
    pub async fn authenticate(&self, request: Request) -> Result<Request, HandshakeError> {
        let Some(hook) = &self.shared.auth else {
            return Ok(request);
        };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| hook(request))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let registry = &self.shared.registry;
        match outcome {
            Ok(Ok(request)) => Ok(request),
            Ok(Err(refusal)) => {
                registry.report(None, Error::Refused(refusal.clone()));
                Err(refusal)
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                registry.report(
                    None,
                    Error::HookPanicked {
                        hook: "authenticate",
                        message,
                    },
                );
                Err(HandshakeError::internal())
            }
        }
    }

    /// Reports an error that happened before a connection existed (accept, upgrade IO).
    pub fn report_error(&self, error: Error) {
        self.shared.registry.report(None, error);
    }

    /// Runs one connection over an upgraded WebSocket until it ends: the connect hook
    /// before the first frame is read, the frames, the disconnect hook exactly once
    /// (still in its rooms), then the rooms are left and running handlers cancelled.
    ///
    /// This does not run the authentication hook: adapters call
    /// [`authenticate`](Self::authenticate) before the upgrade.
    pub async fn serve_connection<S: WebSocket>(&self, ws: S, request: Request) {
        let shared = &self.shared;
        let _active = shared.tracker.enter();
        let _counted = observe::ConnGauge::open(Side::Server);
        let registry = shared.registry.clone();
        let (conn, receivers) = Conn::new(request, &registry, Some(Arc::downgrade(&shared.hub)));
        let span_conn = conn.clone();
        observe::in_conn_span(&span_conn, Side::Server, self.run(ws, conn, receivers)).await;
    }

    async fn run<S: WebSocket>(&self, ws: S, conn: Conn, receivers: crate::conn::Receivers) {
        let shared = &self.shared;
        let registry = shared.registry.clone();
        // Unregisters however this future ends, even if it is dropped mid-way.
        let registration = Registration::new(&shared.hub, &conn);
        if self.is_shutting_down() {
            conn.control(Control::Close { drain: false });
        }
        let mut driver = Driver::new(
            shared.runtime.clone(),
            ws,
            conn.clone(),
            receivers,
            registry.clone(),
        );
        if let Some(hook) = &registry.on_connect {
            let hook = run_hook(&registry, &conn, "on_connect", || hook(conn.clone()));
            driver.before_start(hook).await;
        }
        let reason = driver.run().await;
        observe::connection_ended(&reason);
        if let Some(hook) = &registry.on_disconnect {
            run_hook(&registry, &conn, "on_disconnect", || {
                hook(conn.clone(), reason)
            })
            .await;
        }
        drop(registration);
        // Dropping the driver cancels the handlers still running for this connection.
        drop(driver);
    }

    /// True once [`shutdown`](Self::shutdown) has begun: new upgrades are refused.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// Resolves once [`shutdown`](Self::shutdown) has begun: accept loops select on it.
    pub async fn shutdown_started(&self) {
        let waiters = &self.shared.shutdown_waiters;
        waiters.wait_until(|| self.is_shutting_down()).await;
    }

    /// How long a client may take to send its upgrade request (see
    /// [`ServerBuilder::handshake_timeout`]).
    pub fn handshake_timeout(&self) -> Duration {
        self.shared.handshake_timeout
    }

    /// How many connections are running.
    pub fn connection_count(&self) -> usize {
        self.shared.tracker.active()
    }

    /// Shuts down: refuses new connections, lets every connection finish its running
    /// handlers and close with 1000 (all at once), and waits up to `timeout`. Connections
    /// still open then are dropped. Returns how many had to be dropped. A cluster node
    /// says bye first, so that the other nodes stop routing to it at once.
    ///
    /// Events read after shutdown began are not handled, and their requests are not
    /// answered: they fail on the peer's side with the connection-closed error when the
    /// close arrives. An acknowledgement always means that the event was handled.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        let shared = &self.shared;
        if let Some(node) = &shared.hub.node {
            node.stop();
        }
        shared.shutdown_waiters.change(|| {
            shared.shutting_down.store(true, Ordering::Release);
            true
        });
        for conn in self.rooms().all() {
            conn.control(Control::Close { drain: true });
        }
        let deadline = shared.runtime.now() + timeout;
        let sleep = shared.runtime.sleep_until(deadline);
        let idle = shared.tracker.idle();
        futures_util::pin_mut!(idle);
        futures_util::pin_mut!(sleep);
        if let Either::Left(_) = select(idle, sleep).await {
            return 0;
        }
        let stragglers = self.rooms().all();
        for conn in &stragglers {
            conn.control(Control::Abort);
        }
        shared.tracker.idle().await;
        stragglers.len()
    }
}

/// A connection's place in the hub, given up on drop.
struct Registration {
    hub: Arc<Hub>,
    conn: Conn,
}

impl Registration {
    fn new(hub: &Arc<Hub>, conn: &Conn) -> Self {
        hub.register(conn);
        Self {
            hub: hub.clone(),
            conn: conn.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.conn);
    }
}

/// Runs a hook, containing and reporting a panic (in the call or in its future).
pub(crate) async fn run_hook<F, Fut>(registry: &Registry, conn: &Conn, hook: &'static str, call: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    if let Err(panic) = outcome {
        let message = panic_message(&*panic);
        registry.report(Some(conn), Error::HookPanicked { hook, message });
        if hook == "on_connect" {
            // The application could not set the connection up: do not serve it.
            conn.close();
        }
    }
}
