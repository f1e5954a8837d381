//! The names of the headers edgeproxy writes on every request or response, parsed once: an
//! insert by `&str` parses the name and copies it into a new allocation each time.

use http::header::HeaderName;

/// Which server answered, as `host:port` (set on responses).
pub(crate) const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// The answering server's `id` (set on responses).
pub(crate) const X_INSTANCE_ID: HeaderName = HeaderName::from_static("x-instance-id");
/// The cache's verdict on a cached route (set on responses).
pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// Tells buffering proxies in front to pass an event stream through (set on responses).
pub(crate) const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
/// The client chain (set on requests).
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used (set on requests).
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The client's address (set on requests).
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
