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
    let attempt = Attempt {
        nothing_received,
        timed_out,
        unsent: stale_connection && e.etype() == &ErrorType::WriteError,
        idempotent: session.req_header().method.is_idempotent(),
        body_kept: !session.as_ref().retry_buffer_truncated(),
    };
    let again = send_again(&attempt, ctx.retries_left(pool), ctx.resent_unsent);
    if again == Again::Unsent {
        ctx.resent_unsent = true;
    }
    e.set_retry(again != Again::No);
    e
}

/// What is known of a failed attempt at the server.
struct Attempt {
    /// No response byte came back.
    nothing_received: bool,
    /// A read or a write timed out.
    timed_out: bool,
    /// A pooled connection the server had closed, found out while the request was being
    /// written: the server had stopped reading it, so nothing reached the application.
    unsent: bool,
    /// The method may be repeated (GET, HEAD, PUT, DELETE, OPTIONS, TRACE).
    idempotent: bool,
    /// The body sent so far is kept for sending again.
    body_kept: bool,
}

/// Whether a failed request goes to a server again, and why.
#[derive(Debug, PartialEq, Eq)]
enum Again {
    No,
    /// A retry that `retries` allows.
    Retry,
    /// The one resend of a request that never reached the application.
    Unsent,
}

/// The server may have acted on the request: only idempotent ones are sent again, only if
/// nothing came back yet, and never after a timeout, which could double the load. A request
/// that never reached the application goes again whatever its method, once and whatever
/// `retries` says, as Go's and Envoy's clients do: it repairs the pool's race with the
/// server's idle timeout, it is not a second try at a server.
fn send_again(attempt: &Attempt, retries_left: bool, resent_unsent: bool) -> Again {
    if !attempt.nothing_received || attempt.timed_out || !attempt.body_kept {
        Again::No
    } else if attempt.unsent && !resent_unsent {
        Again::Unsent
    } else if attempt.idempotent && retries_left {
        Again::Retry
    } else {
        Again::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_unsent() -> Attempt {
        Attempt {
            nothing_received: true,
            timed_out: false,
            unsent: true,
            idempotent: false,
            body_kept: true,
        }
    }

    #[test]
    fn a_request_that_never_reached_the_application_goes_again_once() {
        assert_eq!(send_again(&post_unsent(), false, false), Again::Unsent);
        assert_eq!(send_again(&post_unsent(), true, true), Again::No);
        let cut_body = Attempt {
            body_kept: false,
            ..post_unsent()
        };
        assert_eq!(send_again(&cut_body, true, false), Again::No);
        let answered = Attempt {
            nothing_received: false,
            ..post_unsent()
        };
        assert_eq!(send_again(&answered, true, false), Again::No);
    }

    #[test]
    fn only_idempotent_requests_are_retried_after_reaching_a_server() {
        let sent = Attempt {
            unsent: false,
            ..post_unsent()
        };
        assert_eq!(send_again(&sent, true, false), Again::No);
        let get = Attempt {
            idempotent: true,
            ..sent
        };
        assert_eq!(send_again(&get, true, false), Again::Retry);
        assert_eq!(send_again(&get, false, false), Again::No);
        let timed_out = Attempt {
            timed_out: true,
            ..get
        };
        assert_eq!(send_again(&timed_out, true, false), Again::No);
    }
}
