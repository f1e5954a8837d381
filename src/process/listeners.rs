//! Checking that listening addresses can be bound, before Pingora tries: a Pingora listener
//! that fails to bind panics inside its task and the process runs on without it.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Why an address cannot be listened on.
#[derive(Debug)]
pub(crate) struct BindProblem {
    /// The address.
    pub addr: SocketAddr,
    /// The config key that names it.
    pub key: &'static str,
    /// The error from the operating system.
    pub error: io::Error,
}

impl BindProblem {
    /// True when something already listens there, which is expected when `check` runs beside
    /// a running edgeproxy.
    pub(crate) fn in_use(&self) -> bool {
        self.error.kind() == io::ErrorKind::AddrInUse
    }

    /// A message that says how to fix it.
    pub(crate) fn describe(&self) -> String {
        let hint = match self.error.kind() {
            io::ErrorKind::AddrInUse => "another process listens there; stop it or pick another port",
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher port or grant the capability"
            }
            io::ErrorKind::AddrNotAvailable => "this host has no such IP address; use 0.0.0.0 or one of its own addresses",
            _ => "check the address",
        };
        format!(
            "{}: cannot listen on {}: {} ({hint})",
            self.key, self.addr, self.error
        )
    }
}

/// Tries to bind each address, then releases it.
pub(crate) fn probe<'a>(
    addrs: impl IntoIterator<Item = (&'static str, &'a SocketAddr)>,
) -> Vec<BindProblem> {
    addrs
        .into_iter()
        .filter_map(|(key, addr)| {
            TcpListener::bind(addr).err().map(|error| BindProblem {
                addr: *addr,
                key,
                error,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_as_in_use() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let problems = probe([("server.listen", &addr)]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].in_use());
        assert!(problems[0]
            .describe()
            .contains("server.listen: cannot listen on"));
    }

    #[test]
    fn a_foreign_address_is_reported() {
        let addr: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        let problems = probe([("server.listen", &addr)]);
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].in_use());
        assert!(problems[0].describe().contains("no such IP address"));
    }

    #[test]
    fn a_free_port_is_fine() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(probe([("server.listen", &addr)]).is_empty());
    }
}
