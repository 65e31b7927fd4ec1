//! Cross-runtime interoperability: an async-std client against a tokio server and a
//! tokio client against an async-std server, in one process. Acknowledgements both
//! ways, nested requests, many requests at once, and room broadcasts that reach clients
//! of the other runtime (and of the server's own runtime, in the same room).

use std::future::Future;

use etp_behaviour::*;
use etp_driver::{Client, Conn, Event, Server};
use futures_util::future::join_all;

/// The scenario, with the server on `S` and the "foreign" client on `C`. A client on
/// the server's own runtime shares the room.
async fn server_and_client_of_different_runtimes<S: TestRuntime, C: TestRuntime>() {
    let (builder, mut hooks) = hooked(Server::<S>::builder());
    let server = builder
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        // The server asks the client inside the handler of the client's request.
        .on("outer", |conn: Conn, event: Event| async move {
            let who = conn
                .emit_with_ack("whoami", "")
                .await
                .expect("the client answers while the server handler waits");
            format!(
                "{} from {}",
                String::from_utf8_lossy(event.data()),
                String::from_utf8_lossy(&who)
            )
        })
        .on("inner", |_conn: Conn, event: Event| async move {
            format!(
                "{} server saw {}",
                S::NAME,
                String::from_utf8_lossy(event.data())
            )
        })
        // Broadcast to the lobby on behalf of the sender, skipping it.
        .on("shout", |conn: Conn, event: Event| async move {
            let rooms = conn.server_rooms().expect("a server connection");
            let report = rooms
                .broadcast(["lobby"], "news", event.data(), Some(conn.id()))
                .expect("a valid name");
            report.queued.to_string()
        })
        .build()
        .unwrap();
    let test = TestServer::start(server);
    let url = test.url("/ws");

    let (foreign_news_tx, mut foreign_news) = channel::<String>();
    let foreign = Client::<C>::builder()
        .on("whoami", |_conn: Conn, _event: Event| async { C::NAME })
        // The client asks the server inside the handler of the server's request.
        .on("outer", |conn: Conn, event: Event| async move {
            let answer = conn
                .emit_with_ack("inner", event.into_data())
                .await
                .expect("the server answers while the client handler waits");
            format!("client got [{}]", String::from_utf8_lossy(&answer))
        })
        .on("question", |_conn: Conn, event: Event| async move {
            format!(
                "{} answers {}",
                C::NAME,
                String::from_utf8_lossy(event.data())
            )
        })
        .on("news", news_recorder(foreign_news_tx))
        .build()
        .unwrap();
    within("the foreign dial", foreign.dial(&url))
        .await
        .unwrap();
    let foreign_conn = hooks.connects.next().await;
    foreign_conn.join("lobby");

    let (native_news_tx, mut native_news) = channel::<String>();
    let native = Client::<S>::builder()
        .on("news", news_recorder(native_news_tx))
        .build()
        .unwrap();
    within("the native dial", native.dial(&url)).await.unwrap();
    let native_conn = hooks.connects.next().await;
    native_conn.join("lobby");
    assert_eq!(test.server.rooms().len("lobby"), 2);

    // Client -> server and server -> client.
    assert_eq!(
        within("client -> server", foreign.emit_with_ack("echo", "hi"))
            .await
            .unwrap(),
        "hi"
    );
    assert_eq!(
        within(
            "server -> client",
            foreign_conn.emit_with_ack("question", "q")
        )
        .await
        .unwrap(),
        format!("{} answers q", C::NAME).as_str()
    );
    // Nested, both ways.
    assert_eq!(
        within(
            "client -> server -> client",
            foreign.emit_with_ack("outer", "hi")
        )
        .await
        .unwrap(),
        format!("hi from {}", C::NAME).as_str()
    );
    assert_eq!(
        within(
            "server -> client -> server",
            foreign_conn.emit_with_ack("outer", "yo")
        )
        .await
        .unwrap(),
        format!("client got [{} server saw yo]", S::NAME).as_str()
    );
    // Many at once, both ways, each with its own reply.
    let to_server = (0..200).map(|i| {
        let foreign = foreign.clone();
        async move { (i, foreign.emit_with_ack("echo", i.to_string()).await) }
    });
    let to_client = (0..200).map(|i| {
        let conn = foreign_conn.clone();
        async move { (i, conn.emit_with_ack("question", i.to_string()).await) }
    });
    let (to_server, to_client) = within("400 requests", async {
        futures_util::join!(join_all(to_server), join_all(to_client))
    })
    .await;
    for (i, answer) in to_server {
        assert_eq!(answer.unwrap(), i.to_string().as_str());
    }
    for (i, answer) in to_client {
        assert_eq!(answer.unwrap(), format!("{} answers {i}", C::NAME).as_str());
    }

    // A broadcast from the server reaches both runtimes' clients.
    let report = test
        .server
        .rooms()
        .broadcast(["lobby"], "news", b"to all", None)
        .unwrap();
    assert_eq!((report.queued, report.skipped), (2, 0));
    assert_eq!(foreign_news.next().await, "to all");
    assert_eq!(native_news.next().await, "to all");
    // A client's broadcast (through a handler) reaches the other runtime's client.
    let queued = within("shout", foreign.emit_with_ack("shout", "from the foreign"))
        .await
        .unwrap();
    assert_eq!(queued, "1");
    assert_eq!(native_news.next().await, "from the foreign");
    let queued = within("shout", native.emit_with_ack("shout", "from the native"))
        .await
        .unwrap();
    assert_eq!(queued, "1");
    assert_eq!(foreign_news.next().await, "from the native");
    assert!(foreign_news.try_next().is_none());
    assert!(native_news.try_next().is_none());

    // A normal close each way.
    foreign.close();
    let (gone, reason) = hooks.disconnects.next().await;
    assert_eq!(gone, foreign_conn);
    assert!(reason.is_normal(), "{reason:?}");
    // (The disconnect hook runs while the connection is still in its rooms.)
    eventually("the foreign connection to leave the lobby", || {
        test.server.rooms().len("lobby") == 1
    })
    .await;
    assert_eq!(test.server.rooms().members(["lobby"]), [native_conn]);
    assert_eq!(test.stop().await, 0);
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    eventually("the native client to see the close", || {
        !native.is_connected()
    })
    .await;
}

