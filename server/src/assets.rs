//! The JavaScript client, served by the server it speaks to: `GET /sockeye.js` and
//! `GET /sockeye.d.ts` (`clients/js/`).
//!
//! **Why the server serves it**: a page can `import { ReliableClient } from '/sockeye.js'`
//! from the server it connects to, and gets the client of the same build, so the two
//! sides of `sockeye.v1` never come from different versions.
//!
//! **Why embedded**: the layer reads no files (see the [crate docs](crate)), so both files
//! are compiled in with `include_str!` and their entity tags are computed at compile time.
//!
//! **Why `Cache-Control: no-cache` with an `ETag`** rather than `max-age`: with a
//! `max-age`, a browser would go on using the client it cached before a server upgrade
//! against the upgraded server until the age runs out. `no-cache` lets it keep the copy but
//! makes it ask every time whether it is still current (`If-None-Match`); the answer is a
//! `304` without a body while the server's build is unchanged, so a revalidation costs one
//! small round trip, and an upgrade is seen at once. The tag is strong: it is a hash of the
//! exact bytes, so equal tags mean equal bytes.
//!
//! **Why `Access-Control-Allow-Origin: *`**: a browser fetches a module script (`<script
//! type="module">`, `import`) in CORS mode, so a page served from another origin than the
//! `sockeye` server (the usual case: the application's own site) could not import the
//! client without it. Both files are public and the same for everyone, and the answer
//! carries no cookie or credential, so any origin may read them.

use sockeye_core::handshake::HttpRequest;

use crate::answer;

/// The `Cache-Control` of every asset (see the module docs for why).
const CACHE_CONTROL: &str = "no-cache";

/// A file served as it was at compile time.
#[derive(Debug)]
pub(crate) struct Asset {
    /// The request path it is served at.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// Its strong entity tag, quotes included (`"0123456789abcdef"`).
    etag: &'static str,
}

const JS: &str = include_str!("../../clients/js/sockeye.js");
const JS_ETAG: [u8; 18] = etag_of(JS.as_bytes());
const DTS: &str = include_str!("../../clients/js/sockeye.d.ts");
const DTS_ETAG: [u8; 18] = etag_of(DTS.as_bytes());

/// Every asset, by path.
static ASSETS: [Asset; 2] = [
    Asset {
        path: "/sockeye.js",
        // RFC 9239: `text/javascript` is the one media type for JavaScript, modules too.
        content_type: "text/javascript; charset=utf-8",
        body: JS,
        etag: ascii(&JS_ETAG),
    },
    Asset {
        path: "/sockeye.d.ts",
        // `text/plain`, not `application/typescript`: TypeScript has no registered media
        // type (`application/typescript` is unofficial, and `.ts` is also MPEG transport
        // stream, `video/mp2t`). The declarations are read by people and by editors and
        // never executed, and as `text/plain` a browser shows them instead of offering a
        // download of an unknown type.
        content_type: "text/plain; charset=utf-8",
        body: DTS,
        etag: ascii(&DTS_ETAG),
    },
];

/// The asset served at `path`, if any.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

impl Asset {
    /// The answer to a `GET` of this asset (and to a `HEAD`, whose body the caller cuts
    /// off as for every route): `304 Not Modified` when an `If-None-Match` field matches
    /// its tag, else `200` with the file.
    pub(crate) fn answer(&self, request: &HttpRequest) -> Vec<u8> {
        let headers = format!("ETag: {}\r\nAccess-Control-Allow-Origin: *\r\n", self.etag);
        if none_match_holds(request, self.etag) {
            return answer::not_modified(&format!("{headers}Cache-Control: {CACHE_CONTROL}\r\n"));
        }
        answer::cacheable(
            200,
            self.content_type,
            CACHE_CONTROL,
            &headers,
            self.body.as_bytes(),
        )
    }
}

