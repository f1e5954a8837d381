//! One access-log record and its two formats: nginx-combined-like text, and JSON.

use serde_json::json;
use std::fmt::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is logged about one request.
pub struct AccessRecord<'a> {
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
    /// nginx's `combined` format followed by the proxy's own fields.
    pub fn combined(&self) -> String {
        let mut line = String::with_capacity(256);
        match self.client {
            Some(ip) => write!(line, "{ip}"),
            None => write!(line, "-"),
        }
        .ok();
        write!(
            line,
            " - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" upstream={} backend={} instance={} upstream_time=",
            clf_time(self.time),
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
        )
        .ok();
        match self.upstream_time {
            Some(t) => write!(line, "{:.3}", t.as_secs_f64()),
            None => write!(line, "-"),
        }
        .ok();
        write!(
            line,
            " request_time={:.3} retries={}",
            self.request_time.as_secs_f64(),
            self.retries
        )
        .ok();
        line
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        let time = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        json!({
            "time": time.as_secs_f64(),
            "client": self.client.map(|ip| ip.to_string()),
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "status": self.status,
            "bytes_sent": self.bytes_sent,
            "referer": self.referer,
            "user_agent": self.user_agent,
            "upstream": self.upstream,
            "backend": self.backend,
            "instance": self.instance,
            "upstream_time": self.upstream_time.map(|t| t.as_secs_f64()),
            "request_time": self.request_time.as_secs_f64(),
            "retries": self.retries,
        })
        .to_string()
    }
}

/// `24/Nov/2026:06:50:23 +0000`, the Common Log Format time, in UTC.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            record().combined(),
            "127.0.0.1 - - [24/Nov/2026:06:50:23 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 \"-\" \"curl/8.0\" upstream=app backend=app1:8000 instance=1 upstream_time=0.012 request_time=0.013 retries=1"
        );
    }

    #[test]
    fn local_answers_use_dashes() {
        let mut r = record();
        (r.upstream, r.backend, r.instance, r.upstream_time, r.client) = ("", "", "", None, None);
        let line = r.combined();
        assert!(line.starts_with("- - - ["), "{line}");
        assert!(
            line.contains("upstream=- backend=- instance=- upstream_time=- "),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value = serde_json::from_str(&record().json()).unwrap();
        assert_eq!(v["backend"], "app1:8000");
        assert_eq!(v["status"], 200);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["upstream_time"], 0.012);
        assert_eq!(v["time"], 1_795_503_023.0);
    }

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "29/Feb/2000:00:00:00 +0000"
        );
    }
}
