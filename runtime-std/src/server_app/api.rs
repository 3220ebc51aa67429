//! Routing a request on the one port: `/ws` upgrades, the push API, health, metrics and
//! the demo page. Every answer but the upgrade closes the connection.

use std::net::TcpStream;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use sockeye_core::auth::UserId;
use sockeye_core::hub::Target;

use super::http::{self, BodyError, Head, HeadError};
use super::identity::{push_access, PushAccess};
use super::log::log_at;
use super::metrics::{Metrics, Rejection};
use super::{plain, ws, Shared};

/// The demo page served at `/`.
const DEMO_PAGE: &str = include_str!("demo.html");

/// Serves one TCP connection: reads its request head and answers it.
///
/// This frame stays on the stack under a WebSocket connection's whole life, so everything
/// else a request may need (routing, the push API, refusals) runs in frames of its own.
pub(super) fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.config.head_timeout;
    let mut buf = Vec::new();
    let head = match http::read_head(
        &mut stream,
        &mut buf,
        shared.config.max_head_bytes,
        deadline,
    ) {
        Ok(head) => head,
        Err(e) => return refuse_head(shared, stream, &e),
    };
    if head.path() == "/ws" {
        ws::serve(shared, stream, head, buf);
    } else {
        answer(shared, stream, &head, &mut buf, deadline);
    }
}

/// Answers a head that could not be read, if the client can still hear it.
#[cold]
#[inline(never)]
fn refuse_head(shared: &Shared, stream: TcpStream, e: &HeadError) {
    if let Some(answer) = e.response() {
        shared
            .metrics
            .reject(Rejection::from_status(status_of(&answer)));
        log_at!(Debug, "request head refused: {e:?}");
        http::answer_and_close(stream, &answer);
    }
}

/// Answers a plain HTTP request (anything but `/ws`) and closes the connection.
#[inline(never)]
fn answer(
    shared: &Shared,
    mut stream: TcpStream,
    head: &Head,
    buf: &mut Vec<u8>,
    deadline: Instant,
) {
    Metrics::add(&shared.metrics.http_requests, 1);
    let mut answer = route(shared, &mut stream, head, buf, deadline);
    if head.method == "HEAD" {
        answer = http::without_body(answer);
    }
    log_at!(
        Debug,
        "{} {} -> {}",
        head.method,
        head.path(),
        status_of(&answer)
    );
    http::answer_and_close(stream, &answer);
}

/// The status code of a response we wrote.
fn status_of(answer: &[u8]) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn route(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &Head,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    match (head.method.as_str(), head.path()) {
        ("GET" | "HEAD", "/") => {
            http::response(200, "text/html; charset=utf-8", "", DEMO_PAGE.as_bytes())
        }
        ("GET" | "HEAD", "/healthz") => http::response(200, "text/plain", "", b"ok\n"),
        ("GET" | "HEAD", "/metrics") => {
            shared.metrics.resends.store(
                shared.registry.resent_messages(),
                std::sync::atomic::Ordering::Relaxed,
            );
            let page = shared.metrics.render(&shared.state.gauges());
            http::response(200, "text/plain; version=0.0.4", "", page.as_bytes())
        }
        ("POST", "/api/push") => push(shared, stream, head, buf, deadline),
        (_, "/" | "/healthz" | "/metrics") => method_not_allowed("GET"),
        (_, "/api/push") => method_not_allowed("POST"),
        _ => http::json_error(404, "no such path"),
    }
}

fn method_not_allowed(allow: &str) -> Vec<u8> {
    let body = json!({ "error": format!("method not allowed (use {allow})") }).to_string();
    http::response(
        405,
        "application/json",
        &format!("Allow: {allow}\r\n"),
        body.as_bytes(),
    )
}