/// Whether the request's `If-None-Match` fields name `etag` (or are `*`): the client's
/// copy is current.
///
/// RFC 9110 §13.1.2: the field is `*` or a comma-separated list of entity tags, and is
/// compared with the *weak* function (`W/"x"` matches `"x"`). A field that does not parse
/// matches nothing: the full answer is never wrong, a 304 to a client without the file
/// would be. Several fields count as one list (RFC 9110 §5.3).
fn none_match_holds(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers("If-None-Match")
        .any(|value| list_names(value, etag.as_bytes()))
}

/// Whether one `If-None-Match` value is `*` or lists `etag` (see [`none_match_holds`]).
fn list_names(value: &[u8], etag: &[u8]) -> bool {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let mut rest = &value[start..end];
    if rest == b"*" {
        return true;
    }
    loop {
        // Empty list elements (`"a", , "b"`) are allowed and skipped (RFC 9110 §5.6.1).
        let skip = rest
            .iter()
            .position(|b| !is_space(b) && *b != b',')
            .unwrap_or(rest.len());
        rest = &rest[skip..];
        if rest.is_empty() {
            return false;
        }
        // Weak comparison: the `W/` prefix is not part of what is compared.
        if let Some(strong) = rest.strip_prefix(b"W/") {
            rest = strong;
        }
        // An opaque tag is `"`, then any bytes but `"`, then `"`; commas may be inside.
        if rest.first() != Some(&b'"') {
            return false;
        }
        let Some(close) = rest[1..].iter().position(|b| *b == b'"') else {
            return false;
        };
        let (tag, after) = rest.split_at(close + 2);
        if tag == etag {
            return true;
        }
        rest = after;
    }
}

/// FNV-1a, 64 bits, of `bytes`: cheap, and well spread for telling versions of one file
/// apart (the tag is no security boundary: a client that forges one only gets a 304).
const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The entity tag of `bytes`: their FNV-1a 64-bit hash as 16 lowercase hex digits, in
/// quotes.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a64(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

