//! The answer to a request that failed: its status, and a one-line page that says which
//! upstream failed and how.

use super::ctx::RequestCtx;
use super::respond;
use crate::balance::Pool;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};
use std::time::Duration;

/// How long the rest of a request body is read and dropped after an error page, before the
/// connection closes: closing with unread bytes resets it, and a reset can destroy the page
/// before the client reads it (nginx's lingering close, whose `lingering_time` is 30 s).
const LINGER: Duration = Duration::from_secs(2);

/// Writes the error page of `e`, unless the response had begun or the client is gone.
pub(super) async fn answer(session: &mut Session, e: &Error, ctx: &RequestCtx) -> FailToProxy {
    let status = error_status(e);
    // Once a response has begun, an error page would be read as the rest of its body:
    // the connection is closed instead, so the client sees the response cut. A `100
    // Continue` relayed from the backend is no such beginning: the final answer follows it.
    let started = session
        .response_written()
        .is_some_and(|r| !r.status.is_informational());
    if status > 0 && !started {
        let upstream = ctx.pool().map_or("-", Pool::name);
        let body = error_body(status, upstream, ctx.reached_backend, e);
        session.set_keepalive(None);
        if let Err(write_error) = respond::text(session, status, body).await {
            log::debug!("could not send the {status} response: {write_error}");
        } else if !session.is_body_done() {
            discard_body(session).await;
        }
    }
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

/// Reads what the client still sends of the request body, for up to [`LINGER`].
async fn discard_body(session: &mut Session) {
    let drain = async { while let Ok(Some(_)) = session.read_request_body().await {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
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
        (400..=499, ErrorType::HTTPStatus(_), Some(_)) => {
            format!("{status} {reason}: {}\n", refusal_reason(e))
        }
        _ => format!("{status} {reason}\n"),
    }
}

/// What the proxy said when it refused: the context of the innermost error of the refusal's
/// type, under the context (the peer, say) that Pingora adds on the way out.
fn refusal_reason(e: &Error) -> &str {
    let mut refusal = e;
    while let Some(inner) = refusal
        .cause
        .as_deref()
        .and_then(|cause| {
            // `more_context` keeps the error it wraps boxed.
            cause
                .downcast_ref::<Box<Error>>()
                .map(|boxed| &**boxed)
                .or_else(|| cause.downcast_ref::<Error>())
        })
        .filter(|inner| inner.etype() == e.etype())
    {
        refusal = inner;
    }
    refusal.context.as_ref().map_or("", |c| c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_reason_under_added_context() {
        let refusal = Error::explain(
            ErrorType::HTTPStatus(413),
            "the body is larger than 10 bytes",
        )
        .more_context("peer: addr: 127.0.0.1:9, scheme: HTTP");
        assert_eq!(
            error_body(413, "app", true, &refusal),
            "413 Payload Too Large: the body is larger than 10 bytes\n"
        );
    }
}
