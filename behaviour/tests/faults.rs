//! Faults, on every runtime: a peer killed mid-request, panics in every kind of
//! application code, shutdown in the middle of heavy traffic. (The client's automatic
//! reconnection across a server restart is in client.rs.)

use std::collections::HashSet;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{AckError, Client, Conn, DisconnectReason, EmitError, Error, Event, Server};

/// Long enough that an ack failing "at once" cannot be its timeout.
const HOUR: Duration = Duration::from_secs(3600);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts live handler futures: a cancelled (dropped) handler counts itself out.
#[derive(Clone, Default)]
struct Alive(Arc<AtomicUsize>);

struct AliveGuard(Arc<AtomicUsize>);

impl Alive {
    fn enter(&self) -> AliveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        AliveGuard(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A handler that never returns, counted while it lives.
fn blocking_handler(
    alive: &Alive,
) -> impl Fn(Conn, Event) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static
{
    let alive = alive.clone();
    move |_conn: Conn, _event: Event| {
        let guard = alive.enter();
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
    }
}

/// A TCP relay between one client and the server whose sockets can all be shut at
/// once: the client process "killed" (the kernel ends its connections), as both sides
/// see it.
struct Relay {
    addr: SocketAddr,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay addr");
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let kept = sockets.clone();
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let server = TcpStream::connect(target).expect("relay to the server");
            for stream in [&client, &server] {
                lock(&kept).push(stream.try_clone().expect("clone"));
            }
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                })
            };
            pipe(
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            pipe(server, client);
        });
        Self { addr, sockets }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Ends both connections at once, without a close frame.
    fn kill(&self) {
        for socket in lock(&self.sockets).iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A client killed while each side awaits an ack from the other and each runs a
/// handler: both pending acks fail at once with the connection-closed error, both
/// handlers are cancelled, and the server's connection leaves its rooms.
async fn a_killed_peer_fails_pending_acks_on_both_sides_and_cancels_handlers<R: TestRuntime>() {
    let (server_alive, client_alive) = (Alive::default(), Alive::default());
    let (builder, mut hooks) = hooked(Server::<R>::builder());
    let server = builder
        .ack_timeout(HOUR)
        .on("block", blocking_handler(&server_alive))
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let relay = Relay::start(test.addr);
    let (builder, mut client_hooks) = hooked_client(Client::<R>::builder());
    let client = builder
        .ack_timeout(HOUR)
        .on("block", blocking_handler(&client_alive))
        .build()
        .unwrap();
    within("dial", client.dial(&relay.url())).await.unwrap();
    let conn = hooks.connects.next().await;
    conn.join("room");

    let client_asks = R::spawn_task({
        let client = client.clone();
        async move { client.emit_with_ack("block", "").await }
    });
    let server_asks = R::spawn_task({
        let conn = conn.clone();
        async move { conn.emit_with_ack("block", "").await }
    });
    eventually("a handler running on each side", || {
        server_alive.count() == 1 && client_alive.count() == 1
    })
    .await;

    relay.kill();
    assert_eq!(
        within("the client's ack", client_asks).await,
        Err(AckError::ConnectionClosed)
    );
    assert_eq!(
        within("the server's ack", server_asks).await,
        Err(AckError::ConnectionClosed)
    );
    let (_, reason) = hooks.disconnects.next().await;
    assert!(
        matches!(
            reason,
            DisconnectReason::ConnectionLost | DisconnectReason::Io(_)
        ),
        "{reason:?}"
    );
    let (_, reason) = client_hooks.disconnects.next().await;
    assert!(!reason.is_normal(), "{reason:?}");
    eventually("both handlers cancelled", || {
        server_alive.count() == 0 && client_alive.count() == 0
    })
    .await;
    let rooms = test.server.rooms();
    eventually("the connection to leave its rooms", || {
        rooms.connection_count() == 0 && rooms.is_empty()
    })
    .await;
    assert_eq!(test.server.connection_count(), 0);
    assert!(conn.is_closed());
    assert_eq!(
        client.emit("x", ""),
        Err(EmitError::Closed),
        "the client knows it is disconnected"
    );
    test.stop().await;
}

/// Panics in a handler, the connect hook and the disconnect hook: each is contained
/// and reported, and no connection or room is left behind.
async fn panics_in_handlers_and_hooks_leak_no_connection_or_room<R: TestRuntime>() {
    let (error_tx, mut errors) = channel::<(Option<Conn>, Error)>();
    let (connect_tx, mut connects) = channel::<Conn>();
    let server = Server::<R>::builder()
        .on("boom", |_conn: Conn, _event: Event| async move {
            if true {
                panic!("handler down");
            }
        })
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .on_connect(move |conn: Conn| {
            connect_tx.send(conn.clone());
            async move {
                conn.join("room");
                if conn.request().query_param("panic") == Some("connect") {
                    panic!("connect hook down");
                }
            }
        })
        .on_disconnect(|_conn, _reason| async move { panic!("disconnect hook down") })
        .on_error(move |conn, err| {
            error_tx.send((conn, err));
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let rooms = test.server.rooms();

    // A handler panics: reported, the request still answered, the connection open.
    let mut peer = WsPeer::connect(&test.url("/ws")).await;
    let first = connects.next().await;
    assert_eq!(peer.ask("boom||1").await, "__ack_boom||1");
    let (on, err) = errors.next().await;
    assert_eq!(on.as_ref(), Some(&first));
    assert_eq!(
        err.to_string(),
        "handler for event \"boom\" panicked: handler down"
    );
    assert_eq!(peer.ask("echo||2||alive").await, "__ack_echo||2||alive");
    // Its disconnect hook panics: reported, and the connection still leaves the room.
    peer.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await;
    let (on, err) = errors.next().await;
    assert_eq!(on.as_ref(), Some(&first));
    assert!(
        matches!(
            err,
            Error::HookPanicked {
                hook: "on_disconnect",
                ..
            }
        ),
        "{err:?}"
    );
    eventually("the first connection to leave", || {
        rooms.connection_count() == 0
    })
    .await;
    assert!(rooms.is_empty(), "rooms left: {:?}", rooms.rooms());

    // A connect hook panics after joining a room: reported, the connection closed
    // with 1000, its disconnect hook (panicking too) reported, the room left.
    let mut second_peer = WsPeer::connect(&test.url("/ws?panic=connect")).await;
    let second = connects.next().await;
    let (on, err) = errors.next().await;
    assert_eq!(on.as_ref(), Some(&second));
    assert!(
        matches!(
            err,
            Error::HookPanicked {
                hook: "on_connect",
                ..
            }
        ),
        "{err:?}"
    );
    let (_, close) = second_peer.until_close().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1000));
    let (on, err) = errors.next().await;
    assert_eq!(on.as_ref(), Some(&second));
    assert!(
        matches!(
            err,
            Error::HookPanicked {
                hook: "on_disconnect",
                ..
            }
        ),
        "{err:?}"
    );
    eventually("the second connection to leave", || {
        rooms.connection_count() == 0 && test.server.connection_count() == 0
    })
    .await;
    assert!(rooms.is_empty(), "rooms left: {:?}", rooms.rooms());

    // The server still serves.
    let mut third = WsPeer::connect(&test.url("/ws")).await;
    connects.next().await;
    assert_eq!(third.ask("echo||3||still").await, "__ack_echo||3||still");
    assert!(errors.try_next().is_none());
    drop(third);
    errors.next().await; // its disconnect hook, panicking once more
    test.stop().await;
}

/// Shutdown while many clients pipeline requests: every request a client saw
/// acknowledged was handled by the server exactly once with the data sent, every
/// other request failed with the connection-closed error, and every connection
/// closed normally within the deadline (none had to be dropped).
async fn shutdown_during_heavy_traffic_loses_no_acknowledged_event<R: TestRuntime>() {
    const CLIENTS: usize = 8;
    const IN_FLIGHT: usize = 8;
    let handled = Arc::new(Mutex::new(HashSet::<String>::new()));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let server = Server::<R>::builder()
        .on("echo", {
            let (handled, duplicates) = (handled.clone(), duplicates.clone());
            move |_conn: Conn, event: Event| {
                let text = String::from_utf8_lossy(event.data()).into_owned();
                if !lock(&handled).insert(text) {
                    duplicates.fetch_add(1, Ordering::SeqCst);
                }
                async move { event.into_data() }
            }
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (builder, hooks) = hooked_client(Client::<R>::builder());
        let client = builder.ack_timeout(HOUR).build().unwrap();
        within("dial", client.dial(&test.url("/ws"))).await.unwrap();
        for t in 0..IN_FLIGHT {
            let (client, answered) = (client.clone(), answered.clone());
            tasks.push(R::spawn_task(async move {
                let mut acked = Vec::new();
                // Bounded: shutdown ends it long before.
                for i in 0..1_000_000u64 {
                    let data = format!("{c}-{t}-{i}");
                    match client.emit_with_ack("echo", data.clone()).await {
                        Ok(answer) => {
                            assert_eq!(answer, data.as_bytes(), "a mismatched answer");
                            answered.fetch_add(1, Ordering::SeqCst);
                            acked.push(data);
                        }
                        Err(AckError::ConnectionClosed | AckError::Emit(EmitError::Closed)) => {
                            return acked;
                        }
                        Err(other) => panic!("request {data} failed with {other}"),
                    }
                }
                acked
            }));
        }
        clients.push((client, hooks));
    }
    eventually("traffic under way", || {
        answered.load(Ordering::SeqCst) >= 2_000
    })
    .await;
    let dropped = within("shutdown", test.server.shutdown(GUARD)).await;
    assert_eq!(dropped, 0, "connections dropped at the deadline");
    within("serve() to return", test.serving)
        .await
        .expect("serve returned an error");
    let mut acked = 0;
    for task in tasks {
        for data in within("a client task", task).await {
            acked += 1;
            assert!(
                lock(&handled).contains(&data),
                "{data} was acknowledged but never handled"
            );
        }
    }
    assert!(acked >= 2_000);
    assert_eq!(
        duplicates.load(Ordering::SeqCst),
        0,
        "an event handled twice"
    );
    for (_, mut hooks) in clients {
        let (_, reason) = hooks.disconnects.next().await;
        assert!(reason.is_normal(), "{reason:?}");
    }
}

behaviour_suite! {
    a_killed_peer_fails_pending_acks_on_both_sides_and_cancels_handlers,
    panics_in_handlers_and_hooks_leak_no_connection_or_room,
    shutdown_during_heavy_traffic_loses_no_acknowledged_event,
}
