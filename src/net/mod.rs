//! The bottom layer: what HTTP and the network are, with no knowledge of the config or of
//! Pingora's phases. Address ranges, who the client is, the checks every request passes
//! before it is routed (framing that cannot be read two ways, headers within limits, a path
//! in normal form), and the header names and hop-by-hop rules of a proxy.

pub(crate) mod cidr;
pub(crate) mod client;
pub(crate) mod framing;
pub(crate) mod header_names;
pub(crate) mod hop_by_hop;
pub(crate) mod path;
pub(crate) mod target;

pub(crate) use cidr::Cidr;
