//! What `edgeproxy check` says of ACME domains: a domain that does not resolve to an address
//! of this host cannot pass the CA's HTTP-01 check unless something in front forwards port 80
//! here (NAT, a load balancer), so it is a warning, not an error.

use crate::config::AcmeSettings;
use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};

/// A warning for each domain that resolves to no address of this host.
pub(crate) fn domain_warnings(settings: &AcmeSettings) -> Vec<String> {
    let local = local_addresses();
    settings
        .domains
        .iter()
        .filter_map(|domain| {
            let found: Vec<IpAddr> = match (domain.as_str(), 80).to_socket_addrs() {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                Err(e) => {
                    return Some(format!(
                        "server.tls.acme: {domain} does not resolve ({e}); the CA cannot check it until its DNS points here"
                    ))
                }
            };
            if found.iter().any(|ip| local.contains(ip)) {
                return None;
            }
            let list: Vec<String> = found.iter().map(IpAddr::to_string).collect();
            Some(format!(
                "server.tls.acme: {domain} resolves to {}, not an address of this host; the CA's check reaches edgeproxy only if that address forwards port 80 here (NAT, a load balancer)",
                list.join(", ")
            ))
        })
        .collect()
}

/// The addresses of this host's interfaces.
fn local_addresses() -> HashSet<IpAddr> {
    let mut found = HashSet::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that is read here and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.insert(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.insert(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}
