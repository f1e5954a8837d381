//! The demo backend's HTTP handling, on Pingora's server session so responses can stream.

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bodies above this are refused with 413.
const MAX_BODY: usize = 1 << 20;
/// What `/bytes` streams, one slice after another, without allocating per request.
static FILLER: [u8; 64 * 1024] = [b'.'; 64 * 1024];
/// The largest `/bytes` download.
const MAX_DOWNLOAD: u64 = 16 << 30;
/// The longest `/slow` delay honoured.
const MAX_SLOW: Duration = Duration::from_secs(300);

/// One demo instance.
pub struct DemoApp {
    id: String,
    hostname: String,
    event_interval: Duration,
    delay: Duration,
    options: HttpServerOptions,
}

impl DemoApp {
    /// An instance answering as `id`.
    pub fn new(id: String, event_interval: Duration, delay: Duration, h2c: bool) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Self {
            id,
            hostname,
            event_interval,
            delay,
            options,
        }
    }

    async fn handle(&self, http: &mut ServerSession) -> pingora::Result<()> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let method = http.req_header().method.clone();
        let path = http.req_header().uri.path().to_string();
        let query = query_pairs(http.req_header().uri.query().unwrap_or(""));
        match (&method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => {
                let body = json!({
                    "message": "Hello from the edgeproxy demo backend",
                    "instance": self.id,
                    "hostname": self.hostname,
                });
                self.json(http, 200, &body).await
            }
            (&Method::GET | &Method::HEAD, "/health") => {
                self.json(
                    http,
                    200,
                    &json!({ "status": "healthy", "instance": self.id }),
                )
                .await
            }
            (&Method::GET, "/echo") => {
                let body = self.echo(http);
                self.json(http, 200, &body).await
            }
            (&Method::GET, "/slow") => {
                let ms = query.get("ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
                let delay = Duration::from_millis(ms).min(MAX_SLOW);
                tokio::time::sleep(delay).await;
                let body = json!({ "instance": self.id, "slept_ms": delay.as_millis() as u64 });
                self.json(http, 200, &body).await
            }
            (&Method::POST, "/models") => self.create_model(http).await,
            (&Method::GET, "/bytes") => {
                let n = query.get("n").and_then(|v| v.parse().ok()).unwrap_or(1024);
                self.download(http, n.min(MAX_DOWNLOAD)).await
            }
            (&Method::POST | &Method::PUT, "/upload") => self.upload(http).await,
            (&Method::GET, "/events") => {
                let interval = query
                    .get("interval_ms")
                    .and_then(|v| v.parse().ok())
                    .map_or(self.event_interval, Duration::from_millis);
                let count = query.get("count").and_then(|v| v.parse().ok());
                self.events(http, interval, count).await
            }
            // A stand-in for a static file: which instance served it shows whether a cache in
            // front answered instead.
            (&Method::GET | &Method::HEAD, p) if p.starts_with("/static/") => {
                let body = json!({ "file": &p["/static/".len()..], "instance": self.id });
                self.json(http, 200, &body).await
            }
            (_, p) if p.starts_with("/status/") => match p["/status/".len()..].parse::<u16>() {
                Ok(code) if (200..600).contains(&code) => {
                    self.json(http, code, &json!({ "instance": self.id, "status": code }))
                        .await
                }
                _ => {
                    self.json(http, 400, &json!({ "detail": "bad status code" }))
                        .await
                }
            },
            _ => {
                self.json(http, 404, &json!({ "detail": "Not Found" }))
                    .await
            }
        }
    }

    /// What the request looked like when it arrived: method, version, path, query, headers
    /// (repeated ones joined with a comma) and the client's address.
    fn echo(&self, http: &ServerSession) -> Value {
        let req = http.req_header();
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in &req.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        json!({
            "instance": self.id,
            "method": req.method.as_str(),
            "version": format!("{:?}", req.version),
            "path": req.uri.path(),
            "query": req.uri.query().unwrap_or(""),
            "headers": headers,
            "client": http.client_addr().map(|a| a.to_string()),
        })
    }

    /// Reads a body of any size and says how many bytes came.
    async fn upload(&self, http: &mut ServerSession) -> pingora::Result<()> {
        continue_if_expected(http).await?;
        let mut received = 0u64;
        while let Some(chunk) = http.read_request_body().await? {
            received += chunk.len() as u64;
        }
        let body = json!({ "instance": self.id, "bytes": received });
        self.json(http, 200, &body).await
    }

    async fn create_model(&self, http: &mut ServerSession) -> pingora::Result<()> {
        continue_if_expected(http).await?;
        let mut body = Vec::new();
        while let Some(chunk) = http.read_request_body().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return self
                    .json(http, 413, &json!({ "detail": "body too large" }))
                    .await;
            }
            body.extend_from_slice(&chunk);
        }
        match crate::models::validate(&body) {
            Ok(model) => {
                let reply = json!({
                    "host": format!("tag: {} - {}", self.id, self.hostname),
                    "success": true,
                    "message": "Item created successfully",
                    "data": model,
                });
                self.json(http, 200, &reply).await
            }
            Err(detail) => self.json(http, 422, &json!({ "detail": detail })).await,
        }
    }

    /// `n` bytes, written as they go so that nothing is held in memory.
    async fn download(&self, http: &mut ServerSession, n: u64) -> pingora::Result<()> {
        let mut resp = self.header(200)?;
        resp.insert_header("content-type", "application/octet-stream")?;
        resp.insert_header("content-length", n)?;
        http.write_response_header(Box::new(resp)).await?;
        let mut left = n;
        while left > 0 {
            let len = left.min(FILLER.len() as u64) as usize;
            left -= len as u64;
            http.write_response_body(Bytes::from_static(&FILLER[..len]), left == 0)
                .await?;
        }
        Ok(())
    }

    /// Server-Sent Events: one event per interval, `count` of them or until the client leaves.
    async fn events(
        &self,
        http: &mut ServerSession,
        interval: Duration,
        count: Option<u64>,
    ) -> pingora::Result<()> {
        let mut resp = self.header(200)?;
        resp.insert_header("content-type", "text/event-stream")?;
        resp.insert_header("cache-control", "no-cache")?;
        resp.insert_header("transfer-encoding", "chunked")?;
        http.write_response_header(Box::new(resp)).await?;
        let mut seq = 0u64;
        while count.is_none_or(|c| seq < c) {
            if seq > 0 {
                tokio::time::sleep(interval).await;
            }
            seq += 1;
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let data = json!({ "instance": self.id, "seq": seq, "sent_ms": now_ms });
            let event = format!("id: {seq}\nevent: tick\ndata: {data}\n\n");
            if let Err(e) = http.write_response_body(Bytes::from(event), false).await {
                eprintln!(
                    "edgeproxy-demo: event stream closed by the client after {seq} events: {e}"
                );
                return Err(e);
            }
        }
        http.finish_body().await
    }

    fn header(&self, status: u16) -> pingora::Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(status, Some(4))?;
        resp.insert_header("x-instance-id", self.id.as_str())?;
        Ok(resp)
    }

    async fn json(
        &self,
        http: &mut ServerSession,
        status: u16,
        body: &Value,
    ) -> pingora::Result<()> {
        let body = Bytes::from(body.to_string() + "\n");
        let mut resp = self.header(status)?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len())?;
        http.write_response_header(Box::new(resp)).await?;
        http.write_response_body(body, true).await
    }
}

/// Answers `Expect: 100-continue` before the body is read, as uvicorn and gunicorn do: a
/// client that asked waits for it (curl for 1 s) before it sends the body.
async fn continue_if_expected(http: &mut ServerSession) -> pingora::Result<()> {
    let expects = http
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        http.write_continue_response().await?;
    }
    Ok(())
}

fn query_pairs(query: &str) -> BTreeMap<&str, &str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

#[async_trait]
impl HttpServerApp for DemoApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(http.read_request().await, Ok(true)) {
            return None;
        }
        http.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        self.handle(&mut http).await.ok()?;
        let settings = HttpPersistentSettings::for_session(&http);
        let reusable = http.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}
