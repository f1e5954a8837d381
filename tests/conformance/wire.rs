//! Both ends of the wire, on raw sockets: a backend that records every request it reads, and
//! a reader of the proxy's responses that follows their framing byte by byte, so that a
//! missing, extra or misframed response shows as such instead of as a client's error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a test waits for the bytes it expects.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: N`, or no body at all.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response body that ends when the connection closes.
    Close,
}

/// One request as the backend read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET /path`.
    pub request_line: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A backend that answers each request with `200` and the body `METHOD TARGET BODY-LENGTH`,
/// framed by `Content-Length`, or with `Transfer-Encoding: chunked` when the path starts with
/// `/chunked`; `/status/NNN` answers that status with no body, as does any answer to HEAD
/// (its header still says how the body would have been framed). It records what it read.
pub struct RecordingBackend {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingBackend {
    /// Starts it on a thread per connection; it runs until the test process ends.
    pub fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = Arc::clone(&record);
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        RecordingBackend { port, seen }
    }

    /// The request lines read since the last call, in order.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn serve(mut stream: TcpStream, record: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    while let Some((request_line, framing)) = read_head(&mut stream, &mut buf, true) {
        let Some(body) = read_body(&mut stream, &mut buf, framing) else {
            return;
        };
        let answer = format!("{request_line} {}", body.len());
        let reply = reply_to(&request_line, &answer);
        record.lock().unwrap().push(Seen { request_line, body });
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn reply_to(request_line: &str, answer: &str) -> String {
    let (method, path) = request_line.split_once(' ').unwrap_or_default();
    if let Some(status) = path.strip_prefix("/status/") {
        return format!("HTTP/1.1 {status} Status\r\n\r\n");
    }
    let (framing, body) = if path.starts_with("/chunked") {
        let chunked = format!("{:x}\r\n{answer}\r\n0\r\n\r\n", answer.len());
        ("transfer-encoding: chunked".to_string(), chunked)
    } else {
        (
            format!("content-length: {}", answer.len()),
            answer.to_string(),
        )
    };
    let body = if method == "HEAD" { "" } else { &body };
    format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n{body}")
}

/// One response as the client read it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name`, if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that reads responses one by one.
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to 127.0.0.1:`port`, with no Nagle delay, so that each write is sent as it is.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `bytes` in one write.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response, or `None` if the connection closed first; `head` for the answer
    /// to a HEAD request, which has no body whatever its header says.
    pub fn response(&mut self, head: bool) -> Option<Response> {
        let (status_line, headers) = read_head_fields(&mut self.stream, &mut self.buf, false)?;
        let status: u16 = status_line.get(9..12)?.parse().ok()?;
        let framing = if head || status < 200 || status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            framing_of(&headers).unwrap_or(Framing::Close)
        };
        let body = read_body(&mut self.stream, &mut self.buf, framing)?;
        Some(Response {
            status,
            headers,
            body,
        })
    }

    /// True once the proxy has closed the connection, with nothing more sent.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// Reads a message head from `stream` into `buf`; returns the start line and the framing of
/// a request (`request`) or a response's fields. `None` at a clean end of the stream.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: bool,
) -> Option<(String, Framing)> {
    let (line, headers) = read_head_fields(stream, buf, request)?;
    let line = match line.rsplit_once(' ') {
        Some((method_and_target, _version)) => method_and_target.to_string(),
        None => line,
    };
    Some((line, framing_of(&headers).unwrap_or(Framing::Length(0))))
}

fn read_head_fields(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: bool,
) -> Option<(String, Vec<(String, String)>)> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let start = lines.next()?.to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Some((start, headers));
        }
        if !fill(stream, buf) {
            assert!(
                buf.is_empty() || request,
                "the connection closed inside a response head: {:?}",
                String::from_utf8_lossy(buf)
            );
            return None;
        }
    }
}

fn framing_of(headers: &[(String, String)]) -> Option<Framing> {
    for (name, value) in headers {
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            return Some(Framing::Chunked);
        }
    }
    headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, v)| Framing::Length(v.parse().unwrap()))
}

/// Reads one body of `framing` off the front of `buf`, reading more as needed.
fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, framing: Framing) -> Option<Vec<u8>> {
    match framing {
        Framing::Length(n) => {
            while buf.len() < n {
                if !fill(stream, buf) {
                    return None;
                }
            }
            Some(buf.drain(..n).collect())
        }
        Framing::Close => {
            while fill(stream, buf) {}
            Some(std::mem::take(buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(stream, buf)?;
                let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    // Trailer fields, up to the empty line.
                    while !read_line(stream, buf)?.is_empty() {}
                    return Some(body);
                }
                while buf.len() < size + 2 {
                    if !fill(stream, buf) {
                        return None;
                    }
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
            }
        }
    }
}

fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 2);
            return Some(line);
        }
        if !fill(stream, buf) {
            return None;
        }
    }
}

/// Appends what one read brings; false at the end of the stream. A read that times out
/// fails the test with what came so far.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        Err(e) => panic!(
            "nothing more within {READ_TIMEOUT:?} ({e}); so far: {:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
