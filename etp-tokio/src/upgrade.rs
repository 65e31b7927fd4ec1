//! Turning an HTTP request into an etp connection: the part that standalone serving,
//! hyper and axum share.

use std::net::SocketAddr;

use etp_driver::Request;
use etp_driver::ws::WsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Server;
use crate::transport::TokioTransport;

/// Answers an upgrade request: `101` and the connection runs in a new task, or the
/// refusal (426, 405, 400, 403, 503, or the authentication hook's) with a short text
/// body, reported to the error hook. The server's authentication hook runs after the
/// handshake checks and before `101`.
///
/// Works for any request hyper serves with upgrades enabled (plain hyper, axum). The
/// body type is the caller's: anything built from a `String`. Mounting etp at `/ws` in
/// a plain hyper service:
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::service::service_fn;
/// use hyper_util::rt::TokioIo;
///
/// # async fn run(server: etp_tokio::Server) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// loop {
///     let (stream, remote) = listener.accept().await?;
///     let server = server.clone();
///     let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
///         let server = server.clone();
///         async move {
///             if request.uri().path() == "/ws" {
///                 return Ok::<_, std::convert::Infallible>(
///                     etp_tokio::upgrade::<_, Full<Bytes>>(&server, request, Some(remote)).await,
///                 );
///             }
///             Ok(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
///         }
///     });
///     tokio::spawn(async move {
///         let connection = hyper::server::conn::http1::Builder::new()
///             .serve_connection(TokioIo::new(stream), service)
///             .with_upgrades();
///         let _ = connection.await;
///     });
/// }
/// # }
/// ```
pub async fn upgrade<B, Out>(
    server: &Server,
    mut request: http::Request<B>,
    remote_addr: Option<SocketAddr>,
) -> http::Response<Out>
where
    Out: From<String> + Default,
{
    let accepted = server.accept_upgrade(request.method(), request.version(), request.headers());
    let response = match accepted {
        Ok(response) => response,
        Err(err) => return err.to_response().map(Out::from),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _) = request.into_parts();
    // Before `101`: a refusal is an ordinary HTTP response, and the upgrade future is
    // dropped unused.
    let request = match server.authenticate(Request::new(parts, remote_addr)).await {
        Ok(request) => request,
        Err(refusal) => return refusal.to_response().map(Out::from),
    };
    let server = server.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = server.conn_config();
                // `Upgraded` is a boxed socket that checks for rewound bytes on every
                // read: three layers of calls per read and write. When it holds the
                // plain TCP socket (this crate's server, axum's `serve`), the
                // connection talks to the socket directly.
                match upgraded.downcast::<TokioIo<TcpStream>>() {
                    Ok(hyper::upgrade::Parts { io, read_buf, .. }) => {
                        // `read_buf` (bytes the client sent after its request head) is
                        // a view of hyper's 8 KiB read buffer: copied, so that the
                        // buffer is not kept for the life of the connection.
                        let transport = TokioTransport(io.into_inner());
                        let ws = WsStream::server(transport, &read_buf, config);
                        drop(read_buf);
                        server.serve_connection(ws, request).await;
                    }
                    Err(upgraded) => {
                        let transport = TokioTransport(TokioIo::new(upgraded));
                        let ws = WsStream::server(transport, &[], config);
                        server.serve_connection(ws, request).await;
                    }
                }
            }
            Err(err) => server.report_error(etp_driver::Error::Io(std::io::Error::other(err))),
        }
    });
    response.map(|()| Out::default())
}
