//! Dialing: ws, wss, http and https URLs, with extra headers and reconnection.

use std::future::Future;

use etp_driver::{Conn, DialError, Request};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Client;
use etp_driver::handshake::websocket_config;

/// Connecting an etp [`Client`] over tokio sockets.
pub trait ClientExt {
    /// Connects to `url` (`ws`, `wss`, `http` or `https`); with reconnection
    /// configured, keeps the client connected afterwards.
    fn dial(&self, url: &str) -> impl Future<Output = Result<Conn, DialError>> + Send;

    /// [`dial`](Self::dial) with extra request headers (authentication, cookies).
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

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    url: &str,
    headers: &http::HeaderMap,
    config: &etp_driver::ConnConfig,
) -> Result<(Stream, Request), DialError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| DialError::InvalidRequest(e.to_string()))?;
    for (name, value) in headers {
        request.headers_mut().append(name, value.clone());
    }
    let (parts, ()) = request.clone().into_parts();
    let config = websocket_config(config);
    #[cfg(feature = "rustls")]
    install_crypto_provider();
    let (ws, _response) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|err| match err {
            tokio_tungstenite::tungstenite::Error::Io(err) => DialError::Io(err),
            err => DialError::Handshake(err),
        })?;
    let remote = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
        #[cfg(feature = "rustls")]
        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => tls.get_ref().0.peer_addr().ok(),
        _ => None,
    };
    Ok((ws, Request::new(parts, remote)))
}

/// rustls needs one process-wide crypto provider; install ring's unless the
/// application installed one.
#[cfg(feature = "rustls")]
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
