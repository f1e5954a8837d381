//! Request routing: which route, and so which upstream, a request goes to.

use crate::config::Route;

/// Routes in match order: longest path first and, for equal paths, host-specific routes
/// before the ones that match any host. The first route that matches wins, which is the
/// longest matching prefix, as in nginx's prefix `location`s.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: Box<str>,
    host: Option<Box<str>>,
    route: usize,
}

impl Router {
    /// Builds the match order from the configured routes.
    pub(crate) fn new(routes: &[Route]) -> Self {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(route, r)| Entry {
                path: r.path.as_str().into(),
                host: r.host.as_deref().map(Into::into),
                route,
            })
            .collect();
        entries.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        Self { entries }
    }

    /// The index of the route for a request, given its `Host` (port allowed) and its path
    /// without the query string.
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(host_without_port);
        self.entries
            .iter()
            .find(|e| {
                path.starts_with(&*e.path)
                    && e.host
                        .as_deref()
                        .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
            })
            .map(|e| e.route)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, host: Option<&str>) -> Route {
        Route {
            path: path.to_string(),
            host: host.map(str::to_string),
            upstream: 0,
            sse: false,
            stream_idle_timeout: std::time::Duration::from_secs(3600),
            compress: false,
            cache: None,
            max_body: None,
            rate_limit: None,
        }
    }

    fn router() -> Router {
        Router::new(&[
            route("/", None),
            route("/static/", None),
            route("/api", None),
            route("/api", Some("api.example.com")),
            route("/admin/", Some("admin.example.com")),
        ])
    }

    #[test]
    fn longest_prefix_wins_whatever_the_file_order() {
        let r = router();
        assert_eq!(r.find(None, "/"), Some(0));
        assert_eq!(r.find(None, "/index.html"), Some(0));
        assert_eq!(r.find(None, "/static/app.js"), Some(1));
        assert_eq!(r.find(None, "/static"), Some(0), "prefix must match whole");
        assert_eq!(r.find(None, "/api/v1"), Some(2));
    }

    #[test]
    fn host_narrows_a_route_and_wins_ties() {
        let r = router();
        assert_eq!(r.find(Some("api.example.com"), "/api/x"), Some(3));
        assert_eq!(r.find(Some("API.Example.com:8080"), "/api/x"), Some(3));
        assert_eq!(r.find(Some("other.example.com"), "/api/x"), Some(2));
        assert_eq!(r.find(Some("admin.example.com"), "/admin/x"), Some(4));
        assert_eq!(r.find(Some("www.example.com"), "/admin/x"), Some(0));
        assert_eq!(r.find(None, "/admin/x"), Some(0));
    }

    #[test]
    fn no_route_means_none() {
        let r = Router::new(&[route("/app/", None)]);
        assert_eq!(r.find(None, "/"), None);
        assert_eq!(r.find(None, "/other"), None);
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
