//! The answer to a request that failed: its status, and a one-line page that says which
//! upstream failed and how.

use super::ctx::RequestCtx;
use super::respond;
use crate::balance::Pool;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};

/// Writes the error page of `e`, unless the response had begun or the client is gone.
pub(super) async fn answer(session: &mut Session, e: &Error, ctx: &RequestCtx) -> FailToProxy {
    let status = error_status(e);
    // Once a response has begun, an error page would be read as the rest of its body:
    // the connection is closed instead, so the client sees the response cut.
    let started = session.response_written().is_some();
    if status > 0 && !started {
        let upstream = ctx.pool().map_or("-", Pool::name);
        let body = error_body(status, upstream, ctx.reached_backend, e);
        session.set_keepalive(None);
        if let Err(write_error) = respond::text(session, status, body).await {
            log::debug!("could not send the {status} response: {write_error}");
        }
    }
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

/// The status the client gets for a failed request; 0 when the client is gone.
pub(super) fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => *code,
        (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
        (ReadTimedout, ErrorSource::Downstream) => 408,
        (_, ErrorSource::Upstream) => 502,
        (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
        (_, ErrorSource::Downstream) => 400,
        (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
    }
}

/// The one-line text of an error answer; `reached`: whether a backend got the request.
fn error_body(status: u16, upstream: &str, reached: bool, e: &Error) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    match (status, e.etype(), &e.context) {
        (502, ..) if !reached => {
            format!("502 {reason}: upstream `{upstream}` could not be reached\n")
        }
        (502, ..) => format!(
            "502 {reason}: upstream `{upstream}` was reached but closed, reset or garbled its \
             answer\n"
        ),
        (503, ..) => format!("503 {reason}: upstream `{upstream}` has no server ready\n"),
        (504, ..) => format!("504 {reason}: upstream `{upstream}` did not answer in time\n"),
        // The proxy's own refusals say why; Pingora's parse errors may quote internals.
        (400..=499, ErrorType::HTTPStatus(_), Some(why)) => format!("{status} {reason}: {why}\n"),
        _ => format!("{status} {reason}\n"),
    }
}
