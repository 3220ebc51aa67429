//! Reading an HTTP/1.1 head in bounded memory, and the header lookups both sides share.
//!
//! [`HeadReader`] buffers at most `max_handshake_bytes` and scans each byte once for the
//! blank line that ends the head, so a head fed byte by byte costs O(n), and the result
//! never depends on how the bytes were chunked: every decision is a function of the bytes
//! seen so far, taken at the same byte whatever the chunking.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::HandshakeError;

/// A complete head and the bytes that followed it in the same input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CompleteHead {
    /// The head, request or status line to blank line included.
    pub(crate) head: Vec<u8>,
    /// Bytes after the head: they belong to the frame layer.
    pub(crate) trailing: Vec<u8>,
}

/// Accumulates a head until its blank line, never holding more than `max` bytes.
#[derive(Debug)]
pub(crate) struct HeadReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for a line end.
    scanned: usize,
    /// Whether the first line has been handed to the first-line check.
    first_line_seen: bool,
    max: usize,
}

impl HeadReader {
    /// A reader for heads of at most `max` bytes, blank line included. Allocates nothing
    /// until bytes arrive, and never more than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        HeadReader {
            buf: Vec::new(),
            scanned: 0,
            first_line_seen: false,
            max,
        }
    }

    /// Bytes buffered so far (never more than the limit).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds `data`. Returns `Ok(None)` while the head is incomplete, the head and what
    /// followed it once its blank line arrives, or an error: `HeadTooLarge` once `max`
    /// bytes hold no blank line, or whatever `first_line` answers for the first line
    /// (called once, with the bytes up to and including its `\n`), so garbage is refused
    /// without waiting for the limit.
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        first_line: impl FnOnce(&[u8]) -> Result<(), HandshakeError>,
    ) -> Result<Option<CompleteHead>, HandshakeError> {
        if data.is_empty() {
            return Ok(None);
        }
        // Bound the buffer before copying: a head that fits has its blank line within
        // the first `max` bytes, so nothing past them is needed to decide.
        let room = self.max.saturating_sub(self.buf.len());
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        let mut first_line = Some(first_line);
        while self.scanned < self.buf.len() {
            let i = self.scanned;
            self.scanned += 1;
            if self.buf[i] != b'\n' {
                continue;
            }
            if !self.first_line_seen {
                self.first_line_seen = true;
                if let Some(check) = first_line.take() {
                    check(&self.buf[..=i])?;
                }
            }
            if ends_blank_line(&self.buf, i) {
                let trailing_in_buf = self.buf.split_off(i + 1);
                let mut trailing = trailing_in_buf;
                trailing.extend_from_slice(&data[take..]);
                let head = core::mem::take(&mut self.buf);
                self.scanned = 0;
                return Ok(Some(CompleteHead { head, trailing }));
            }
        }
        if self.buf.len() >= self.max {
            return Err(HandshakeError::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Whether the `\n` at `i` ends an empty line (`\n\n` or `\n\r\n`), which ends the head.
/// Bare `\n` line ends are accepted as httparse accepts them (RFC 9112 §2.2).
fn ends_blank_line(buf: &[u8], i: usize) -> bool {
    match i {
        0 => false,
        1 => buf[0] == b'\n',
        _ => buf[i - 1] == b'\n' || (buf[i - 1] == b'\r' && buf[i - 2] == b'\n'),
    }
}

/// Header fields of a head, owned, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// Copies the fields httparse found.
    pub(crate) fn from_httparse(headers: &[httparse::Header<'_>]) -> Self {
        Headers(
            headers
                .iter()
                .map(|h| (String::from(h.name), h.value.to_vec()))
                .collect(),
        )
    }

    /// Every value of the fields named `name` (case-insensitive), in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of the first field named `name` (case-insensitive).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// How many fields are named `name` (case-insensitive).
    pub(crate) fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The comma-separated elements of every field named `name`, trimmed, empty ones
    /// skipped (RFC 9110 §5.6.1 list syntax, across repeated fields).
    pub(crate) fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|e| !e.is_empty())
    }

    /// Whether the list in the fields named `name` holds `token` (ASCII case-insensitive).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// `value` without leading and trailing spaces and tabs (optional whitespace, OWS).
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// Maps an httparse error to the handshake error the peer should see.
pub(crate) fn parse_error(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        httparse::Error::Version => HandshakeError::UnsupportedHttpVersion,
        _ => HandshakeError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &[u8]) -> Result<(), HandshakeError> {
        Ok(())
    }

    #[test]
    fn finds_the_blank_line_across_chunks_and_keeps_the_rest() {
        let mut reader = HeadReader::new(64);
        assert!(reader
            .push(b"GET / HTTP/1.1\r\nA: b\r", ok)
            .unwrap()
            .is_none());
        assert!(reader.push(b"\n\r", ok).unwrap().is_none());
        let done = reader.push(b"\nrest", ok).unwrap().unwrap();
        assert_eq!(done.head, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
        assert_eq!(done.trailing, b"rest");
    }

    #[test]
    fn accepts_bare_line_feeds() {
        let mut reader = HeadReader::new(64);
        let done = reader
            .push(b"GET / HTTP/1.1\nA: b\n\nx", ok)
            .unwrap()
            .unwrap();
        assert_eq!(done.head, b"GET / HTTP/1.1\nA: b\n\n");
        assert_eq!(done.trailing, b"x");
    }

    #[test]
    fn a_head_of_exactly_the_limit_fits_one_more_byte_does_not() {
        let head = b"GET / HTTP/1.1\r\n\r\n";
        let mut reader = HeadReader::new(head.len());
        let done = reader.push(head, ok).unwrap().unwrap();
        assert_eq!(done.head, head);

        let mut reader = HeadReader::new(head.len() - 1);
        assert_eq!(
            reader.push(head, ok).unwrap_err(),
            HandshakeError::HeadTooLarge
        );
        assert_eq!(reader.buffered(), head.len() - 1);
    }

    #[test]
    fn trailing_bytes_past_the_limit_are_not_buffered_but_returned() {
        let mut input = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        input.extend_from_slice(&[7; 100]);
        let mut reader = HeadReader::new(32);
        let done = reader.push(&input, ok).unwrap().unwrap();
        assert_eq!(done.trailing, [7; 100]);
    }

    #[test]
    fn the_first_line_check_runs_once() {
        let mut reader = HeadReader::new(64);
        let refuse = |line: &[u8]| {
            assert_eq!(line, b"bad\r\n");
            Err(HandshakeError::Malformed)
        };
        assert!(reader.push(b"bad\r", refuse).unwrap().is_none());
        assert_eq!(reader.push(b"\n", refuse), Err(HandshakeError::Malformed));
    }

    #[test]
    fn header_lists_span_repeated_fields() {
        let raw = [
            httparse::Header {
                name: "Connection",
                value: b"keep-alive, , Upgrade ",
            },
            httparse::Header {
                name: "connection",
                value: b"\tfoo",
            },
        ];
        let headers = Headers::from_httparse(&raw);
        let list: Vec<&[u8]> = headers.list("CONNECTION").collect();
        assert_eq!(list, [&b"keep-alive"[..], b"Upgrade", b"foo"]);
        assert!(headers.has_token("connection", "upgrade"));
        assert!(!headers.has_token("connection", "close"));
        assert_eq!(headers.count("Connection"), 2);
        assert_eq!(
            headers.get("connection"),
            Some(&b"keep-alive, , Upgrade "[..])
        );
    }

    #[test]
    fn trim_handles_blank_values() {
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b" a b\t"), b"a b");
    }
}
