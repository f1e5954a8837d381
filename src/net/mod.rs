//! The bottom layer: what HTTP and the network are, with no knowledge of the config or of
//! Pingora's phases. Address ranges, who the client is, the checks every request passes
//! before it is routed (framing that cannot be read two ways, headers within limits, a path
//! in normal form), and the header names and hop-by-hop rules of a proxy.

pub mod cidr;
pub mod client;
pub mod framing;
pub mod header_names;
pub mod hop_by_hop;
pub mod path;
pub mod target;

pub use cidr::Cidr;
