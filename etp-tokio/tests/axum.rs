//! The server mounted in an axum 0.8 `Router` (`etp_tokio::axum::route`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use common::*;
use etp_tokio::{Client, ClientExt, Conn, Event, Server};

#[derive(Clone, Debug, PartialEq)]
struct User(&'static str);

#[derive(Clone, Debug, PartialEq)]
struct Tag(u32);

/// The app: etp at `/ws` behind a middleware, and an ordinary route.
async fn start_app(server: Server) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/ws", etp_tokio::axum::route(server))
        .route("/health", get(|| async { "ok" }))
        .layer(middleware::from_fn(
            |mut request: Request, next: Next| async move {
                request.extensions_mut().insert(User("ana"));
                next.run(request).await
            },
        ))
        .layer(axum::Extension(Tag(7)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, serving)
}

fn echo_server() -> (Server, Hooks) {
    let (builder, hooks) = hooked(Server::builder());
    let server = builder
        .on("echo", |_conn: Conn, event: Event| async move {
            event.into_data()
        })
        .build()
        .unwrap();
    (server, hooks)
}

#[tokio::test]
async fn a_client_round_trips_an_ack_through_an_axum_route() {
    let (server, mut hooks) = echo_server();
    let (addr, serving) = start_app(server.clone()).await;
    let client = Client::builder().build().unwrap();
    within("dial", client.dial(&format!("ws://{addr}/ws?user=1")))
        .await
        .unwrap();
    assert_eq!(
        within("ack", client.emit_with_ack("echo", "through axum"))
            .await
            .unwrap(),
        "through axum"
    );
    let conn = hooks.connects.next().await;
    let request = conn.request();
    assert_eq!(request.uri().path(), "/ws");
    assert_eq!(request.query_param("user"), Some("1"));
    // The remote address comes from axum's ConnectInfo.
    let remote = request
        .remote_addr()
        .expect("ConnectInfo gives the remote address");
    assert!(remote.ip().is_loopback());
    assert_ne!(remote, addr);
    client.close();
    let (_, reason) = hooks.disconnects.next().await;
    assert!(reason.is_normal(), "{reason:?}");
    assert_eq!(within("shutdown", server.shutdown(GUARD)).await, 0);
    serving.abort();
}

#[tokio::test]
async fn middleware_extensions_reach_the_connection() {
    let (seen_tx, mut seen) = channel::<(Option<User>, Option<Tag>)>();
    let server = Server::builder()
        .on_connect(move |conn: Conn| {
            let extensions = conn.request().extensions();
            let _ = seen_tx.send((
                extensions.get::<User>().cloned(),
                extensions.get::<Tag>().cloned(),
            ));
            async {}
        })
        .build()
        .unwrap();
    let (addr, serving) = start_app(server.clone()).await;
    let mut peer = WsPeer::connect(&format!("ws://{addr}/ws")).await;
    assert_eq!(seen.next().await, (Some(User("ana")), Some(Tag(7))));
    let (_, close) = tokio::join!(
        async { within("shutdown", server.shutdown(GUARD)).await },
        peer.until_close()
    );
    assert_eq!(u16::from(close.1.unwrap().code), 1000);
    serving.abort();
}

#[tokio::test]
async fn other_routes_keep_working_and_etp_answers_its_own_refusals() {
    let (server, mut hooks) = echo_server();
    let (addr, serving) = start_app(server.clone()).await;
    let response = http_exchange(
        addr,
        &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
    let response = http_exchange(
        addr,
        &format!("GET /nothing HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    assert_eq!(response.status, 404);

    // A wrong method on the etp route gets etp's 405, not axum's.
    let response = http_exchange(addr, &upgrade_request("POST", addr, "/ws", "")).await;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(
        response.body,
        "WebSocket protocol violation: handshake request method is not GET but \"POST\"\n"
    );
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none());
    assert!(matches!(err, etp_tokio::Error::Handshake(_)), "{err:?}");
    // A plain GET on the etp route: 426.
    let response = http_exchange(addr, &format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
    assert_eq!(response.status, 426, "{response:?}");
    hooks.errors.next().await;
    // A cross-origin browser: 403.
    let response = http_exchange(
        addr,
        &upgrade_request("GET", addr, "/ws", "Origin: http://evil.example\r\n"),
    )
    .await;
    assert_eq!(response.status, 403, "{response:?}");
    hooks.errors.next().await;
    assert!(hooks.connects.try_next().is_none());
    assert_eq!(within("shutdown", server.shutdown(GUARD)).await, 0);
    serving.abort();
}

#[tokio::test]
async fn after_shutdown_the_route_refuses_upgrades_with_503() {
    let (server, mut hooks) = echo_server();
    let (addr, serving) = start_app(server.clone()).await;
    assert_eq!(
        within("shutdown", server.shutdown(Duration::from_secs(1))).await,
        0
    );
    // axum still listens (it is not ours to stop), but etp takes no new connections.
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", "")).await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.body, "server is shutting down\n");
    let client = Client::builder().build().unwrap();
    assert!(
        within("dial", client.dial(&format!("ws://{addr}/ws")))
            .await
            .is_err()
    );
    assert!(hooks.connects.try_next().is_none());
    // Other routes are unaffected.
    let response = http_exchange(
        addr,
        &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    assert_eq!(response.status, 200);
    serving.abort();
}

#[tokio::test]
async fn a_refusal_during_shutdown_is_reported_like_the_others() {
    let (server, mut hooks) = echo_server();
    let (addr, serving) = start_app(server.clone()).await;
    assert_eq!(within("shutdown", server.shutdown(GUARD)).await, 0);
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", "")).await;
    assert_eq!(response.status, 503, "{response:?}");
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none());
    match err {
        etp_tokio::Error::Handshake(refusal) => assert_eq!(refusal.status().as_u16(), 503),
        other => panic!("expected a handshake error, got {other:?}"),
    }
    serving.abort();
}

/// Authentication split between a tower layer (which knows the user) and etp's hook
/// (which decides who may connect): both see the same request, and what each
/// attaches reaches the connection.
#[tokio::test]
async fn a_tower_layers_user_reaches_the_authentication_hook_and_the_connection() {
    #[derive(Clone, Debug, PartialEq)]
    struct Admitted(bool);

    let (builder, mut hooks) = hooked(Server::builder());
    let server = builder
        .authenticate(|mut request: etp_tokio::Request| async move {
            match request.extensions().get::<User>() {
                Some(User("ana")) => {
                    request.extensions_mut().insert(Admitted(true));
                    Ok(request)
                }
                Some(User(other)) => Err(etp_tokio::HandshakeError::forbidden(format!(
                    "{other} may not connect"
                ))),
                None => Err(etp_tokio::HandshakeError::unauthorized("log in first")),
            }
        })
        .on("whoami", |conn: Conn, _: Event| async move {
            let extensions = conn.request().extensions();
            format!(
                "{:?} {:?}",
                extensions.get::<User>(),
                extensions.get::<Admitted>()
            )
        })
        .build()
        .unwrap();
    // The layer maps a bearer token to a user, as an authentication middleware would.
    let app = axum::Router::new()
        .route("/ws", etp_tokio::axum::route(server.clone()))
        .layer(middleware::from_fn(
            |mut request: Request, next: Next| async move {
                let user = match request.headers().get("authorization") {
                    Some(v) if v == "Bearer t-ana" => Some(User("ana")),
                    Some(v) if v == "Bearer t-bob" => Some(User("bob")),
                    _ => None,
                };
                if let Some(user) = user {
                    request.extensions_mut().insert(user);
                }
                next.run(request).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });

    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", "")).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (401, "log in first\n")
    );
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none());
    assert!(matches!(err, etp_tokio::Error::Refused(_)), "{err:?}");
    let response = http_exchange(
        addr,
        &upgrade_request("GET", addr, "/ws", "Authorization: Bearer t-bob\r\n"),
    )
    .await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (403, "bob may not connect\n")
    );
    hooks.errors.next().await;
    assert!(hooks.connects.try_next().is_none());

    let client = Client::builder().build().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer t-ana".parse().unwrap());
    within(
        "dial",
        client.dial_with_headers(&format!("ws://{addr}/ws"), headers),
    )
    .await
    .unwrap();
    let conn = hooks.connects.next().await;
    assert_eq!(
        conn.request().extensions().get::<Admitted>(),
        Some(&Admitted(true))
    );
    assert_eq!(
        within("ack", client.emit_with_ack("whoami", ""))
            .await
            .unwrap(),
        "Some(User(\"ana\")) Some(Admitted(true))"
    );
    client.close();
    hooks.disconnects.next().await;
    assert_eq!(within("shutdown", server.shutdown(GUARD)).await, 0);
    serving.abort();
}
