//! Dialing on async-std: ws, wss (rustls), http and https URLs, extra headers,
//! reconnection.

use std::future::Future;

use async_std::net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use etp_driver::{Conn, DialError, Request};

use crate::Client;
use etp_driver::handshake::websocket_config;

#[cfg(feature = "rustls")]
type TlsStream = futures_rustls::client::TlsStream<TcpStream>;
#[cfg(not(feature = "rustls"))]
type TlsStream = TcpStream;

/// The socket under a client connection: plain TCP or TLS.
#[derive(Debug)]
pub(crate) enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Socket::Plain($s) => $e,
            Socket::Tls($s) => $e,
        }
    };
}

impl futures_util::io::AsyncRead for Socket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_read(cx, buf))
    }
}

impl futures_util::io::AsyncWrite for Socket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_flush(cx))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => std::pin::Pin::new(s).poll_close(cx))
    }
}

/// Connecting an etp [`Client`] over async-std sockets.
pub trait ClientExt {
    /// Connects to `url` (`ws`, `wss`, `http` or `https`); with reconnection
    /// configured, keeps the client connected afterwards.
    fn dial(&self, url: &str) -> impl Future<Output = Result<Conn, DialError>> + Send;

    /// [`dial`](Self::dial) with extra request headers.
    fn dial_with_headers(
        &self,
        url: &str,
        headers: http::HeaderMap,
    ) -> impl Future<Output = Result<Conn, DialError>> + Send;
}

impl ClientExt for Client {
    async fn dial(&self, url: &str) -> Result<Conn, DialError> {
        self.dial_with_headers(url, http::HeaderMap::new()).await
    }

    async fn dial_with_headers(
        &self,
        url: &str,
        headers: http::HeaderMap,
    ) -> Result<Conn, DialError> {
        let config = self.conn_config().clone();
        let connect = move |url: String, headers: http::HeaderMap| {
            let config = config.clone();
            async move { connect(&url, &headers, &config).await }
        };
        self.dial_with(url, headers, connect).await
    }
}

async fn connect(
    url: &str,
    headers: &http::HeaderMap,
    config: &etp_driver::ConnConfig,
) -> Result<(WebSocketStream<Socket>, Request), DialError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| DialError::InvalidRequest(e.to_string()))?;
    for (name, value) in headers {
        request.headers_mut().append(name, value.clone());
    }
    let uri = request.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| DialError::InvalidRequest(format!("{url:?} has no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(DialError::Io)?;
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().ok();
    let socket = if tls {
        Socket::Tls(Box::new(tls_connect(&host, tcp).await?))
    } else {
        Socket::Plain(tcp)
    };
    let (parts, ()) = request.clone().into_parts();
    let config = websocket_config(config);
    let (ws, _response) =
        async_tungstenite::client_async_with_config(request, socket, Some(config))
            .await
            .map_err(|err| match err {
                async_tungstenite::tungstenite::Error::Io(err) => DialError::Io(err),
                err => DialError::Handshake(err),
            })?;
    Ok((ws, Request::new(parts, remote)))
}

#[cfg(feature = "rustls")]
async fn tls_connect(host: &str, tcp: TcpStream) -> Result<TlsStream, DialError> {
    use std::sync::{Arc, OnceLock};

    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
        // ring supports the default protocol versions; the fallback is unreachable in
        // practice but keeps this path free of panics.
        Arc::new(config.unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }))
    });
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| DialError::InvalidRequest(format!("bad TLS server name {host:?}: {e}")))?;
    futures_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(DialError::Io)
}

#[cfg(not(feature = "rustls"))]
async fn tls_connect(host: &str, _tcp: TcpStream) -> Result<TlsStream, DialError> {
    Err(DialError::InvalidRequest(format!(
        "wss://{host} needs etp-async-std's `rustls` feature"
    )))
}
