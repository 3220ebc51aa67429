//! The server side of the opening handshake (RFC 6455 §4.2).

use super::http::RequestReader;
use super::request::Request;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::time::Instant;

/// The server side of the opening handshake: reads and validates the client's upgrade
/// request.
///
/// Feed every read to [`handle_bytes`](Self::handle_bytes) until it returns a
/// [`Request`] or an error, and re-arm a timer from [`poll_timeout`](Self::poll_timeout)
/// after each call. On an error, write [`HandshakeError::response`] and close the
/// transport.
#[derive(Debug)]
pub struct ServerHandshake {
    reader: RequestReader,
    /// The refusal of a complete head that was no valid upgrade, answered again to
    /// every later call as the contract says.
    refused: Option<HandshakeError>,
}

impl ServerHandshake {
    /// A handshake whose client connected at `now`. It must send its whole request head
    /// within `config.handshake_timeout`, in at most `config.max_handshake_bytes` bytes
    /// and `config.max_handshake_headers` header fields.
    pub fn new(config: &Config, now: Instant) -> Self {
        ServerHandshake {
            reader: RequestReader::new(config, now),
            refused: None,
        }
    }

    /// Feeds bytes read from the client, in chunks of any size.
    ///
    /// - `Ok(None)`: the head is not complete yet; a partial head is never an error.
    /// - `Ok(Some(request))`: a complete, valid upgrade request. Decide on it (origin,
    ///   subprotocol, auth) and call [`Request::accept`] or [`Request::reject`]. Bytes
    ///   after the head are inside the request and reach the connection on `accept`.
    /// - `Err(e)`: write [`e.response()`](HandshakeError::response) and close. Later calls
    ///   answer the same error.
    ///
    /// After a request has been returned the handshake is finished: feed later bytes to
    /// the connection from [`Request::accept`]; calls here then return `Ok(None)`.
    ///
    /// Allocates at most `max_handshake_bytes` for the head, the header array once the
    /// head is complete, and the request's owned fields.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Request>, HandshakeError> {
        if let Some(error) = &self.refused {
            return Err(error.clone());
        }
        match self.reader.handle_bytes(now, data)? {
            Some(http) => http.into_upgrade().map(Some).inspect_err(|error| {
                self.refused = Some(error.clone());
            }),
            None => Ok(None),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called: the connection's
    /// start plus `config.handshake_timeout`, while the head is still being read; `None`
    /// once the handshake has a result.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reader.poll_timeout()
    }

