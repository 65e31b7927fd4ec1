//! A minimal HTTP/1.1 upgrade exchange over any byte stream: read one request head,
//! answer `101` or the refusal. async-std has no hyper, and one request per
//! connection is all a WebSocket upgrade needs.

use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head accepted; a longer one is refused with 431.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// A request head, and the bytes read past it (the client may send its first frame
/// right after the handshake).
pub(crate) struct Head {
    pub(crate) request: http::Request<()>,
    pub(crate) rest: Vec<u8>,
}

/// Why no request head could be read.
pub(crate) enum HeadError {
    /// The connection ended or failed before a full head arrived: nobody to answer.
    Gone,
    /// The head is malformed or too large: answer with this status and text.
    Refuse(http::StatusCode, &'static str),
}

/// Reads one request head.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Gone)?;
        if n == 0 {
            return Err(HeadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let request = to_http(&parsed)?;
                return Ok(Head {
                    request,
                    rest: buf.split_off(len),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(HeadError::Refuse(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Refuse(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many request headers",
                ));
            }
            Err(_) => {
                return Err(HeadError::Refuse(
                    http::StatusCode::BAD_REQUEST,
                    "malformed HTTP request",
                ));
            }
        }
    }
}

fn to_http(parsed: &httparse::Request<'_, '_>) -> Result<http::Request<()>, HeadError> {
    let bad = |_| HeadError::Refuse(http::StatusCode::BAD_REQUEST, "malformed HTTP request");
    let version = match parsed.version {
        Some(1) => http::Version::HTTP_11,
        _ => http::Version::HTTP_10,
    };
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(version);
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    builder.body(()).map_err(bad)
}

/// Writes a response head (and text body) in one write.
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &http::Response<String>,
) -> std::io::Result<()> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    if status != http::StatusCode::SWITCHING_PROTOCOLS {
        out.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n",
            response.body().len()
        ));
    }
    out.push_str("\r\n");
    out.push_str(response.body());
    stream.write_all(out.as_bytes()).await?;
    stream.flush().await
}
