//! One health probe: a TCP connect, or an HTTP `GET` judged by its status line.

use crate::config::Probe;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest status line read from a server.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe did not pass, for the log.
pub(super) enum Failed {
    /// The server refused, did not answer in time, or answered wrongly.
    Server(ProbeError),
    /// This host could not open a socket for the probe (file descriptors, memory or local
    /// ports used up), so it says nothing about the server.
    Local(ProbeError),
}

/// What went wrong in one probe; its text is what the log and the status page show.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// No answer, or no whole status line, within the check's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TCP connection was not opened.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The request could not be written.
    #[error("send: {0}")]
    Send(std::io::Error),
    /// The answer could not be read.
    #[error("read: {0}")]
    Read(std::io::Error),
    /// More than [`MAX_STATUS_LINE`] bytes came with no line end.
    #[error("status line too long")]
    StatusLineTooLong,
    /// The server closed before a whole status line.
    #[error("connection closed before a status line")]
    ClosedEarly,
    /// The first line is not `HTTP/1.x NNN`.
    #[error("not an HTTP response")]
    NotHttp,
    /// An answer, with a status the check does not accept.
    #[error("status {status}, expected {}", expected_text(expected))]
    Status {
        /// The status received.
        status: u16,
        /// The statuses the check accepts; empty for any 2xx.
        expected: Vec<u16>,
    },
}

fn expected_text(expected: &[u16]) -> String {
    if expected.is_empty() {
        "2xx".to_string()
    } else {
        format!("one of {expected:?}")
    }
}

/// Probes `addr`.
pub(super) async fn run(
    probe: &Probe,
    addr: SocketAddr,
    default_host: &str,
    timeout: Duration,
) -> Result<(), Failed> {
    match tokio::time::timeout(timeout, attempt(probe, addr, default_host)).await {
        Ok(result) => result,
        Err(_) => Err(Failed::Server(ProbeError::Timeout(timeout))),
    }
}

async fn attempt(probe: &Probe, addr: SocketAddr, default_host: &str) -> Result<(), Failed> {
    let stream = TcpStream::connect(addr).await.map_err(connect_failed)?;
    exchange(probe, stream, default_host)
        .await
        .map_err(Failed::Server)
}

fn connect_failed(e: std::io::Error) -> Failed {
    let local = e.kind() == std::io::ErrorKind::AddrNotAvailable
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
    let why = ProbeError::Connect(e);
    if local {
        Failed::Local(why)
    } else {
        Failed::Server(why)
    }
}

/// Sends an HTTP probe's request on `stream` and judges the answer; a TCP probe has passed
/// once connected.
async fn exchange(
    probe: &Probe,
    mut stream: TcpStream,
    default_host: &str,
) -> Result<(), ProbeError> {
    let Probe::Http {
        path,
        host,
        expect_status,
    } = probe
    else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edgeproxy-health-check\r\nConnection: close\r\n\r\n",
        host.as_deref().unwrap_or(default_host)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Send)?;
    let status = read_status(&mut stream).await?;
    let expected = if expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        expect_status.contains(&status)
    };
    if expected {
        Ok(())
    } else {
        Err(ProbeError::Status {
            status,
            expected: expect_status.clone(),
        })
    }
}

async fn read_status(stream: &mut TcpStream) -> Result<u16, ProbeError> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        if buf.len() > MAX_STATUS_LINE {
            return Err(ProbeError::StatusLineTooLong);
        }
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Read)?;
        if n == 0 {
            return Err(ProbeError::ClosedEarly);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status(&buf).ok_or(ProbeError::NotHttp)
}

/// The code of `HTTP/1.x NNN …`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let mut parts = line.split(|&b| b == b' ');
    if !parts.next()?.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(parts.next()?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\nx: y"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 abc\r\n"), None);
    }

    #[test]
    fn only_a_socket_this_host_cannot_open_is_local() {
        let local = |errno| {
            let failed = connect_failed(std::io::Error::from_raw_os_error(errno));
            matches!(failed, Failed::Local(_))
        };
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(local(errno), "errno {errno}");
        }
        for errno in [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH] {
            assert!(!local(errno), "errno {errno}");
        }
    }
}
