//! Scalar value types of the config file.
//!
//! Each one validates itself while serde reads it, so a bad value is reported by serde_yaml
//! with its key path and line/column, instead of by a later pass that no longer knows where
//! the value came from.

use crate::net::Cidr;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A duration written as a number and a unit: `150ms`, `2s`, `5m`, `1h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl DurationValue {
    /// Parses `150ms`, `2s`, `5m`, `1h` or `30d` (nginx's units; days for certificates).
    pub fn parse(text: &str) -> Result<Self, String> {
        const UNITS: &[(&str, u64)] = &[
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
        ];
        let hint = "write a whole number followed by ms, s, m, h or d, e.g. 150ms, 2s, 5m, 1h, 30d";
        // As in nginx and HAProxy, a duration is one word: `2 s` is refused, not read as 2s.
        if let Some((number, unit)) = text.trim().split_once(char::is_whitespace) {
            let joined = format!("{number}{}", unit.trim());
            // A unit that is wrong as well is the error to report, about the text as written.
            scaled(&joined, "duration", UNITS, hint)
                .map_err(|e| e.replace(&format!("`{joined}`"), &format!("`{}`", text.trim())))?;
            return Err(format!(
                "invalid duration `{}`: no space goes between the number and its unit; write \
                 {joined}",
                text.trim()
            ));
        }
        scaled(text, "duration", UNITS, hint).map(|ms| Self(Duration::from_millis(ms)))
    }
}

/// Reads `<whole number><unit>` and multiplies by the unit's scale; errors say which part is
/// wrong and end with `hint`.
fn scaled(text: &str, what: &str, units: &[(&str, u64)], hint: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(format!("invalid {what} `{text}`: {hint}"));
    }
    if unit.is_empty() {
        return Err(format!("invalid {what} `{text}`: missing unit; {hint}"));
    }
    let scale = units
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(|| format!("invalid {what} `{text}`: unknown unit `{unit}`; {hint}"))?;
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("invalid {what} `{text}`: number too large"))
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "a duration such as 2s", Self::parse)
    }
}

/// A size in bytes written with a unit: `512KiB`, `64MiB`, `1GiB` (also `B`, `KB`, `MB`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a number followed by B, KiB, MiB, GiB, KB, MB or GB.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        const UNITS: &[(&str, u64)] = &[
            ("B", 1),
            ("KiB", 1 << 10),
            ("MiB", 1 << 20),
            ("GiB", 1 << 30),
            ("KB", 1_000),
            ("kB", 1_000),
            ("MB", 1_000_000),
            ("GB", 1_000_000_000),
        ];
        let hint = "write a whole number followed by B, KiB, MiB or GiB, e.g. 64MiB";
        scaled(text, "size", UNITS, hint).map(Self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "a size such as 64MiB", Self::parse)
    }
}

/// `max_body:`: a size such as `10MiB`, or `none` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxBody(pub Option<u64>);

impl<'de> Deserialize<'de> for MaxBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "a size such as 10MiB, or none", |text| {
            if text.trim() == "none" {
                return Ok(Self(None));
            }
            ByteSize::parse(text)
                .map(|size| Self(Some(size.0)))
                .map_err(|e| format!("{e}, or none for no limit"))
        })
    }
}

/// A listening address: an IP and a port, e.g. `0.0.0.0:8080` or `[::]:8080`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "an address such as 0.0.0.0:8080", |text| {
            let addr: SocketAddr = text.trim().parse().map_err(|_| {
                format!(
                    "invalid listen address `{text}`: write IP:port, e.g. 0.0.0.0:8080, 127.0.0.1:9091 or [::]:8080"
                )
            })?;
            if addr.port() == 0 {
                return Err(format!(
                    "invalid listen address `{text}`: port 0 would listen on a random port; give a port number"
                ));
            }
            Ok(Self(addr))
        })
    }
}

/// A server address as configured: `host:port`, where host is an IP or a DNS name.
///
/// Name resolution happens later, once the whole file has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// The text exactly as written, used for `X-Served-By` and in logs.
    pub text: String,
    /// The host part, without brackets for IPv6.
    pub host: String,
    /// The port, 1 to 65535.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `ip:port` or `[ipv6]:port`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let hint = "write host:port, e.g. 127.0.0.1:8001 or app1:8000";
        let invalid = |why: &str| format!("invalid server address `{text}`: {why}; {hint}");
        if text.contains("://") {
            return Err(invalid("a server is not a URL, leave out the scheme"));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid("missing port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| invalid("unclosed `[`"))?,
            None if host.contains(':') => {
                return Err(invalid("an IPv6 address must be written in brackets"))
            }
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid("the host contains a space or `/`"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?;
        Ok(Self {
            text: text.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "an address such as 127.0.0.1:8001", |text| {
            Self::parse(text.trim())
        })
    }
}

/// A server weight, 1 to [`Weight::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Weight(pub u16);

impl Weight {
    /// The largest weight accepted. Weighted schedules are expanded per unit of weight, so the
    /// bound keeps them small; HAProxy caps weights at 256 for the same reason.
    pub(crate) const MAX: u16 = 1000;
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "a whole-number weight", |text| {
            match text.trim().parse::<u16>() {
                Ok(w) if (1..=Self::MAX).contains(&w) => Ok(Self(w)),
                _ => Err(format!(
                    "invalid weight {text}: must be a whole number from 1 to {}",
                    Self::MAX
                )),
            }
        })
    }
}

