//! One access-log record and its two formats: nginx-combined-like text, and JSON.

use serde::Serialize;
use std::cell::Cell;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is logged about one request.
pub(crate) struct AccessRecord<'a> {
    /// When the request started.
    pub time: SystemTime,
    /// Client address, if the connection has one.
    pub client: Option<IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// Request path and query.
    pub target: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    pub version: &'a str,
    /// Response status, 0 if none was sent.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes_sent: usize,
    /// `Referer` header.
    pub referer: &'a str,
    /// `User-Agent` header.
    pub user_agent: &'a str,
    /// Upstream name, empty when the proxy answered itself.
    pub upstream: &'a str,
    /// Server address as configured, empty when none was picked.
    pub backend: &'a str,
    /// Server id (`X-Instance-ID`), empty when none was picked.
    pub instance: &'a str,
    /// Time to the backend's response header, if one came.
    pub upstream_time: Option<Duration>,
    /// The whole request.
    pub request_time: Duration,
    /// Attempts after the first.
    pub retries: usize,
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

impl AccessRecord<'_> {
    /// Appends nginx's `combined` format followed by the proxy's own fields, without the
    /// newline.
    pub(crate) fn write_combined(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = self.try_write_combined(out);
    }

    fn try_write_combined(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self.client {
            Some(ip) => write!(out, "{ip}")?,
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        write_clf_time(out, self.time)?;
        write!(
            out,
            "] \"{} {} {}\" {} {} \"{}\" \"{}\" upstream={} backend={} instance={} upstream_time=",
            self.method,
            self.target,
            self.version,
            self.status,
            self.bytes_sent,
            or_dash(self.referer),
            or_dash(self.user_agent),
            or_dash(self.upstream),
            or_dash(self.backend),
            or_dash(self.instance),
        )?;
        match self.upstream_time {
            Some(t) => write_seconds(out, t)?,
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" request_time=");
        write_seconds(out, self.request_time)?;
        write!(out, " retries={}", self.retries)
    }

    /// Appends one JSON object, without the newline.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let line = JsonLine {
            time: self
                .time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            client: self.client,
            method: self.method,
            target: self.target,
            version: self.version,
            status: self.status,
            bytes_sent: self.bytes_sent,
            referer: self.referer,
            user_agent: self.user_agent,
            upstream: self.upstream,
            backend: self.backend,
            instance: self.instance,
            upstream_time: self.upstream_time.map(|t| t.as_secs_f64()),
            request_time: self.request_time.as_secs_f64(),
            retries: self.retries,
        };
        // Serialising plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &line);
    }
}

/// The JSON format's fields, in their order; addresses serialise as strings.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: f64,
    client: Option<IpAddr>,
    method: &'a str,
    target: &'a str,
    version: &'a str,
    status: u16,
    bytes_sent: usize,
    referer: &'a str,
    user_agent: &'a str,
    upstream: &'a str,
    backend: &'a str,
    instance: &'a str,
    upstream_time: Option<f64>,
    request_time: f64,
    retries: usize,
}

/// Appends a duration as seconds with milliseconds, `0.012`, as nginx's `$request_time`
/// (integer arithmetic: float formatting was a measurable part of a line's cost).
fn write_seconds(out: &mut Vec<u8>, time: Duration) -> std::io::Result<()> {
    write!(out, "{}.{:03}", time.as_secs(), time.subsec_millis())
}

/// The length of a Common Log Format time, `24/Nov/2026:06:50:23 +0000`.
const CLF_TIME_LEN: usize = 26;

thread_local! {
    /// The second last formatted on this thread and its text: every line of a second shares
    /// it, as nginx shares its cached time strings.
    static CLF_TIME: Cell<(u64, [u8; CLF_TIME_LEN])> = const { Cell::new((u64::MAX, [0; CLF_TIME_LEN])) };
}

/// Appends `24/Nov/2026:06:50:23 +0000`, the Common Log Format time, in UTC.
fn write_clf_time(out: &mut Vec<u8>, time: SystemTime) -> std::io::Result<()> {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (cached, text) = CLF_TIME.get();
    if cached == secs {
        out.extend_from_slice(&text);
        return Ok(());
    }
    let mut text = [0; CLF_TIME_LEN];
    format_clf_time(&mut text[..], secs)?;
    CLF_TIME.set((secs, text));
    out.extend_from_slice(&text);
    Ok(())
}

/// Writes the Common Log Format time of `secs` since the epoch (UTC) into `text`.
fn format_clf_time(mut text: &mut [u8], secs: u64) -> std::io::Result<()> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days as i64);
    // Years past 9999 would not fit: clamp rather than cut a line short.
    let year = year.clamp(0, 9999);
    write!(
        text,
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::civil_from_days;

    fn combined(record: &AccessRecord) -> String {
        let mut out = Vec::new();
        record.write_combined(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn record() -> AccessRecord<'static> {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_secs(1_795_503_023),
            client: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            target: "/a?b=1",
            version: "HTTP/1.1",
            status: 200,
            bytes_sent: 612,
            referer: "",
            user_agent: "curl/8.0",
            upstream: "app",
            backend: "app1:8000",
            instance: "1",
            upstream_time: Some(Duration::from_millis(12)),
            request_time: Duration::from_millis(13),
            retries: 1,
        }
    }

    #[test]
    fn combined_line_has_every_field() {
        assert_eq!(
            combined(&record()),
            "127.0.0.1 - - [24/Nov/2026:06:50:23 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 \"-\" \"curl/8.0\" upstream=app backend=app1:8000 instance=1 upstream_time=0.012 request_time=0.013 retries=1"
        );
    }

    #[test]
    fn local_answers_use_dashes() {
        let mut r = record();
        (r.upstream, r.backend, r.instance, r.upstream_time, r.client) = ("", "", "", None, None);
        let line = combined(&r);
        assert!(line.starts_with("- - - ["), "{line}");
        assert!(
            line.contains("upstream=- backend=- instance=- upstream_time=- "),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field() {
        let mut line = Vec::new();
        record().write_json(&mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["backend"], "app1:8000");
        assert_eq!(v["status"], 200);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["upstream_time"], 0.012);
        assert_eq!(v["time"], 1_795_503_023.0);
        assert_eq!(v["client"], "127.0.0.1");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 15, "{keys:?}");
    }

    #[test]
    fn seconds_have_milliseconds() {
        let mut out = Vec::new();
        write_seconds(&mut out, Duration::from_micros(2_012_999)).unwrap();
        assert_eq!(out, b"2.012");
    }

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let mut out = Vec::new();
        write_clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)).unwrap();
        assert_eq!(out, b"29/Feb/2000:00:00:00 +0000");
        // The same second again comes from this thread's cache; the next one does not.
        out.clear();
        write_clf_time(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(951_782_400_900),
        )
        .unwrap();
        assert_eq!(out, b"29/Feb/2000:00:00:00 +0000");
        out.clear();
        write_clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_401)).unwrap();
        assert_eq!(out, b"29/Feb/2000:00:00:01 +0000");
    }
}
