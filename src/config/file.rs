//! The YAML file as written: every section rejects unknown keys, every value checks itself
//! (see [`super::values`]). Conversion into the internal model is in [`super::validate`].

use super::values::{
    ByteSize, DurationValue, HashKeyValue, HostPort, Label, ListenAddr, MaxBody, Weight,
};
use super::{AccessLogFormat, Balance, CheckKind, Resolve, WhenAllDown, WhenFull};
use crate::net::Cidr;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    pub metrics: Option<FileMetrics>,
    pub cache: Option<FileCache>,
    #[serde(deserialize_with = "unique_keys")]
    pub upstreams: BTreeMap<String, FileUpstream>,
    pub routes: Vec<FileRoute>,
}

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub listen: Option<Vec<ListenAddr>>,
    pub threads: Option<usize>,
    pub health_path: Option<String>,
    pub grace_period: Option<DurationValue>,
    pub access_log: Option<String>,
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    #[serde(default)]
    pub watch: bool,
    #[serde(default)]
    pub preserve_header_case: bool,
    pub tls: Option<FileTls>,
    pub trusted_proxies: Option<Vec<Cidr>>,
    pub max_header_size: Option<ByteSize>,
    pub max_header_count: Option<usize>,
    pub header_timeout: Option<DurationValue>,
    pub body_timeout: Option<DurationValue>,
    pub keepalive_timeout: Option<DurationValue>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<u32>,
    #[serde(default)]
    pub when_full: WhenFull,
}

/// `server.tls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub listen: Vec<ListenAddr>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub acme: Option<FileAcme>,
    #[serde(default)]
    pub redirect_http_to_https: bool,
    pub http2: Option<bool>,
}

/// `server.tls.acme:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAcme {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: Option<String>,
    pub directory_ca: Option<String>,
    pub state_dir: Option<String>,
    pub renew_before: Option<DurationValue>,
    pub retry_after: Option<DurationValue>,
}

/// `metrics:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMetrics {
    pub listen: Option<ListenAddr>,
    pub allow: Option<Vec<Cidr>>,
}

/// `cache:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCache {
    pub max_size: Option<ByteSize>,
}

/// `upstreams.NAME:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    #[serde(default)]
    pub balance: Balance,
    pub hash_key: Option<HashKeyValue>,
    pub health_check: Option<FileHealthCheck>,
    pub retries: Option<u32>,
    #[serde(default)]
    pub when_all_down: WhenAllDown,
    pub resolve_interval: Option<DurationValue>,
    pub least_time_decay: Option<DurationValue>,
    #[serde(default)]
    pub http2: bool,
    pub servers: Vec<FileServerEntry>,
    pub connect_timeout: Option<DurationValue>,
    pub read_timeout: Option<DurationValue>,
    pub write_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
}

/// `upstreams.NAME.servers[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServerEntry {
    pub addr: HostPort,
    pub id: Option<Label>,
    pub weight: Option<Weight>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<DurationValue>,
    #[serde(default)]
    pub backup: bool,
    #[serde(default)]
    pub resolve: Resolve,
}

/// `upstreams.NAME.health_check:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealthCheck {
    #[serde(rename = "type", default)]
    pub kind: CheckKind,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
}

/// `routes[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    pub path: String,
    pub host: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub sse: bool,
    pub stream_idle_timeout: Option<DurationValue>,
    #[serde(default)]
    pub compress: bool,
    pub cache: Option<DurationValue>,
    pub max_body: Option<MaxBody>,
    pub rate_limit: Option<FileRateLimit>,
}

/// `routes[i].rate_limit:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRateLimit {
    pub requests_per_second: f64,
    pub burst: Option<u32>,
}

/// A map that rejects a key given twice; serde_yaml would silently keep the last one, and a
/// copy-pasted upstream would then hide the first.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueKeys<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of names")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!(
                        "`{key}` is defined twice; give each one its own name"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(UniqueKeys(PhantomData))
}