/// `hash_key:` as written: `client_ip`, `header:NAME` or `cookie:NAME`, read into a
/// [`HashKey`](super::HashKey) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashKeyValue(pub super::HashKey);

impl HashKeyValue {
    /// Parses `client_ip`, `header:X-User-Id` or `cookie:session`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        use super::HashKey;
        let hint = "use client_ip, header:NAME (e.g. header:X-User-Id) or cookie:NAME";
        let key = match text.split_once(':') {
            None if text == "client_ip" => HashKey::ClientIp,
            Some(("header", name)) => http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("invalid header name in hash_key `{text}`; {hint}"))?,
            Some(("cookie", name)) => {
                let name = name.trim();
                let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
                if name.is_empty() || !name.chars().all(token) {
                    return Err(format!("invalid cookie name in hash_key `{text}`; {hint}"));
                }
                HashKey::Cookie(name.to_string())
            }
            _ => return Err(format!("invalid hash_key `{text}`; {hint}")),
        };
        Ok(Self(key))
    }
}

impl<'de> Deserialize<'de> for HashKeyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(
            deserializer,
            "client_ip, header:NAME or cookie:NAME",
            |text| Self::parse(text.trim()),
        )
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(
            deserializer,
            "an address range such as 10.0.0.0/8",
            |text| Self::parse(text.trim()),
        )
    }
}

/// A string that YAML may have typed as a number (`id: 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Label(pub String);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        scalar(deserializer, "a string or a number", |text| {
            Ok(Self(text.to_owned()))
        })
    }
}

/// Reads a string, integer or float scalar as text and hands it to `parse`.
///
/// `parse` runs inside the visitor, while serde_yaml is still reading that scalar: an error
/// raised there gets the scalar's own key path and line, where one raised once the scalar has
/// been read is placed at the block that holds it.
fn scalar<'de, D, T, F>(deserializer: D, expected: &'static str, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct ScalarVisitor<F> {
        expected: &'static str,
        parse: F,
    }

    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for ScalarVisitor<F> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expected)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }

    deserializer.deserialize_any(ScalarVisitor { expected, parse })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        let ok = |s: &str| DurationValue::parse(s).unwrap().0;
        assert_eq!(ok("150ms"), Duration::from_millis(150));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("30d"), Duration::from_secs(30 * 86_400));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn bad_durations_say_how_to_fix() {
        for (input, expected) in [
            ("10", "missing unit"),
            ("10 sec", "invalid duration `10 sec`: unknown unit `sec`"),
            (
                "2 s",
                "no space goes between the number and its unit; write 2s",
            ),
            ("s", "write a whole number"),
            ("-1s", "write a whole number"),
            ("1.5s", "unknown unit"),
            ("99999999999999999999s", "too large"),
            ("999999999999999999h", "too large"),
        ] {
            let err = DurationValue::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("512 KiB").unwrap().0, 512 << 10);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("100B").unwrap().0, 100);
        for (bad, why) in [
            ("64", "missing unit"),
            ("64mb", "unknown unit"),
            ("MiB", "invalid size"),
            ("99999999999GiB", "invalid size"),
        ] {
            let err = ByteSize::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn hash_keys() {
        use super::super::HashKey;
        assert_eq!(
            HashKeyValue::parse("client_ip").unwrap().0,
            HashKey::ClientIp
        );
        assert_eq!(
            HashKeyValue::parse("header:X-User-Id").unwrap().0,
            HashKey::Header(http::HeaderName::from_static("x-user-id"))
        );
        assert_eq!(
            HashKeyValue::parse("cookie:session").unwrap().0,
            HashKey::Cookie("session".into())
        );
        for bad in [
            "ip",
            "header:",
            "header:a b",
            "cookie:",
            "cookie:a;b",
            "query:x",
        ] {
            let err = HashKeyValue::parse(bad).unwrap_err();
            assert!(err.contains("header:NAME"), "{bad}: {err}");
        }
    }

    #[test]
    fn host_port_forms() {
        let hp = HostPort::parse("app1:8000").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("app1", 8000));
        let hp = HostPort::parse("[::1]:80").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("::1", 80));
        assert_eq!(
            HostPort::parse("127.0.0.1:8001").unwrap().text,
            "127.0.0.1:8001"
        );
    }

    #[test]
    fn bad_host_ports_say_what_is_wrong() {
        for (input, expected) in [
            ("app1", "missing port"),
            (":80", "missing host"),
            ("app1:0", "1 to 65535"),
            ("app1:99999", "1 to 65535"),
            ("app1:http", "1 to 65535"),
            ("::1:80", "brackets"),
            ("[::1:80", "unclosed"),
            ("http://app1:80", "leave out the scheme"),
            ("app1/x:80", "`/`"),
        ] {
            let err = HostPort::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
