//! What the proxy makes sure of in every request before it routes it: framing that cannot
//! be read two ways, headers within limits, a path in normal form, and who the client is.

pub mod client;
pub mod framing;
pub mod path;
pub mod target;
