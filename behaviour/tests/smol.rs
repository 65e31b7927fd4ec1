//! etp-async-std when the application's executor is smol: the server and the client
//! run entirely under `smol::block_on` (the accept loop on smol's executor), with
//! async-io as the reactor. The adapter spawns its connection tasks on async-std's
//! executor, which shares that reactor.

use std::time::Duration;

use etp_async_std::{Client, ClientExt, Conn, Event, Server, ServerExt};
use etp_behaviour::{channel, eventually, hooked, within};

#[test]
fn an_async_std_server_and_client_work_under_smol() {
    smol::block_on(async {
        let (builder, mut hooks) = hooked(Server::builder());
        let server = builder
            .on("echo", |_conn: Conn, event: Event| async move {
                // A timer of smol's reactor inside a handler.
                smol::Timer::after(Duration::from_millis(1)).await;
                event.into_data()
            })
            .build()
            .unwrap();
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = smol::spawn({
            let server = server.clone();
            async move { server.serve(listener).await }
        });

        let (news_tx, mut news) = channel::<String>();
        let client = Client::builder()
            .on("question", |_conn: Conn, event: Event| async move {
                format!("smol answers {}", String::from_utf8_lossy(event.data()))
            })
            .on("news", move |_conn: Conn, event: Event| {
                news_tx.send(String::from_utf8_lossy(event.data()).into_owned());
                async {}
            })
            .build()
            .unwrap();
        within("dial", client.dial(&format!("ws://{addr}/ws")))
            .await
            .unwrap();
        let conn = hooks.connects.next().await;
        conn.join("room");

        // Client -> server and server -> client acknowledgements.
        assert_eq!(
            within("client -> server", client.emit_with_ack("echo", "ping"))
                .await
                .unwrap(),
            "ping"
        );
        assert_eq!(
            within("server -> client", conn.emit_with_ack("question", "q"))
                .await
                .unwrap(),
            "smol answers q"
        );
        // A broadcast.
        let report = server
            .rooms()
            .broadcast(["room"], "news", b"hello smol", None)
            .unwrap();
        assert_eq!(report.queued, 1);
        assert_eq!(news.next().await, "hello smol");

        // Shutdown closes the client normally and ends the accept loop.
        assert_eq!(
            within("shutdown", server.shutdown(Duration::from_secs(5))).await,
            0
        );
        within("serve to return", serving).await.unwrap();
        let (_, reason) = hooks.disconnects.next().await;
        assert!(reason.is_normal(), "{reason:?}");
        eventually("the client to see the close", || !client.is_connected()).await;
    });
}
