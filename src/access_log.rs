//! The access log: one line per request, written to the `access` log target.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What is logged about one request.
pub struct AccessRecord<'a> {
    /// Client address, if the connection has one.
    pub client: Option<IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// Request path and query.
    pub target: &'a str,
    /// Response status, 0 if none was sent.
    pub status: u16,
    /// Upstream name, `-` when the proxy answered itself.
    pub upstream: &'a str,
    /// Server address as configured, `-` when none was picked.
    pub backend: &'a str,
    /// Time to the backend's response header, if one came.
    pub upstream_time: Option<Duration>,
    /// Whole request.
    pub total_time: Duration,
}

impl AccessRecord<'_> {
    /// Writes the record to the log.
    pub fn write(&self) {
        log::info!(target: "access", "{self}");
    }
}

impl fmt::Display for AccessRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.client {
            Some(ip) => write!(f, "{ip}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            " \"{} {}\" {} upstream={} backend={} upstream_time=",
            self.method, self.target, self.status, self.upstream, self.backend
        )?;
        match self.upstream_time {
            Some(t) => write!(f, "{:.3}", t.as_secs_f64())?,
            None => f.write_str("-")?,
        }
        write!(f, " total_time={:.3}", self.total_time.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_every_field() {
        let record = AccessRecord {
            client: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            target: "/a?b=1",
            status: 200,
            upstream: "app",
            backend: "app1:8000",
            upstream_time: Some(Duration::from_millis(12)),
            total_time: Duration::from_millis(13),
        };
        assert_eq!(
            record.to_string(),
            "127.0.0.1 \"GET /a?b=1\" 200 upstream=app backend=app1:8000 upstream_time=0.012 total_time=0.013"
        );
    }

    #[test]
    fn local_answers_use_dashes() {
        let record = AccessRecord {
            client: None,
            method: "GET",
            target: "/nothing",
            status: 404,
            upstream: "-",
            backend: "-",
            upstream_time: None,
            total_time: Duration::ZERO,
        };
        assert_eq!(
            record.to_string(),
            "- \"GET /nothing\" 404 upstream=- backend=- upstream_time=- total_time=0.000"
        );
    }
}
