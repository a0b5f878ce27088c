//! A minimal HTTP/1.1 keep-alive client: writes a prepared request, reads one response
//! (status line, headers, `Content-Length` body) and returns the status.
//!
//! Owns one connection. Must never allocate per request beyond its reusable buffer: a general
//! client would spend the CPU this benchmark wants to leave to hookd on a 2-core machine.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request got no HTTP status.
#[derive(Debug, PartialEq, Eq, Clone, Copy, PartialOrd, Ord)]
pub enum Failure {
    Connect,
    Io,
    Closed,
    Protocol,
    Timeout,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Closed => "closed_by_server",
            Self::Protocol => "bad_response",
            Self::Timeout => "timeout",
        }
    }
}

/// The parts of a response head the client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
    pub content_length: usize,
    /// The server said `Connection: close`.
    pub close: bool,
}

/// Parse a response head from `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf).map_err(|_| Failure::Protocol)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) => {
            let mut content_length = 0;
            let mut close = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or(Failure::Protocol)?;
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    // hookd always sends a length; anything else is not worth parsing here.
                    return Err(Failure::Protocol);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                }
            }
            Ok(Some(Head {
                status: resp.code.ok_or(Failure::Protocol)?,
                len,
                content_length,
                close,
            }))
        }
    }
}

/// One keep-alive connection, reconnected on demand.
pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Drop the connection (after a timeout the stream is in an unknown state).
    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// Send `request` and return the response status.
    pub async fn send(&mut self, request: &[u8]) -> Result<u16, Failure> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|_| Failure::Connect)?;
            s.set_nodelay(true).map_err(|_| Failure::Connect)?;
            self.stream = Some(s);
        }
        let result = self.exchange(request).await;
        match result {
            Ok((status, false)) => Ok(status),
            Ok((status, true)) => {
                self.stream = None;
                Ok(status)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, bool), Failure> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await.map_err(io_failure)?;
        self.buf.clear();
        loop {
            if stream.read_buf(&mut self.buf).await.map_err(io_failure)? == 0 {
                return Err(Failure::Closed);
            }
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.len + head.content_length;
                while self.buf.len() < total {
                    if stream.read_buf(&mut self.buf).await.map_err(io_failure)? == 0 {
                        return Err(Failure::Closed);
                    }
                }
                return Ok((head.status, head.close));
            }
        }
    }
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Failure::Closed,
        _ => Failure::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head() {
        let raw = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"a\":\"b\"}xxx";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 202);
        assert_eq!(h.content_length, 12);
        assert_eq!(h.len, raw.len() - 12);
        assert!(!h.close);
    }

    #[test]
    fn partial_head_needs_more_and_garbage_fails() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert_eq!(parse_head(b"NOT HTTP\r\n\r\n"), Err(Failure::Protocol));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(Failure::Protocol)
        );
    }

    #[test]
    fn connection_close_is_noticed() {
        let h = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.close), (503, true));
    }
}