/// `POST /api/push` with `{"user":"id"}|{"room":"name"}|{"everyone":true}` and `"data"`.
fn push(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &Head,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    match push_access(&shared.config, head) {
        PushAccess::Allowed => {}
        PushAccess::Unauthorized(why) => {
            return http::response(
                401,
                "application/json",
                "WWW-Authenticate: Bearer\r\n",
                json!({ "error": why }).to_string().as_bytes(),
            )
        }
        PushAccess::Disabled => {
            return http::json_error(403, "push API disabled: the server has no --api-key")
        }
    }
    let body = match http::read_body(stream, head, buf, shared.config.max_message_bytes, deadline) {
        Ok(body) => body,
        Err(BodyError::Length(status, why)) => return http::json_error(status, why),
        Err(BodyError::TooLarge) => {
            return http::json_error(
                413,
                &format!(
                    "body larger than {} bytes (--max-message-bytes)",
                    shared.config.max_message_bytes
                ),
            )
        }
        Err(BodyError::Gone) => {
            return http::json_error(408, "body incomplete before the deadline")
        }
    };
    let (target, data) = match parse_push(&body) {
        Ok(parsed) => parsed,
        Err(why) => return http::json_error(400, why),
    };
    let receipt = match shared.state.push(target, data, &shared.metrics) {
        Ok(receipt) => receipt,
        Err(e) => {
            return http::json_error(
                503,
                &format!("push not accepted: the journal could not record it ({e})"),
            )
        }
    };
    Metrics::add(&shared.metrics.pushes, 1);
    http::json(
        202,
        &json!({ "queued": { "connections": receipt.connections, "mailboxed": receipt.mailboxed, "dead_lettered": receipt.dead_lettered } }),
    )
}

/// The target and the `data` (as JSON text) of a push body.
fn parse_push(body: &[u8]) -> Result<(Target, Bytes), &'static str> {
    if plain::depth(body) > plain::MAX_JSON_DEPTH {
        return Err("json nested too deeply");
    }
    let object = plain::raw_object(body).map_err(|e| match e {
        plain::RawError::NotJson => "body is not valid JSON",
        plain::RawError::NotObject => "body must be a JSON object",
    })?;
    // Kept as the backend wrote it: big numbers keep their digits, objects their order.
    let data = object
        .get("data")
        .ok_or("missing \"data\"")?
        .get()
        .to_string();
    let mut targets = Vec::new();
    match object.get("user").map(|raw| plain::as_string(raw)) {
        Some(Some(user)) if !user.is_empty() => targets.push(Target::User(UserId(user))),
        Some(_) => return Err("\"user\" must be a non-empty string"),
        None => {}
    }
    match object.get("room").map(|raw| plain::as_string(raw)) {
        Some(Some(room)) if !room.is_empty() => targets.push(Target::Room(room)),
        Some(_) => return Err("\"room\" must be a non-empty string"),
        None => {}
    }
    match object.get("everyone").map(|raw| raw.get()) {
        Some("true") => targets.push(Target::Everyone),
        Some(_) => return Err("\"everyone\" must be true"),
        None => {}
    }
    if targets.len() != 1 {
        return Err("exactly one target needed: \"user\", \"room\" or \"everyone\":true");
    }
    Ok((targets.remove(0), Bytes::from(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_keeps_the_data_text_the_backend_wrote() {
        let body = br#"{"data":{"z":18446744073709551616,"a":1.50},"user":"kim"}"#;
        let (target, data) = parse_push(body).unwrap();
        assert_eq!(target, Target::User(UserId("kim".into())));
        assert_eq!(&data[..], br#"{"z":18446744073709551616,"a":1.50}"#);
        let (target, _) = parse_push(br#"{"everyone": true ,"data":1}"#).unwrap();
        assert_eq!(target, Target::Everyone);
        assert!(parse_push(br#"{"everyone":1,"data":1}"#).is_err());
        assert!(parse_push(br#"{"user":7,"data":1}"#).is_err());
        assert!(parse_push(br#"[1]"#).is_err());
    }
}
