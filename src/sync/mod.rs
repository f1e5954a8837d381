//! Counting shared by the layers above: requests in flight, per server and in all.

pub(crate) mod inflight;
