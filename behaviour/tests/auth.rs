//! The authentication hook (`ServerBuilder::authenticate`) on every runtime: it runs
//! before the upgrade, after the handshake checks, may await, refuses with its own
//! status and message, and what it attaches reaches `on_connect` and the handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etp_behaviour::raw::*;
use etp_behaviour::*;
use etp_driver::{Client, Conn, DialError, Error, Event, HandshakeError, Request, Server};

#[derive(Clone, Debug, PartialEq)]
struct User(String);

/// The token: `?token=` or `Authorization: Bearer`.
fn token(request: &Request) -> Option<String> {
    if let Some(token) = request.query_param("token") {
        return Some(token.to_owned());
    }
    let header = request.headers().get(http::header::AUTHORIZATION)?;
    let value = header.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// A server whose hook awaits (a token service, say), then accepts `good` as ana,
/// refuses `banned` with 403, panics on `panic`, and refuses anything else with 401.
/// It counts its runs.
fn start<R: TestRuntime>() -> (TestServer<R>, Hooks, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let (builder, hooks) = hooked(Server::<R>::builder());
    let server = builder
        .authenticate(move |mut request: Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                R::sleep(Duration::from_millis(5)).await;
                match token(&request).as_deref() {
                    Some("good") => {
                        request.extensions_mut().insert(User("ana".to_owned()));
                        Ok(request)
                    }
                    Some("banned") => Err(HandshakeError::forbidden("this account is banned")),
                    Some("panic") => panic!("the token service exploded"),
                    _ => Err(HandshakeError::unauthorized("a valid token is required")),
                }
            }
        })
        .on("whoami", |conn: Conn, _: Event| async move {
            let user = conn.request().extensions().get::<User>().cloned();
            user.map(|u| u.0).unwrap_or_default()
        })
        .build()
        .unwrap();
    (TestServer::start(server), hooks, runs)
}

/// Asserts a refusal by the hook: status, exact body, and the error hook's report.
async fn expect_refused(hooks: &mut Hooks, response: &HttpResponse, status: u16, body: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.body, format!("{body}\n"), "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none());
    match err {
        Error::Refused(refusal) => {
            assert_eq!(refusal.status().as_u16(), status);
            assert_eq!(refusal.message(), body);
        }
        other => panic!("expected Error::Refused, got {other:?}"),
    }
    assert!(hooks.connects.try_next().is_none());
}

async fn a_valid_token_connects_and_the_hooks_values_reach_on_connect_and_handlers<
    R: TestRuntime,
>() {
    let (test, mut hooks, runs) = start::<R>();
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws?token=good")))
        .await
        .unwrap();
    let conn = hooks.connects.next().await;
    assert_eq!(
        conn.request().extensions().get::<User>(),
        Some(&User("ana".to_owned()))
    );
    // The request the hook returned is the one the connection keeps.
    assert_eq!(conn.request().query_param("token"), Some("good"));
    assert_eq!(conn.request().method(), http::Method::GET);
    assert_eq!(
        within("ack", client.emit_with_ack("whoami", ""))
            .await
            .unwrap(),
        "ana"
    );
    client.close();

    // A header works as well as the query.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer good"),
    );
    within("dial", client.dial_with_headers(&test.url("/ws"), headers))
        .await
        .unwrap();
    hooks.connects.next().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    client.close();
    test.stop().await;
}

async fn a_refusal_is_the_hooks_status_and_message_and_no_connection<R: TestRuntime>() {
    let (test, mut hooks, _) = start::<R>();
    let addr = test.addr;
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws", "")).await;
    expect_refused(&mut hooks, &response, 401, "a valid token is required").await;
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws?token=banned", "")).await;
    expect_refused(&mut hooks, &response, 403, "this account is banned").await;

    // A client hears the refusal as a failed handshake with that status.
    let client = Client::<R>::builder().build().unwrap();
    match within("dial", client.dial(&test.url("/ws?token=bad"))).await {
        Err(err @ DialError::Handshake(_)) => assert_eq!(
            err.to_string(),
            "websocket handshake failed: HTTP error: 401 Unauthorized: a valid token is required"
        ),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    hooks.errors.next().await;
    assert!(hooks.connects.try_next().is_none());
    test.stop().await;
}

async fn the_hook_runs_only_for_upgrades_that_pass_the_handshake_checks<R: TestRuntime>() {
    let (test, mut hooks, runs) = start::<R>();
    let addr = test.addr;
    // Wrong method, no upgrade, foreign origin: refused before the hook.
    let response = http_exchange(addr, &upgrade_request("POST", addr, "/ws?token=good", "")).await;
    assert_eq!(response.status, 405, "{response:?}");
    let response = http_exchange(
        addr,
        &format!("GET /ws?token=good HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    assert_eq!(response.status, 426, "{response:?}");
    let response = http_exchange(
        addr,
        &upgrade_request(
            "GET",
            addr,
            "/ws?token=good",
            "Origin: http://evil.example\r\n",
        ),
    )
    .await;
    assert_eq!(response.status, 403, "{response:?}");
    for _ in 0..3 {
        let (_, err) = hooks.errors.next().await;
        assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    test.stop().await;
}

async fn a_panicking_hook_refuses_with_500_and_is_reported<R: TestRuntime>() {
    let (test, mut hooks, _) = start::<R>();
    let addr = test.addr;
    let response = http_exchange(addr, &upgrade_request("GET", addr, "/ws?token=panic", "")).await;
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(response.body, "internal server error\n");
    let (conn, err) = hooks.errors.next().await;
    assert!(conn.is_none());
    match err {
        Error::HookPanicked { hook, message } => {
            assert_eq!(hook, "authenticate");
            assert_eq!(message, "the token service exploded");
        }
        other => panic!("expected a hook panic, got {other:?}"),
    }
    // The server goes on serving.
    let client = Client::<R>::builder().build().unwrap();
    within("dial", client.dial(&test.url("/ws?token=good")))
        .await
        .unwrap();
    hooks.connects.next().await;
    client.close();
    test.stop().await;
}

/// As after any refusal, HTTP/1.1 keeps the connection: the client may retry on it
/// with credentials.
async fn after_a_refusal_the_same_connection_can_carry_an_authenticated_upgrade<R: TestRuntime>() {
    let (test, mut hooks, _) = start::<R>();
    let addr = test.addr;
    let (response, mut socket) =
        http_exchange_keeping(addr, &upgrade_request("GET", addr, "/ws", "")).await;
    assert_eq!(response.status, 401, "{response:?}");
    hooks.errors.next().await;
    socket
        .writer
        .write_raw(upgrade_request("GET", addr, "/ws", "Authorization: Bearer good\r\n").as_bytes())
        .await
        .unwrap();
    let head = socket.reader.head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");
    let conn = hooks.connects.next().await;
    assert_eq!(
        conn.request().extensions().get::<User>(),
        Some(&User("ana".to_owned()))
    );
    drop(socket);
    test.stop().await;
}

etp_behaviour::behaviour_suite! {
    a_valid_token_connects_and_the_hooks_values_reach_on_connect_and_handlers,
    a_refusal_is_the_hooks_status_and_message_and_no_connection,
    the_hook_runs_only_for_upgrades_that_pass_the_handshake_checks,
    a_panicking_hook_refuses_with_500_and_is_reported,
    after_a_refusal_the_same_connection_can_carry_an_authenticated_upgrade,
}