/// A `news` handler that records what it gets.
fn news_recorder(
    seen: Tx<String>,
) -> impl Fn(Conn, Event) -> std::future::Ready<()> + Send + Sync + 'static {
    move |_conn: Conn, event: Event| {
        seen.send(String::from_utf8_lossy(event.data()).into_owned());
        std::future::ready(())
    }
}

/// Runs `test` with both runtimes available: a tokio runtime entered on this thread
/// (its workers run the tokio side), and async-std's global executor.
fn on_both<F: Future<Output = ()>>(driver: &str, test: F) {
    match driver {
        "tokio" => TokioRuntime::block_on(test),
        _ => {
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let _entered = tokio.enter();
            AsyncStdRuntime::block_on(test);
        }
    }
}

#[test]
fn an_async_std_client_talks_to_a_tokio_server() {
    on_both(
        "async-std",
        server_and_client_of_different_runtimes::<TokioRuntime, AsyncStdRuntime>(),
    );
}

#[test]
fn a_tokio_client_talks_to_an_async_std_server() {
    on_both(
        "tokio",
        server_and_client_of_different_runtimes::<AsyncStdRuntime, TokioRuntime>(),
    );
}

#[test]
fn an_async_std_client_talks_to_a_tokio_server_driven_by_tokio() {
    on_both(
        "tokio",
        server_and_client_of_different_runtimes::<TokioRuntime, AsyncStdRuntime>(),
    );
}

#[test]
fn a_tokio_client_talks_to_an_async_std_server_driven_by_async_std() {
    on_both(
        "async-std",
        server_and_client_of_different_runtimes::<AsyncStdRuntime, TokioRuntime>(),
    );
}