    /// Tells the handshake that time has passed. Once the deadline has passed with the
    /// head incomplete, returns [`HandshakeError::Timeout`]: write its response (408) and
    /// close. An early or spurious call is a harmless no-op returning `Ok(())`; after a
    /// failure it answers the same error again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if let Some(error) = &self.refused {
            return Err(error.clone());
        }
        self.reader.handle_timeout(now)
    }

    /// The client ended its side of the stream at `now`. Before a complete request that
    /// is [`HandshakeError::UnexpectedEof`]: close the transport (there is no one to
    /// answer). After the request, a no-op; after a failure, the same error again.
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if let Some(error) = &self.refused {
            return Err(error.clone());
        }
        self.reader.handle_eof(now)
    }

    /// Bytes of head buffered so far.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.reader.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Event, Message};
    use crate::handshake::request::tests::{drain, refused, sample_with, MASKED_HELLO, SAMPLE};
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use core::time::Duration;
    use proptest::prelude::*;

    #[test]
    fn an_eof_mid_head_fails_the_handshake_and_an_eof_after_it_is_a_no_op() {
        let config = Config::default();
        let mut cut = ServerHandshake::new(&config, Instant::ZERO);
        let half = &SAMPLE.as_bytes()[..SAMPLE.len() / 2];
        assert_eq!(cut.handle_bytes(Instant::ZERO, half), Ok(None));
        assert_eq!(
            cut.handle_eof(Instant::ZERO),
            Err(HandshakeError::UnexpectedEof)
        );
        assert_eq!(
            cut.handle_bytes(Instant::ZERO, b"\r\n\r\n"),
            Err(HandshakeError::UnexpectedEof)
        );
        assert_eq!(cut.poll_timeout(), None);

        let mut whole = ServerHandshake::new(&config, Instant::ZERO);
        assert!(matches!(
            whole.handle_bytes(Instant::ZERO, SAMPLE.as_bytes()),
            Ok(Some(_))
        ));
        assert_eq!(whole.handle_eof(Instant::ZERO), Ok(()));
    }

    #[test]
    fn rfc6455_4_2_1_head_over_the_limit_gets_431_before_buffering_more() {
        let config = Config {
            max_handshake_bytes: 256,
            ..Config::default()
        };
        let mut handshake = ServerHandshake::new(&config, Instant::ZERO);
        let mut input = SAMPLE.trim_end().to_string();
        input.push_str(&"\r\nX-Pad: aaaaaaaa".repeat(200));
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, input.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        );
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        // A head of exactly the limit is accepted.
        let exact = Config {
            max_handshake_bytes: SAMPLE.len(),
            ..Config::default()
        };
        let mut handshake = ServerHandshake::new(&exact, Instant::ZERO);
        assert!(handshake
            .handle_bytes(Instant::ZERO, SAMPLE.as_bytes())
            .unwrap()
            .is_some());
    }

    #[test]
    fn rfc6455_4_2_1_too_many_headers_gets_431() {
        let config = Config {
            max_handshake_headers: 6,
            ..Config::default()
        };
        let mut handshake = ServerHandshake::new(&config, Instant::ZERO);
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, SAMPLE.as_bytes()),
            Err(HandshakeError::TooManyHeaders)
        );
        assert_eq!(HandshakeError::TooManyHeaders.status(), 431);
        let config = Config {
            max_handshake_headers: 7,
            ..Config::default()
        };
        let mut handshake = ServerHandshake::new(&config, Instant::ZERO);
        assert!(handshake
            .handle_bytes(Instant::ZERO, SAMPLE.as_bytes())
            .unwrap()
            .is_some());
    }

    #[test]
    fn rfc6455_4_2_1_slow_head_times_out_with_408() {
        let config = Config {
            handshake_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let start = Instant::from_millis(1000);
        let mut handshake = ServerHandshake::new(&config, start);
        assert_eq!(handshake.poll_timeout(), Some(Instant::from_millis(3000)));
        assert_eq!(handshake.handle_bytes(start, b"GET /chat HT"), Ok(None));
        assert_eq!(handshake.handle_timeout(Instant::from_millis(2999)), Ok(()));
        assert_eq!(
            handshake.handle_timeout(Instant::from_millis(3000)),
            Err(HandshakeError::Timeout)
        );
        assert_eq!(handshake.poll_timeout(), None);
        assert_eq!(
            handshake.handle_bytes(Instant::from_millis(3001), SAMPLE.as_bytes()),
            Err(HandshakeError::Timeout)
        );
        assert!(HandshakeError::Timeout
            .response()
            .starts_with(b"HTTP/1.1 408 "));

        // Bytes arriving after the deadline, before the timer fired, are refused too.
        let mut late = ServerHandshake::new(&config, start);
        assert_eq!(
            late.handle_bytes(Instant::from_millis(3000), SAMPLE.as_bytes()),
            Err(HandshakeError::Timeout)
        );
    }

    #[test]
    fn a_finished_handshake_has_no_deadline() {
        let mut handshake = ServerHandshake::new(&Config::default(), Instant::ZERO);
        assert!(handshake
            .handle_bytes(Instant::ZERO, SAMPLE.as_bytes())
            .unwrap()
            .is_some());
        assert_eq!(handshake.poll_timeout(), None);
        assert_eq!(handshake.handle_timeout(Instant::MAX), Ok(()));
        assert_eq!(handshake.handle_bytes(Instant::MAX, b"more"), Ok(None));
    }

    #[test]
    fn rfc6455_4_2_1_garbage_is_malformed_at_the_first_line() {
        let mut handshake = ServerHandshake::new(&Config::default(), Instant::ZERO);
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, b"\x16\x03\x01 hello"),
            Ok(None)
        );
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, b"\r\n"),
            Err(HandshakeError::Malformed)
        );
        // Later input gets the same answer.
        assert_eq!(
            handshake.handle_bytes(Instant::ZERO, SAMPLE.as_bytes()),
            Err(HandshakeError::Malformed)
        );
        assert_eq!(refused("\r\n\r\n"), HandshakeError::Malformed);
        assert_eq!(
            refused("GET /chat HTTP/1.1\r\nBad Header\r\n\r\n"),
            HandshakeError::Malformed
        );
    }

    #[test]
    fn rfc6455_4_2_2_frame_after_the_head_reaches_the_connection() {
        let mut input = SAMPLE.as_bytes().to_vec();
        input.extend_from_slice(&MASKED_HELLO);
        let mut handshake = ServerHandshake::new(&Config::default(), Instant::ZERO);
        let request = handshake
            .handle_bytes(Instant::ZERO, &input)
            .unwrap()
            .unwrap();
        let mut connection = request.accept(Instant::ZERO, None, Config::default());
        assert_eq!(
            connection.poll_event(),
            Some(Event::Message(Message::text("Hello")))
        );
        assert!(drain(&mut connection).starts_with(b"HTTP/1.1 101 "));
    }

    /// Feeds `input` split at `cuts`; returns the result and the bytes fed after it.
    fn feed_chunked(
        input: &[u8],
        cuts: &[usize],
        config: &Config,
    ) -> (Result<Option<Request>, HandshakeError>, Vec<u8>, usize) {
        let mut handshake = ServerHandshake::new(config, Instant::ZERO);
        let mut max_buffered = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(0);
        bounds.push(input.len());
        bounds.sort_unstable();
        for pair in bounds.windows(2) {
            let result = handshake.handle_bytes(Instant::ZERO, &input[pair[0]..pair[1]]);
            max_buffered = max_buffered.max(handshake.buffered());
            if !matches!(result, Ok(None)) {
                return (result, input[pair[1]..].to_vec(), max_buffered);
            }
        }
        (Ok(None), Vec::new(), max_buffered)
    }

    /// The request with the bytes that followed it, however they arrived.
    fn with_rest(
        result: Result<Option<Request>, HandshakeError>,
        rest: Vec<u8>,
    ) -> Result<Option<Request>, HandshakeError> {
        result.map(|r| {
            r.map(|mut r| {
                r.trailing.extend_from_slice(&rest);
                r
            })
        })
    }

    proptest! {
        #[test]
        fn chunking_never_matters(
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            variant in 0usize..4,
        ) {
            let head = match variant {
                0 => SAMPLE.to_string(),
                1 => SAMPLE.replacen("GET", "PUT", 1),
                2 => sample_with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
                _ => SAMPLE.replace("\r\n", "\n"),
            };
            let mut input = head.into_bytes();
            input.extend_from_slice(&tail);
            let config = Config::default();
            let (whole, rest, _) = feed_chunked(&input, &[], &config);
            let (chunked, chunked_rest, _) = feed_chunked(&input, &cuts, &config);
            prop_assert_eq!(with_rest(chunked, chunked_rest), with_rest(whole, rest));
        }

        #[test]
        fn byte_by_byte_equals_whole(tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut input = SAMPLE.as_bytes().to_vec();
            input.extend_from_slice(&tail);
            let every: Vec<usize> = (1..input.len()).collect();
            let config = Config::default();
            let (whole, rest, _) = feed_chunked(&input, &[], &config);
            let (bytewise, bytewise_rest, _) = feed_chunked(&input, &every, &config);
            let whole = with_rest(whole, rest);
            prop_assert!(matches!(whole, Ok(Some(_))));
            prop_assert_eq!(with_rest(bytewise, bytewise_rest), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overbuffer(
            input in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in 0usize..3,
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            max in 1usize..300,
        ) {
            let mut bytes = [&b""[..], b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n"][prefix].to_vec();
            bytes.extend_from_slice(&input);
            let config = Config { max_handshake_bytes: max, max_handshake_headers: 4, ..Config::default() };
            let (whole, rest, _) = feed_chunked(&bytes, &[], &config);
            let (chunked, chunked_rest, max_buffered) = feed_chunked(&bytes, &cuts, &config);
            prop_assert!(max_buffered <= max);
            prop_assert_eq!(with_rest(chunked, chunked_rest), with_rest(whole, rest));
        }
    }
}
