//! [`Refusal`]: the HTTP answer a server refuses a WebSocket upgrade with, when the
//! application's accept hook ([`Server::on_request`](crate::Server::on_request)) or the
//! server's connection limit says no.

use std::fmt;
use std::fmt::Write as _;

use bytes::Bytes;
use sockeye_core::handshake::reason_phrase;
use sockeye_core::HandshakeError;

/// Headers the refusal writes itself; the application's are left out.
const OWN_HEADERS: [&str; 3] = ["content-length", "connection", "transfer-encoding"];

/// An HTTP answer refusing an upgrade: any status, with headers and a body of the
/// application's choosing.
///
/// Without [`with_body`](Self::with_body) the body is the status's reason phrase as
/// plain text. `Content-Length` and `Connection: close` are always the refusal's own;
/// a header whose name is not an HTTP token, or whose value holds a CR, LF or NUL, is
/// left out rather than written.
///
/// ```
/// use sockeye_std::Refusal;
///
/// let refusal = Refusal::new(401)
///     .with_header("WWW-Authenticate", "Bearer")
///     .with_body("a token is required\n");
/// assert_eq!(refusal.status(), 401);
/// let answer = String::from_utf8(refusal.response().to_vec()).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
/// assert!(answer.contains("\r\nWWW-Authenticate: Bearer\r\n"));
/// assert!(answer.ends_with("\r\n\r\na token is required\n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
}

impl Refusal {
    /// A refusal with `status`. A status outside `200..=599` (a 1xx would not end the
    /// exchange) is answered as 500.
    pub fn new(status: u16) -> Refusal {
        let status = if (200..=599).contains(&status) {
            status
        } else {
            500
        };
        Refusal {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// The answer to an upgrade over the server's `max_connections`: 503.
    pub(crate) fn too_many_connections() -> Refusal {
        Refusal::new(503).with_body("too many connections\n")
    }

    /// The answer to an upgrade that arrives while the server shuts down: 503.
    pub(crate) fn shutting_down() -> Refusal {
        Refusal::new(503).with_body("server shutting down\n")
    }

    /// Adds the header `name: value` (see the type's docs for which are left out).
    pub fn with_header(mut self, name: &str, value: &str) -> Refusal {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let clean = !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        let own = OWN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name));
        if token && clean && !own {
            self.headers
                .push((name.to_string(), value.trim().to_string()));
        }
        self
    }

    /// Sets the body; give it a `Content-Type` with [`with_header`](Self::with_header).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Refusal {
        self.body = Some(body.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers the application added, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body: the one given, or the reason phrase.
    pub fn body(&self) -> Bytes {
        match &self.body {
            Some(body) => body.clone(),
            None => Bytes::from(format!("{}\n", reason_phrase(self.status))),
        }
    }

    /// The whole HTTP response, as written before the connection is closed.
    pub fn response(&self) -> Bytes {
        let body = self.body();
        let mut head = String::with_capacity(128);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.body.is_none() {
            head.push_str("Content-Type: text/plain\r\n");
        }
        let _ = write!(
            head,
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&body);
        Bytes::from(out)
    }
}

impl From<HandshakeError> for Refusal {
    /// The answer the core gives `e`: its status, the headers that status requires, and
    /// its reason as the body (`HandshakeError::OriginRefused` is a 403).
    fn from(e: HandshakeError) -> Refusal {
        let mut refusal = Refusal::new(e.status())
            .with_header("Content-Type", "text/plain")
            .with_body(format!("{e}\n"));
        match e.status() {
            405 => refusal = refusal.with_header("Allow", "GET"),
            426 => {
                refusal = refusal
                    .with_header("Upgrade", "websocket")
                    .with_header("Sec-WebSocket-Version", "13");
            }
            _ => {}
        }
        refusal
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, reason_phrase(self.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(refusal: &Refusal) -> String {
        String::from_utf8(refusal.response().to_vec()).unwrap()
    }

    #[test]
    fn a_bare_status_answers_its_reason_phrase() {
        assert_eq!(
            text(&Refusal::new(404)),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\nNot Found\n"
        );
        assert_eq!(Refusal::new(101).status(), 500);
        assert_eq!(Refusal::new(401).to_string(), "401 Unauthorized");
    }

    #[test]
    fn headers_that_could_split_the_answer_are_left_out() {
        let refusal = Refusal::new(400)
            .with_header("X-Ok", "yes")
            .with_header("X-Bad", "a\r\nInjected: 1")
            .with_header("Bad Name", "x")
            .with_header("content-length", "0")
            .with_body("no");
        let answer = text(&refusal);
        assert!(answer.contains("\r\nX-Ok: yes\r\n"));
        assert!(!answer.contains("Injected"));
        assert!(!answer.contains("Bad Name"));
        assert!(answer.contains("Content-Length: 2\r\n"));
        assert_eq!(answer.matches("Content-Length").count(), 1);
        assert!(answer.ends_with("\r\n\r\nno"));
    }

    #[test]
    fn a_handshake_error_keeps_its_status_and_required_headers() {
        let refusal = Refusal::from(HandshakeError::UnsupportedVersion);
        assert_eq!(refusal.status(), 426);
        assert!(text(&refusal).contains("Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(Refusal::from(HandshakeError::OriginRefused).status(), 403);
    }
}