/// `bytes` as text; they are ASCII (from [`etag_of`]), checked at compile time.
const fn ascii(bytes: &'static [u8]) -> &'static str {
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("an entity tag is ASCII"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sockeye_core::{Instant, SeededEntropy};

    use crate::{Action, Config, Server};

    /// One HTTP request on a fresh connection of a fresh layer, and everything the layer
    /// writes to that connection (it closes it after the answer).
    fn exchange(request: &str) -> Vec<u8> {
        let now = Instant::ZERO;
        let mut server = Server::new(
            Config::default(),
            now,
            1_700_000_000_000,
            Box::new(SeededEntropy::new(1)),
            None,
        );
        let conn = server.handle_accept(now);
        server.handle_bytes(now, conn, request.as_bytes());
        let mut out = Vec::new();
        let mut closed = false;
        while let Some(action) = server.poll_action() {
            match action {
                Action::Wake(c) | Action::Close(c) if c == conn => {
                    closed |= matches!(action, Action::Close(_));
                    while let Some(chunk) = server.poll_transmit(conn) {
                        out.extend_from_slice(&chunk);
                    }
                }
                _ => {}
            }
        }
        assert!(closed, "the layer closes the connection after its answer");
        out
    }

    /// The head of an answer as text, and its body.
    fn split(answer: &[u8]) -> (String, Vec<u8>) {
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head")
            + 4;
        (
            String::from_utf8(answer[..end].to_vec()).unwrap(),
            answer[end..].to_vec(),
        )
    }

    fn get(path: &str, extra: &str) -> (String, Vec<u8>) {
        split(&exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
        )))
    }

    fn etag(path: &str) -> &'static str {
        find(path).unwrap().etag
    }

    #[test]
    fn the_client_is_served_with_its_type_tag_and_exact_bytes() {
        for (path, content_type, file) in [
            ("/sockeye.js", "text/javascript; charset=utf-8", JS),
            ("/sockeye.d.ts", "text/plain; charset=utf-8", DTS),
        ] {
            let (head, body) = get(path, "");
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(
                head.contains(&format!("\r\nContent-Type: {content_type}\r\n")),
                "{head}"
            );
            assert!(
                head.contains(&format!("\r\nContent-Length: {}\r\n", file.len())),
                "{head}"
            );
            assert!(head.contains("\r\nCache-Control: no-cache\r\n"), "{head}");
            let tag = etag(path);
            assert_eq!(tag.as_bytes(), &etag_of(file.as_bytes()));
            assert!(head.contains(&format!("\r\nETag: {tag}\r\n")), "{head}");
            assert!(
                head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"),
                "importable from any origin: {head}"
            );
            assert_eq!(body, file.as_bytes());
        }
        assert_ne!(etag("/sockeye.js"), etag("/sockeye.d.ts"));
    }

    #[test]
    fn a_matching_if_none_match_is_answered_304_with_the_tag_and_no_body() {
        let tag = etag("/sockeye.js");
        for value in [
            tag.to_string(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            format!("\"a,b\",{tag} , \"c\""),
            "*".to_string(),
            " * ".to_string(),
        ] {
            let answer = exchange(&format!(
                "GET /sockeye.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {value}\r\n\r\n"
            ));
            let (head, body) = split(&answer);
            assert!(
                head.starts_with("HTTP/1.1 304 Not Modified\r\n"),
                "{value}: {head}"
            );
            assert!(head.contains(&format!("\r\nETag: {tag}\r\n")), "{head}");
            assert!(head.contains("\r\nCache-Control: no-cache\r\n"), "{head}");
            assert!(!head.contains("Content-Length"), "{head}");
            assert!(body.is_empty(), "{value}: a 304 has no body");
        }
        // The tag in a second field line counts too.
        let (head, _) = get(
            "/sockeye.d.ts",
            &format!(
                "If-None-Match: \"x\"\r\nIf-None-Match: {}\r\n",
                etag("/sockeye.d.ts")
            ),
        );
        assert!(head.starts_with("HTTP/1.1 304 "), "{head}");
    }

    #[test]
    fn another_tag_or_a_malformed_field_gets_the_file() {
        let tag = etag("/sockeye.js");
        let other = etag("/sockeye.d.ts");
        for value in [
            "\"0000000000000000\"".to_string(),
            other.to_string(),
            format!("\"a\", {other}"),
            tag.trim_matches('"').to_string(), // unquoted
            format!("\"a\", *, {tag}"),        // `*` belongs alone; the field is malformed
            "\"unterminated".to_string(),
            String::new(),
        ] {
            let (head, body) = get("/sockeye.js", &format!("If-None-Match: {value}\r\n"));
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{value}: {head}");
            assert_eq!(body, JS.as_bytes(), "{value}");
        }
    }

    #[test]
    fn head_gets_the_headers_of_get_and_no_body() {
        let (get_head, _) = get("/sockeye.js", "");
        let (head, body) = split(&exchange("HEAD /sockeye.js HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(head, get_head);
        assert!(body.is_empty());
        let (head, body) = split(&exchange(&format!(
            "HEAD /sockeye.d.ts HTTP/1.1\r\nHost: x\r\nIf-None-Match: {}\r\n\r\n",
            etag("/sockeye.d.ts")
        )));
        assert!(head.starts_with("HTTP/1.1 304 "), "{head}");
        assert!(body.is_empty());
    }

    #[test]
    fn other_methods_are_refused_405_with_allow() {
        // The other GET routes answer HEAD too, and say so the same way.
        for path in ["/sockeye.js", "/sockeye.d.ts", "/", "/healthz", "/metrics"] {
            for method in ["POST", "PUT", "DELETE"] {
                let (head, _) = split(&exchange(&format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                )));
                assert!(
                    head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                    "{method} {path}: {head}"
                );
                assert!(head.contains("\r\nAllow: GET, HEAD\r\n"), "{head}");
            }
        }
    }

    #[test]
    fn nearby_paths_are_not_assets() {
        for path in ["/sockeye.js/", "/Sockeye.js", "/clients/js/sockeye.js"] {
            let (head, _) = get(path, "");
            assert!(head.starts_with("HTTP/1.1 404 "), "{path}: {head}");
        }
    }

    #[test]
    fn fnv1a64_matches_its_published_values() {
        // The FNV reference test vectors (offset basis; "a"; "foobar").
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(&etag_of(b"a"), b"\"af63dc4c8601ec8c\"");
    }
}
