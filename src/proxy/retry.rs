//! What a failed attempt means: whether it counts against the server (passive health), and
//! whether the request may go to another one.

use super::ctx::RequestCtx;
use super::error_page::error_status;
use crate::metrics::handles::FailureReason;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};

/// A connect that failed: counted against the server unless this host was short of
/// sockets, and retried elsewhere while retries are left.
pub(super) fn after_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    // Pingora reports a socket this host could not create or bind (file descriptors or
    // local ports used up) as InternalError. That is no fault of the server: counting it
    // would take healthy servers out for fail_timeout just when the host is busiest, and
    // another server would meet the same shortage. nginx answers it without marking the
    // server either.
    if e.etype() == &ErrorType::InternalError {
        e.set_retry(false);
        return e;
    }
    ctx.last_failure = Some(error_status(&e));
    if let (Some(pool), Some(server)) = (ctx.pool(), ctx.server) {
        let reason = match e.etype() {
            ErrorType::ConnectTimedout => FailureReason::Timeout,
            _ => FailureReason::Connect,
        };
        pool.record_failure(server, reason, e.etype().as_str());
        // Nothing reached the server, so any method may go to another one.
        e.set_retry(ctx.retries_left(pool));
    }
    e
}

/// An error while the request was at the server: counted against it unless the pooled
/// connection was one the server had already closed, and retried only when that cannot
/// make the server act twice.
pub(super) fn after_proxy_error(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if e.esource() == &ErrorSource::Upstream {
        ctx.last_failure = Some(error_status(&e));
    }
    let (Some(pool), Some(server)) = (ctx.pool(), ctx.server) else {
        return e;
    };
    if e.esource() != &ErrorSource::Upstream {
        e.set_retry(false);
        return e;
    }
    let nothing_received = ctx.upstream_time.is_none() && session.response_written().is_none();
    let timed_out = matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    );
    // A pooled connection the server had already closed is not the server failing.
    let stale_connection = client_reused && nothing_received && !timed_out;
    if !stale_connection {
        let reason = if timed_out {
            FailureReason::Timeout
        } else {
            FailureReason::Reset
        };
        pool.record_failure(server, reason, e.etype().as_str());
    }
    // The server may have acted on the request: only idempotent ones are sent again, only
    // if nothing came back yet, and never after a timeout, which could double the load.
    let retry = nothing_received
        && !timed_out
        && session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && ctx.retries_left(pool);
    e.set_retry(retry);
    e
}
