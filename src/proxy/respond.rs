//! Responses the proxy writes itself: its health endpoint, 404, 429, redirects and upstream
//! errors.

use bytes::Bytes;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes a complete plain-text response (headers only for HEAD).
pub(super) async fn text(session: &mut Session, status: u16, body: String) -> Result<()> {
    write(session, ResponseHeader::build(status, Some(4))?, body).await
}

/// Writes `429 Too Many Requests`, saying when to come back.
pub(super) async fn too_many_requests(
    session: &mut Session,
    retry_after_seconds: u64,
) -> Result<()> {
    let mut resp = ResponseHeader::build(429, Some(5))?;
    resp.insert_header("retry-after", retry_after_seconds)?;
    let body = format!("429 Too Many Requests: retry in {retry_after_seconds} s\n");
    write(session, resp, body).await
}

/// Writes `405 Method Not Allowed` to a CONNECT request and closes the connection after it:
/// a client that meant to tunnel may already be sending the tunnel's bytes.
pub(super) async fn connect_refused(session: &mut Session) -> Result<()> {
    session.set_keepalive(None);
    let mut resp = ResponseHeader::build(405, Some(5))?;
    resp.insert_header("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")?;
    let body = "405 Method Not Allowed: edgeproxy does not tunnel CONNECT requests\n".to_owned();
    write(session, resp, body).await
}

/// Writes a redirect to `location`.
pub(super) async fn redirect(session: &mut Session, status: u16, location: String) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(5))?;
    let body = format!("Moved to {location}\n");
    resp.insert_header("location", location)?;
    write(session, resp, body).await
}

async fn write(session: &mut Session, mut resp: ResponseHeader, body: String) -> Result<()> {
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len())?;
    resp.insert_header("cache-control", "no-store")?;
    let head_only = session.req_header().method == Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}
