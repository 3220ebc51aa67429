//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1): parsed, never yet accepted.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::HandshakeError;

/// One extension a client offered in `Sec-WebSocket-Extensions`, such as
/// `permessage-deflate; client_max_window_bits`.
///
/// Sockeye accepts no extension yet; offers are parsed so the caller can see (and log)
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, as sent.
    pub name: String,
    /// Its parameters in order: the name and, when given, the value (quoted values
    /// unquoted and unescaped).
    pub params: Vec<(String, Option<String>)>,
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cursor over one header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A non-empty token.
    fn token(&mut self) -> Result<String, HandshakeError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        token_string(&self.bytes[start..self.pos])
    }

    /// A quoted-string (the opening quote already seen), unescaped.
    fn quoted(&mut self) -> Result<String, HandshakeError> {
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(HandshakeError::Malformed),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(HandshakeError::Malformed)?;
                    value.push(escaped);
                    self.pos += 1;
                }
                Some(b) => {
                    value.push(b);
                    self.pos += 1;
                }
            }
        }
        // RFC 6455 §9.1: "When using the quoted-string syntax variant, the value after
        // quoted-string unescaping MUST conform to the 'token' ABNF."
        token_string(&value)
    }
}

/// `bytes` as a `String` if it is a non-empty token (tokens are ASCII).
pub(crate) fn token_string(bytes: &[u8]) -> Result<String, HandshakeError> {
    if bytes.is_empty() || !bytes.iter().all(|&b| is_tchar(b)) {
        return Err(HandshakeError::Malformed);
    }
    Ok(bytes.iter().map(|&b| char::from(b)).collect())
}

/// Parses one `Sec-WebSocket-Extensions` value and appends its offers to `out`.
///
/// RFC 6455 §9.1:
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
/// Empty list elements are skipped (RFC 9110 §5.6.1); anything else off the grammar is
/// [`HandshakeError::Malformed`].
pub(crate) fn parse_extensions(
    value: &[u8],
    out: &mut Vec<ExtensionOffer>,
) -> Result<(), HandshakeError> {
    let mut cur = Cursor {
        bytes: value,
        pos: 0,
    };
    loop {
        cur.skip_ows();
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => {
                cur.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cur.token()?;
        let mut params = Vec::new();
        cur.skip_ows();
        while cur.eat(b';') {
            cur.skip_ows();
            let param = cur.token()?;
            cur.skip_ows();
            let value = if cur.eat(b'=') {
                cur.skip_ows();
                if cur.eat(b'"') {
                    Some(cur.quoted()?)
                } else {
                    Some(cur.token()?)
                }
            } else {
                None
            };
            params.push((param, value));
            cur.skip_ows();
        }
        out.push(ExtensionOffer { name, params });
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => cur.pos += 1,
            Some(_) => return Err(HandshakeError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::vec;

    fn parse(value: &[u8]) -> Result<Vec<ExtensionOffer>, HandshakeError> {
        let mut out = Vec::new();
        parse_extensions(value, &mut out).map(|()| out)
    }

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.to_owned(),
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(|v| v.to_owned())))
                .collect(),
        }
    }

    #[test]
    fn rfc6455_9_1_browser_offer() {
        assert_eq!(
            parse(b"permessage-deflate; client_max_window_bits").unwrap(),
            vec![offer(
                "permessage-deflate",
                &[("client_max_window_bits", None)]
            )]
        );
    }

    #[test]
    fn rfc6455_9_1_list_with_token_and_quoted_values() {
        assert_eq!(
            parse(b"foo ; a=1;b = \"x\\y\" , , bar,baz;c").unwrap(),
            vec![
                offer("foo", &[("a", Some("1")), ("b", Some("xy"))]),
                offer("bar", &[]),
                offer("baz", &[("c", None)]),
            ]
        );
    }

    #[test]
    fn rfc6455_9_1_quoted_value_must_be_a_token() {
        assert_eq!(parse(b"foo; a=\"x y\""), Err(HandshakeError::Malformed));
        assert_eq!(parse(b"foo; a=\"\""), Err(HandshakeError::Malformed));
    }

    #[test]
    fn off_grammar_values_are_malformed() {
        for bad in [
            &b"foo bar"[..],
            b"foo;",
            b"foo; =1",
            b"foo; a=",
            b"foo; a=\"1",
            b"foo; a=\"1\\",
            b";a",
            b"f\xffo",
        ] {
            assert_eq!(parse(bad), Err(HandshakeError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn empty_and_blank_values_offer_nothing() {
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b" , ,").unwrap(), vec![]);
    }
}
