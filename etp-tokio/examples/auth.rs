//! Authentication and origin rules for etp mounted in axum.
//!
//! ```sh
//! cargo run -p etp-tokio --example auth                   # runs the checks below, exits
//! cargo run -p etp-tokio --example auth -- 127.0.0.1:8080 # serves until Ctrl-C
//! ```
//!
//! * Origins, CORS-style: browsers may connect from the server's own host, from
//!   `localhost` on any port, and from any `*.example.com` page; other pages get 403
//!   before anything else runs. Non-browser clients send no `Origin` and pass.
//! * Tokens: the authentication hook runs before the upgrade. It takes the token from
//!   `?token=` (browsers cannot set headers on a WebSocket) or `Authorization: Bearer`,
//!   looks it up (asynchronously, as a real token service would be), and refuses with
//!   401 and a message, or 403 for an admin token used from a page other than the
//!   admin console. An accepted request carries the `User` into the connection.
//! * A tower layer in front (here, a request id) shows that values earlier layers set
//!   reach the hook and the handlers as well.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request as HttpRequest;
use axum::middleware::{self, Next};
use etp_tokio::{Client, ClientExt, Conn, Event, HandshakeError, Json, Request, Server};

#[derive(Clone, Debug, serde::Serialize)]
struct User {
    name: &'static str,
    admin: bool,
}

/// Set by the tower layer.
#[derive(Clone, Copy, Debug)]
struct RequestId(u64);

/// The token service: a lookup that takes time, as a database or an HTTP call would.
async fn lookup(token: &str) -> Option<User> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    match token {
        "ana-token" => Some(User {
            name: "ana",
            admin: false,
        }),
        "root-token" => Some(User {
            name: "root",
            admin: true,
        }),
        _ => None,
    }
}

fn token(request: &Request) -> Option<&str> {
    if let Some(token) = request.query_param("token") {
        return Some(token);
    }
    let value = request.headers().get(http::header::AUTHORIZATION)?;
    value.to_str().ok()?.strip_prefix("Bearer ")
}

/// The authentication hook: who is this, and may they connect from where they are?
async fn authenticate(mut request: Request) -> Result<Request, HandshakeError> {
    let Some(token) = token(&request) else {
        return Err(HandshakeError::unauthorized(
            "a token is required: ?token=... or Authorization: Bearer ...",
        ));
    };
    let Some(user) = lookup(token).await else {
        return Err(HandshakeError::unauthorized("unknown or expired token"));
    };
    // A rule the origin policy cannot express: admin tokens only from the console.
    let origin = request.headers().get(http::header::ORIGIN);
    if user.admin && origin.is_some_and(|o| o != "https://admin.example.com") {
        return Err(HandshakeError::forbidden(
            "admin tokens may only be used from https://admin.example.com",
        ));
    }
    request.extensions_mut().insert(user);
    Ok(request)
}

fn server() -> Result<Server, etp_tokio::BuildError> {
    Server::builder()
        .origin_patterns(["localhost:*", "*.example.com"])
        .authenticate(authenticate)
        .on_connect(|conn: Conn| async move {
            let request = conn.request();
            let user = request.extensions().get::<User>().cloned();
            let id = request.extensions().get::<RequestId>().map(|id| id.0);
            println!("server: {user:?} connected (request {id:?} of the tower layer)");
        })
        .on("whoami", |conn: Conn, _: Event| async move {
            Json(conn.request().extensions().get::<User>().cloned())
        })
        .on_error(|_, err| println!("server: {err}"))
        .build()
}

fn app(server: Server) -> axum::Router {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    axum::Router::new()
        .route("/ws", etp_tokio::axum::route(server))
        .layer(middleware::from_fn(
            |mut request: HttpRequest, next: Next| async move {
                let id = RequestId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
                request.extensions_mut().insert(id);
                next.run(request).await
            },
        ))
}

async fn dial(url: &str, headers: &[(&'static str, &'static str)]) -> String {
    let client = match Client::builder().build() {
        Ok(client) => client,
        Err(err) => return format!("cannot build a client: {err}"),
    };
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, http::HeaderValue::from_static(value));
    }
    let outcome = match client.dial_with_headers(url, map).await {
        Ok(_) => match client
            .emit_with_ack_json::<_, Option<serde_json::Value>>("whoami", &())
            .await
        {
            Ok(user) => format!("connected as {}", user.unwrap_or_default()),
            Err(err) => format!("connected, but whoami failed: {err}"),
        },
        Err(err) => format!("refused: {err}"),
    };
    client.close();
    outcome
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = server()?;
    let serve_at: Option<SocketAddr> = std::env::args().nth(1).map(|a| a.parse()).transpose()?;
    let listener =
        tokio::net::TcpListener::bind(serve_at.unwrap_or(([127, 0, 0, 1], 0).into())).await?;
    let addr = listener.local_addr()?;
    let app = app(server.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    if serve_at.is_some() {
        println!("serving on ws://{addr}/ws?token=ana-token; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
        server.shutdown(Duration::from_secs(5)).await;
        return Ok(());
    }

    let url = format!("ws://{addr}/ws");
    for (what, url, headers) in [
        (
            "token in the query",
            format!("{url}?token=ana-token"),
            &[][..],
        ),
        (
            "token in a header",
            url.clone(),
            &[("authorization", "Bearer root-token")][..],
        ),
        ("no token", url.clone(), &[][..]),
        ("unknown token", format!("{url}?token=guess"), &[][..]),
        (
            "a page on an allowed origin",
            format!("{url}?token=ana-token"),
            &[("origin", "https://app.example.com")][..],
        ),
        (
            "a page on a foreign origin",
            format!("{url}?token=ana-token"),
            &[("origin", "https://evil.test")][..],
        ),
        (
            "an admin token from an ordinary page",
            format!("{url}?token=root-token"),
            &[("origin", "https://app.example.com")][..],
        ),
    ] {
        let outcome = dial(&url, headers).await;
        println!("client, {what}: {outcome}");
        // Let the server's lines come before the next attempt's.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown(Duration::from_secs(5)).await;
    serving.abort();
    Ok(())
}
