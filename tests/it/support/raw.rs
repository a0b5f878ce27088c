//! Raw sockets for the tests that speak HTTP byte by byte (slow clients, silent bodies,
//! `Expect: 100-continue`): the server's address and reading until the server closes.
//!
//! Owns nothing but these two helpers; it must never hide what a test sends.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::TestServer;

/// `host:port` of the in-process server, for a raw TCP connection.
pub fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Read whatever the server sends until it closes the connection (or `within` passes).
pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}
