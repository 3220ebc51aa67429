//! Fuzz entry points (unstable; behind `cfg(fuzzing)` or the `sim` feature).
//!
//! Each `fuzz/fuzz_targets/*.rs` is a one-liner calling a function here, and a unit test
//! runs every function over the committed corpus on stable.
//!
//! The bodies assert properties, not only "no panic": decoded sizes within their limits,
//! buffers bounded, re-encoding reproduces the wire bytes, chunking never changes the
//! result, one `Closed` event and nothing after it, our own output well-formed.
//!
//! Every body reads its input through `Input`, which never fails: once the bytes run out
//! it yields zeros and empty slices, so any byte string is a valid program.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::time::Duration;

use crate::config::Config;
use crate::connection::{Connection, Event, Message, MessageKind, State};
use crate::entropy::{Entropy, SeededEntropy};
use crate::error::{ConnectionError, HandshakeError, SendError};
use crate::frame::{
    encode_frame, CloseCode, Frame, FrameDecoder, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD,
    MAX_HEADER_LEN,
};
use crate::handshake::{accept_key, ClientHandshake, ClientRequest, ServerHandshake};
use crate::time::Instant;
use crate::Side;

/// A cursor over fuzz input that never runs dry: past the end it reads zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.u8()))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// A chunk size from one byte: small sizes are common, a few reach into kilobytes, and
/// 255 means "everything left".
fn chunk_size(b: u8) -> usize {
    match b {
        0..=127 => usize::from(b) + 1,
        128..=254 => usize::from(b - 127) * 64,
        255 => usize::MAX,
    }
}

/// The frame size limits `frame_decode` picks from: edge cases around the length encodings.
const FRAME_LIMITS: [u64; 8] = [0, 1, 125, 126, 200, 4096, 65_535, 65_536];

/// Decodes `wire` fed in chunks of `sizes` (cycled), checking each frame as it comes.
///
/// Returns the frames and the error that stopped decoding, if any.
fn decode_chunked(
    side: Side,
    max_frame: u64,
    wire: &[u8],
    sizes: &[usize],
) -> (Vec<Frame>, Option<ConnectionError>) {
    let mut decoder = FrameDecoder::new(side, max_frame);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0usize;
    // Where the next frame starts in `wire`.
    let mut frame_start = 0usize;
    let mut sizes = sizes.iter().cycle();
    let bound = usize::try_from(max_frame).unwrap_or(usize::MAX);
    while fed < wire.len() {
        let n = (*sizes.next().unwrap_or(&usize::MAX)).min(wire.len() - fed);
        decoder.extend(&mut buf, &wire[fed..fed + n]);
        fed += n;
        assert!(
            buf.len() <= bound.saturating_add(MAX_HEADER_LEN).saturating_add(n),
            "decoder buffer {} over limit {} + header + chunk {}",
            buf.len(),
            max_frame,
            n,
        );
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let consumed = fed - buf.len();
                    check_frame(side, max_frame, &frame, &wire[frame_start..consumed]);
                    frame_start = consumed;
                    frames.push(frame);
                }
                Ok(None) => {
                    // Whatever is left is one partial frame: its payload is under the
                    // limit, or it is an incomplete header.
                    assert!(buf.len() < bound.max(MAX_HEADER_LEN).max(1));
                    if let Some((header, unmasked)) = decoder.partial() {
                        assert!(header.payload_len <= max_frame);
                        assert!(unmasked as u64 <= header.payload_len);
                        assert!(unmasked <= buf.len());
                    }
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Properties of one decoded frame, whose wire bytes were `wire`.
fn check_frame(side: Side, max_frame: u64, frame: &Frame, wire: &[u8]) {
    let h = frame.header;
    assert_eq!(frame.payload.len() as u64, h.payload_len);
    assert!(h.payload_len <= max_frame, "payload over max_frame_bytes");
    assert_eq!(h.rsv, 0, "reserved bits accepted without an extension");
    assert_eq!(
        h.mask.is_some(),
        side == Side::Server,
        "masking rule by role"
    );
    if h.opcode.is_control() {
        assert!(h.fin, "fragmented control frame accepted");
        assert!(frame.payload.len() <= MAX_CONTROL_PAYLOAD);
    }
    // Re-encoding gives back the very bytes received (lengths are minimal, the same key
    // masks the same way), and decoding them again gives the same frame.
    let mut again = BytesMut::new();
    encode_frame(h, &frame.payload, &mut again);
    assert_eq!(&again[..], wire, "re-encoding differs from the wire bytes");
    let mut decoder = FrameDecoder::new(side, max_frame);
    let redecoded = decoder
        .decode(&mut again)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is complete");
    assert_eq!(&redecoded, frame);
    assert!(again.is_empty());
}

/// Frame decoder on either side: arbitrary bytes in arbitrary chunks.
///
/// Input: `[flags] [n] [n chunk sizes] [wire bytes...]`; `flags` bit 0 picks the side,
/// bits 1–3 the frame limit. Asserts every payload is within `max_frame_bytes`, the
/// buffer never exceeds the limit plus a header plus the last chunk, each frame re-encodes
/// to exactly its wire bytes and decodes again to itself, and feeding the bytes all at
/// once or one at a time gives the same frames and the same error.
pub fn frame_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let side = if flags & 1 == 0 {
        Side::Server
    } else {
        Side::Client
    };
    let max_frame = FRAME_LIMITS[usize::from((flags >> 1) & 7)];
    let count = usize::from(input.u8() % 8) + 1;
    let sizes: Vec<usize> = input.take(count).iter().map(|&b| chunk_size(b)).collect();
    let wire = input.rest();

    let chunked = decode_chunked(side, max_frame, wire, &sizes);
    let whole = decode_chunked(side, max_frame, wire, &[usize::MAX]);
    assert_eq!(chunked, whole, "chunking changed the result");
    if wire.len() <= 512 {
        let bytewise = decode_chunked(side, max_frame, wire, &[1]);
        assert_eq!(bytewise, whole, "byte-at-a-time changed the result");
    }
}

/// Limits small enough for a fuzzer to reach every one of them.
fn small_config(flags: u8) -> Config {
    Config {
        max_frame_bytes: 4096,
        max_message_bytes: 16_384,
        max_send_queue_bytes: 8192,
        ping_interval: match flags & 3 {
            0 => None,
            1 => Some(Duration::from_millis(100)),
            2 => Some(Duration::from_secs(1)),
            _ => Some(Duration::ZERO),
        },
        pong_timeout: match (flags >> 2) & 3 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(50),
            _ => Duration::from_secs(2),
        },
        close_timeout: match (flags >> 4) & 3 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(50),
            _ => Duration::from_secs(1),
        },
        ..Config::default()
    }
}

/// Most input bytes a message the app sends is made from (lossy UTF-8 may triple them).
const MAX_FUZZ_SEND: usize = 8192;

/// What the connection bodies have seen so far, checked after every step.
struct Observer {
    side: Side,
    config: Config,
    /// Decodes what we transmit, as the peer would.
    peer: FrameDecoder,
    peer_buf: BytesMut,
    closed_events: usize,
    close_frame_sent: bool,
    /// Bytes fed since transmit was last drained (each can provoke a pong or a ping).
    fed_since_drain: usize,
    /// The largest payload the app asked to send.
    largest_send: usize,
    /// What the peer's frames must do, while all input was well-formed frames.
    model: Option<PeerModel>,
    drain_transmit: bool,
    /// Drains of transmit so far, to alternate between the two ways of draining.
    drains: usize,
}

impl Observer {
    fn new(side: Side, config: &Config) -> Self {
        let peer_side = match side {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        };
        Observer {
            side,
            config: config.clone(),
            peer: FrameDecoder::new(peer_side, u64::MAX >> 1),
            peer_buf: BytesMut::new(),
            closed_events: 0,
            close_frame_sent: false,
            fed_since_drain: 0,
            largest_send: 0,
            model: Some(PeerModel::default()),
            drain_transmit: true,
            drains: 0,
        }
    }

    /// Drains events and (unless stalled) transmit, checking every invariant.
    fn settle(&mut self, conn: &mut Connection) {
        // A message always fits an empty queue, so the queue may pass its limit by one
        // message; pongs and keepalive pings answer bytes received, a few bytes each.
        let bound = self.config.max_send_queue_bytes
            + MAX_HEADER_LEN
            + self.largest_send
            + 16 * self.fed_since_drain
            + 4 * (MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD);
        assert!(
            conn.queued_bytes() <= bound,
            "queued {} bytes, bound {bound}",
            conn.queued_bytes()
        );

        let mut steps = 0usize;
        while let Some(event) = conn.poll_event() {
            steps += 1;
            assert!(steps <= 1 << 16, "poll_event does not run dry");
            assert_eq!(self.closed_events, 0, "event after Closed: {event:?}");
            match event {
                Event::Message(message) => {
                    if let Some(model) = &mut self.model {
                        let expected = model.expected.pop_front();
                        assert_eq!(Some(&message), expected.as_ref(), "not the message sent");
                    }
                    let len = message.payload().len();
                    assert!(len <= self.config.max_message_bytes, "message over limit");
                    if let Message::Text(bytes) = &message {
                        assert!(core::str::from_utf8(bytes).is_ok(), "text not UTF-8");
                    }
                }
                Event::Ping(payload) => assert!(payload.len() <= MAX_CONTROL_PAYLOAD),
                Event::Pong { payload, .. } => assert!(payload.len() <= MAX_CONTROL_PAYLOAD),
                Event::Closed(_) => {
                    self.closed_events += 1;
                    if let Some(model) = self.model.take() {
                        assert!(model.expected.is_empty(), "messages lost at close");
                    }
                }
            }
        }
        assert_eq!(
            conn.is_closed(),
            self.closed_events == 1,
            "Closed event and state disagree"
        );

        if !self.drain_transmit {
            return;
        }
        self.fed_since_drain = 0;
        // Every other drain borrows (`transmit_chunk`) in writes of up to 1000 bytes, as a
        // runtime with short writes would.
        self.drains += 1;
        let mut steps = 0usize;
        if self.drains % 2 == 0 {
            loop {
                let chunk = conn.transmit_chunk();
                if chunk.is_empty() {
                    break;
                }
                steps += 1;
                assert!(steps <= 1 << 20, "transmit_chunk does not run dry");
                let n = chunk.len().min(1000);
                let written = chunk[..n].to_vec();
                conn.advance_transmit(n);
                self.check_output(&written);
            }
        } else {
            while let Some(chunk) = conn.poll_transmit() {
                steps += 1;
                assert!(steps <= 1 << 16, "poll_transmit does not run dry");
                assert!(!chunk.is_empty(), "empty transmit chunk");
                self.check_output(&chunk);
            }
        }
        assert_eq!(conn.queued_bytes(), 0, "queued_bytes after draining");
    }

    /// Our own output decodes as the peer would decode it: well-formed frames, masked by
    /// a client only, and nothing after our close frame (§5.5.1).
    fn check_output(&mut self, chunk: &[u8]) {
        self.peer_buf.extend_from_slice(chunk);
        loop {
            let frame = match self.peer.decode(&mut self.peer_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => panic!("we sent a frame the peer rejects: {e:?}"),
            };
            assert!(
                !self.close_frame_sent,
                "frame sent after our close frame: {:?}",
                frame.header
            );
            assert_eq!(frame.header.mask.is_some(), self.side == Side::Client);
            if frame.header.opcode == OpCode::Close {
                self.close_frame_sent = true;
                crate::frame::decode_close_payload(&frame.payload)
                    .expect("our close frame has a valid payload");
            }
        }
    }
}

/// A connection fed arbitrary chunks, clock steps, EOF and app calls.
fn connection(side: Side, data: &[u8]) {
    let mut input = Input::new(data);
    let config = small_config(input.u8());
    let mut now = Instant::from_millis(1_000);
    let mut conn = match side {
        Side::Server => Connection::server(config.clone(), now),
        Side::Client => Connection::client(config.clone(), now, SeededEntropy::new(input.u64())),
    };
    let mut obs = Observer::new(side, &config);
    let mut mask_entropy = SeededEntropy::new(0x5EED);
    let mut steps = 0usize;
    while !input.is_empty() {
        steps += 1;
        assert!(steps <= data.len(), "every step consumes input");
        let was_closed = conn.is_closed();
        match input.u8() {
            // Raw bytes, exactly as given.
            0..=79 => {
                let size = chunk_size(input.u8());
                let chunk = input.take(size);
                if !chunk.is_empty() {
                    obs.model = None;
                }
                obs.fed_since_drain += chunk.len();
                conn.handle_bytes(now, chunk);
            }
            // A well-formed frame (masked as the peer should, unless told otherwise), fed
            // in two pieces: structure the fuzzer would take long to find byte by byte.
            80..=139 => {
                let frame = peer_frame(&mut input, side, &mut mask_entropy);
                let wire = &frame.wire;
                let split = usize::from(input.u8()).min(wire.len());
                obs.fed_since_drain += wire.len();
                let verdict = obs.model.as_mut().map(|m| m.on_frame(&frame, &config));
                conn.handle_bytes(now, &wire[..split]);
                conn.handle_bytes(now, &wire[split..]);
                obs.settle(&mut conn);
                match verdict {
                    Some(Verdict::Fine) => assert!(
                        !conn.is_closed(),
                        "a valid frame closed the connection: {:?}",
                        frame.header
                    ),
                    Some(Verdict::MustFail) => assert!(
                        conn.is_closed(),
                        "an invalid frame was accepted: {:?}",
                        frame.header
                    ),
                    Some(Verdict::Closes) => assert!(conn.is_closed()),
                    None => {}
                }
            }
            // Time passes; the timer fires late, early, or exactly at its deadline.
            140..=169 => {
                now = now + Duration::from_millis(u64::from(input.u16()));
                conn.handle_timeout(now);
            }
            170..=184 => fire_deadline(&mut conn, &mut now),
            185..=189 => conn.handle_eof(now),
            // `send`, or `send_slice` for the upper half.
            op @ 190..=209 => {
                let message = app_message(&mut input);
                let len = message.payload().len();
                obs.largest_send = obs.largest_send.max(len);
                let result = if op < 200 {
                    conn.send(now, message)
                } else {
                    conn.send_slice(now, message.kind(), message.payload())
                };
                check_send_result(&conn, &result, len);
            }
            210..=219 => {
                let kind = if input.u8() & 1 == 0 {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                let len = usize::from(input.u16()) % MAX_FUZZ_SEND;
                let payload = Bytes::copy_from_slice(input.take(len));
                obs.largest_send = obs.largest_send.max(payload.len());
                let fin = input.u8() & 1 == 1;
                let result = conn.send_fragment(now, kind, payload, fin);
                if result.is_ok() {
                    assert_eq!(conn.state(), State::Open);
                }
            }
            220..=229 => {
                let len = usize::from(input.u8() % 130);
                let payload = Bytes::copy_from_slice(input.take(len));
                let too_long = payload.len() > MAX_CONTROL_PAYLOAD;
                let result = conn.ping(now, payload);
                if too_long {
                    assert_eq!(result, Err(SendError::ControlPayloadTooLong));
                }
            }
            230..=245 => {
                let code = CloseCode::new(match input.u8() {
                    0 => input.u16(),
                    b => 1000 + u16::from(b % 16),
                });
                let len = usize::from(input.u8() % 130);
                let reason = String::from_utf8_lossy(input.take(len)).into_owned();
                let open = conn.state() == State::Open;
                let result = conn.close(now, code, &reason);
                if !open {
                    assert_eq!(result, Err(SendError::Closed));
                } else if result.is_ok() {
                    assert!(code.is_sendable() && 2 + reason.len() <= MAX_CONTROL_PAYLOAD);
                    assert_eq!(conn.state(), State::Closing);
                }
            }
            246..=250 => obs.drain_transmit = !obs.drain_transmit,
            _ => {
                // Whatever happens, the app can always read the connection's state.
                let _ = (conn.poll_timeout(), conn.wants_disconnect(), conn.rtt());
            }
        }
        obs.settle(&mut conn);
        if was_closed {
            assert!(conn.is_closed(), "a closed connection came back");
        }
    }
    // At the end, drain everything that is left and check it once more.
    obs.drain_transmit = true;
    obs.settle(&mut conn);
    if let Some(model) = &obs.model {
        assert!(model.expected.is_empty(), "messages not delivered");
    }
}

/// Jumps the clock to the connection's deadline and fires it, checking the timer moves on
/// (a deadline that stays put after firing would spin a runtime's event loop).
fn fire_deadline(conn: &mut Connection, now: &mut Instant) {
    for _ in 0..4 {
        let Some(deadline) = conn.poll_timeout() else {
            return;
        };
        *now = (*now).max(deadline);
        conn.handle_timeout(*now);
        match conn.poll_timeout() {
            Some(next) if next <= *now => continue,
            _ => return,
        }
    }
    panic!("timer stays due after firing repeatedly: {:?}", conn);
}

/// A frame the peer could send: opcode, flags, payload and masking from the input.
struct PeerFrame {
    header: FrameHeader,
    payload: Vec<u8>,
    /// Masked as the peer must mask (clients mask, servers do not).
    right_mask: bool,
    wire: Vec<u8>,
}

fn peer_frame(input: &mut Input<'_>, our_side: Side, entropy: &mut SeededEntropy) -> PeerFrame {
    const OPCODES: [OpCode; 8] = [
        OpCode::Text,
        OpCode::Binary,
        OpCode::Continuation,
        OpCode::Continuation,
        OpCode::Ping,
        OpCode::Pong,
        OpCode::Close,
        OpCode::Text,
    ];
    let flags = input.u8();
    let opcode = OPCODES[usize::from(flags & 7)];
    let fin = flags & 0x08 == 0;
    // Mostly the right masking; now and then the wrong one or a reserved bit.
    let right_mask = flags & 0x30 != 0x30;
    let rsv = if flags & 0xC0 == 0xC0 { 0x04 } else { 0 };
    let len = match input.u8() {
        b @ 0..=199 => usize::from(b),
        b @ 200..=249 => usize::from(b - 199) * 128,
        _ => usize::from(input.u16()),
    };
    let payload: Vec<u8> = if opcode == OpCode::Close && len >= 2 && input.u8() & 1 == 0 {
        // A close payload with a plausible code.
        let code = 1000 + input.u16() % 16;
        let mut p = Vec::from(code.to_be_bytes());
        p.extend_from_slice(input.take(len - 2));
        p
    } else {
        input.take(len).to_vec()
    };
    let masked = (our_side == Side::Server) == right_mask;
    let mask = masked.then(|| {
        let mut key = [0u8; 4];
        entropy.fill(&mut key);
        key
    });
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut wire = BytesMut::new();
    encode_frame(header, &payload, &mut wire);
    PeerFrame {
        header,
        payload,
        right_mask,
        wire: wire.to_vec(),
    }
}

/// What a frame does to the connection, by the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The connection stays open (any message it completes is expected).
    Fine,
    /// The frame breaks a rule or a limit: the connection must fail.
    MustFail,
    /// A close frame: the connection closes, cleanly or not.
    Closes,
}

/// A model of the peer's messages, kept while every byte fed was a well-formed frame:
/// it says which messages the connection must deliver, and which frames must fail it.
#[derive(Debug, Default)]
struct PeerModel {
    /// The kind and bytes of the fragmented message so far.
    assembling: Option<(MessageKind, Vec<u8>)>,
    /// Messages the connection must deliver next, in order.
    expected: VecDeque<Message>,
}

impl PeerModel {
    fn on_frame(&mut self, frame: &PeerFrame, config: &Config) -> Verdict {
        let h = &frame.header;
        // §5.1 masking by role, §5.2 RSV bits, the frame size limit.
        if !frame.right_mask || h.rsv != 0 || h.payload_len > config.max_frame_bytes {
            return Verdict::MustFail;
        }
        let (kind, mut data) = match (h.opcode, self.assembling.take()) {
            (OpCode::Close, _) => return Verdict::Closes,
            (OpCode::Ping | OpCode::Pong, assembling) => {
                self.assembling = assembling;
                // §5.5: at most 125 bytes, never fragmented.
                let ok = h.fin && frame.payload.len() <= MAX_CONTROL_PAYLOAD;
                return if ok { Verdict::Fine } else { Verdict::MustFail };
            }
            // §5.4: a continuation continues something; a new message waits for the end
            // of the previous one.
            (OpCode::Continuation, Some(assembling)) => assembling,
            (OpCode::Continuation, None) | (_, Some(_)) => return Verdict::MustFail,
            (OpCode::Text, None) => (MessageKind::Text, Vec::new()),
            (_, None) => (MessageKind::Binary, Vec::new()),
        };
        data.extend_from_slice(&frame.payload);
        if data.len() > config.max_message_bytes {
            return Verdict::MustFail;
        }
        if kind == MessageKind::Text {
            match core::str::from_utf8(&data) {
                Ok(_) => {}
                // A code point may continue in the next fragment.
                Err(e) if e.error_len().is_none() && !h.fin => {}
                Err(_) => return Verdict::MustFail,
            }
        }
        if h.fin {
            let data = Bytes::from(data);
            self.expected.push_back(match kind {
                MessageKind::Text => Message::Text(data),
                MessageKind::Binary => Message::Binary(data),
            });
        } else {
            self.assembling = Some((kind, data));
        }
        Verdict::Fine
    }
}

/// A message the app sends: text (made valid UTF-8) or binary.
fn app_message(input: &mut Input<'_>) -> Message {
    let kind = input.u8();
    let len = usize::from(input.u16()) % MAX_FUZZ_SEND;
    let bytes = input.take(len);
    if kind & 1 == 0 {
        Message::text(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Message::binary(Bytes::copy_from_slice(bytes))
    }
}

fn check_send_result(conn: &Connection, result: &Result<(), SendError>, len: usize) {
    match result {
        Ok(()) => assert_eq!(conn.state(), State::Open, "send accepted while not open"),
        Err(SendError::Closed) => assert_ne!(conn.state(), State::Open),
        Err(SendError::Full) => {
            assert!(conn.queued_bytes() > 0, "a message must fit an empty queue");
            assert!(conn.queued_bytes() + len > 0);
        }
        Err(_) => {}
    }
}

/// Server connection (masked input expected): see `connection` for the operations.
///
/// Asserts no event after `Closed` and at most one `Closed`, every message within
/// `max_message_bytes`, text messages valid UTF-8, `queued_bytes()` bounded, our own
/// output well-formed with nothing after our close frame, timers that move on when fired,
/// and a bounded number of steps.
pub fn server_connection(data: &[u8]) {
    connection(Side::Server, data);
}

/// Client connection (unmasked input expected; masking keys from [`SeededEntropy`]), with
/// the same assertions as [`server_connection`].
pub fn client_connection(data: &[u8]) {
    connection(Side::Client, data);
}

/// Handshake limits the handshake bodies pick from: small enough to reach.
fn handshake_config(flags: u8) -> Config {
    Config {
        max_handshake_bytes: [128, 512, 2048, 8192][usize::from(flags & 3)],
        max_handshake_headers: [1, 4, 16, 64][usize::from((flags >> 2) & 3)],
        ..small_config(0x2A)
    }
}

/// Feeds `bytes` to a handshake in chunks of `sizes` (cycled), as `handle` does one chunk,
/// until it gives a result. Asserts that while the head is incomplete fewer than
/// `max_head` bytes have been fed: the handshake buffers every byte of an incomplete head,
/// so this is the bound on its buffer. Returns the result and the bytes not yet fed.
fn feed_handshake<'a, T>(
    bytes: &'a [u8],
    sizes: &[usize],
    max_head: usize,
    mut handle: impl FnMut(&[u8]) -> Result<Option<T>, HandshakeError>,
) -> (Result<Option<T>, HandshakeError>, &'a [u8]) {
    let mut rest = bytes;
    let mut fed = 0usize;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&usize::MAX)).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        rest = after;
        fed += n;
        match handle(chunk) {
            Ok(None) => assert!(
                fed < max_head,
                "{fed} bytes fed and no result: an incomplete head over max_handshake_bytes"
            ),
            Err(HandshakeError::HeadTooLarge) => {
                assert!(fed >= max_head, "HeadTooLarge after only {fed} bytes");
                return (Err(HandshakeError::HeadTooLarge), rest);
            }
            result => return (result, rest),
        }
    }
    (Ok(None), rest)
}

/// Checks an error response: a 4xx that parses, with a correct Content-Length.
fn check_error_response(error: &HandshakeError) {
    let response = error.response();
    assert!(
        response.starts_with(b"HTTP/1.1 4"),
        "{error:?} answered {:?}",
        String::from_utf8_lossy(&response)
    );
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&response) else {
        panic!("error response does not parse: {response:?}");
    };
    assert_eq!(parsed.code, Some(error.status()));
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        .expect("error response has a Content-Length");
    let body_len = response.len() - head_len;
    assert_eq!(length.value, alloc::format!("{body_len}").as_bytes());
}

/// Drains a connection fresh from a handshake, returning what it transmitted and its
/// events, and checking the events as [`Observer`] does.
fn drain_new_connection(conn: &mut Connection) -> (Vec<u8>, Vec<Event>) {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    let mut events = Vec::new();
    while let Some(event) = conn.poll_event() {
        assert!(
            !matches!(events.last(), Some(Event::Closed(_))),
            "event after Closed"
        );
        if let Event::Message(Message::Text(bytes)) = &event {
            assert!(core::str::from_utf8(bytes).is_ok());
        }
        events.push(event);
    }
    (out, events)
}

/// Reads `[flags] [n] [n chunk sizes]` and returns the flags and the chunk sizes.
fn handshake_prefix(input: &mut Input<'_>) -> (u8, Vec<usize>) {
    let flags = input.u8();
    let count = usize::from(input.u8() % 8) + 1;
    let sizes = input.take(count).iter().map(|&b| chunk_size(b)).collect();
    (flags, sizes)
}

/// Server handshake over an arbitrary request.
///
/// Input: `[flags] [n] [n chunk sizes] [request bytes...]`; `flags` bits 0–1 pick
/// `max_handshake_bytes` (128, 512, 2048, 8192), bits 2–3 `max_handshake_headers`
/// (1, 4, 16, 64), bit 4 whether to select the first offered subprotocol.
///
/// Asserts that feeding the request in chunks gives the same request, the same error, or
/// (after `accept`, feeding the rest to the connection) the same output and events as
/// feeding it whole; that an incomplete head never holds `max_handshake_bytes`; that a
/// refusal is a parseable 4xx; that an accepted request gets a 101 with the right
/// `Sec-WebSocket-Accept` and only an offered subprotocol; and that an incomplete head
/// times out with 408.
pub fn server_handshake(data: &[u8]) {
    let mut input = Input::new(data);
    let (flags, sizes) = handshake_prefix(&mut input);
    let config = handshake_config(flags);
    let bytes = input.rest();
    let now = Instant::from_millis(1_000);
    let max = config.max_handshake_bytes;

    let mut whole_hs = ServerHandshake::new(&config, now);
    let (whole, _) = feed_handshake(bytes, &[usize::MAX], max, |b| whole_hs.handle_bytes(now, b));
    let mut chunked_hs = ServerHandshake::new(&config, now);
    let (chunked, rest) = feed_handshake(bytes, &sizes, max, |b| chunked_hs.handle_bytes(now, b));

    match (whole, chunked) {
        (Ok(None), Ok(None)) => {
            // Incomplete: the deadline answers 408, and so does every later call.
            let deadline = chunked_hs.poll_timeout().expect("a deadline while reading");
            assert_eq!(
                chunked_hs.handle_timeout(deadline),
                Err(HandshakeError::Timeout)
            );
            assert_eq!(
                chunked_hs.handle_bytes(deadline, b"\r\n\r\n"),
                Err(HandshakeError::Timeout)
            );
            check_error_response(&HandshakeError::Timeout);
        }
        (Err(e1), Err(e2)) => {
            assert_eq!(e1, e2, "chunking changed the error");
            check_error_response(&e1);
            // A refused handshake keeps refusing.
            assert_eq!(chunked_hs.handle_bytes(now, b"GET"), Err(e1));
            assert_eq!(chunked_hs.poll_timeout(), None);
        }
        (Ok(Some(r1)), Ok(Some(r2))) => {
            assert_eq!(r1.path(), r2.path());
            assert_eq!(r1.host(), r2.host());
            assert_eq!(r1.origin(), r2.origin());
            assert!(r1.protocols().eq(r2.protocols()));
            assert_eq!(r1.extensions(), r2.extensions());
            let key = r1
                .header("Sec-WebSocket-Key")
                .expect("an accepted request has a key")
                .to_vec();
            let protocol: Option<String> = if flags & 0x10 != 0 {
                r1.protocols().next().map(String::from)
            } else {
                None
            };
            let mut c1 = r1.accept(now, protocol.as_deref(), config.clone());
            let mut c2 = r2.accept(now, protocol.as_deref(), config.clone());
            assert_eq!(chunked_hs.handle_bytes(now, b"more"), Ok(None));
            // The chunked side got the bytes after the head's chunk separately.
            for chunk in rest.chunks(sizes[0].min(rest.len()).max(1)) {
                c2.handle_bytes(now, chunk);
            }
            let (out1, events1) = drain_new_connection(&mut c1);
            let (out2, events2) = drain_new_connection(&mut c2);
            assert_eq!(events1, events2, "chunking changed the events");
            assert_eq!(out1, out2, "chunking changed the output");
            check_101(&out1, &key, protocol.as_deref());
        }
        (w, c) => panic!("whole gave {w:?} but chunked gave {c:?}"),
    }
}

/// The start of `out` is a 101 that accepts `key`, selecting `protocol`.
fn check_101(out: &[u8], key: &[u8], protocol: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(out) else {
        panic!("101 response does not parse: {out:?}");
    };
    assert_eq!(parsed.code, Some(101));
    let get = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    assert_eq!(
        get("Sec-WebSocket-Accept"),
        Some(accept_key(key).as_bytes())
    );
    assert_eq!(get("Sec-WebSocket-Protocol"), protocol.map(str::as_bytes));
}

/// An entropy source that yields the nonce of RFC 6455 §1.3 ("the sample nonce"), so
/// the client's key is `dGhlIHNhbXBsZSBub25jZQ==` and the §1.3 101 answers it.
struct SampleNonce;

impl Entropy for SampleNonce {
    fn fill(&mut self, dest: &mut [u8]) {
        for (d, s) in dest.iter_mut().zip(b"the sample nonce".iter().cycle()) {
            *d = *s;
        }
    }
}

/// The protocols a client offers, by `flags` bits 4–5.
const OFFERS: [&[&str]; 4] = [&[], &["chat"], &["chat", "superchat"], &["superchat"]];

/// Client handshake over an arbitrary server response.
///
/// Input: `[flags] [n] [n chunk sizes] [response bytes...]`; `flags` bits 0–3 pick the
/// limits as in [`server_handshake`], bits 4–5 the protocols offered; bit 6 set takes the
/// request's host, path, origin and an extra header from the input (before the response)
/// instead of the §1.3 ones. The key is always the §1.3 sample key, so the §1.3 101 is a
/// valid answer.
///
/// Asserts the request head has exactly its own lines whatever the fields hold (no
/// header injection), the §1.3 request is accepted by our server whose 101 our client
/// accepts, chunked feeding gives the same result as whole, an incomplete head never
/// holds `max_handshake_bytes`, an accepted response selected an offered protocol, and
/// the connection it opens behaves the same whatever the chunking.
pub fn client_response(data: &[u8]) {
    let mut input = Input::new(data);
    let (flags, sizes) = handshake_prefix(&mut input);
    let config = handshake_config(flags);
    let protocols = OFFERS[usize::from((flags >> 4) & 3)];
    let now = Instant::from_millis(1_000);
    let max = config.max_handshake_bytes;

    let fuzzed_fields = flags & 0x40 != 0;
    let mut fields: [String; 5] = Default::default();
    if fuzzed_fields {
        for field in fields.iter_mut() {
            let len = usize::from(input.u8() % 32);
            *field = String::from_utf8_lossy(input.take(len)).into_owned();
        }
    }
    let extra = [(fields[3].as_str(), fields[4].as_str())];
    let request = if fuzzed_fields {
        ClientRequest {
            host: &fields[0],
            path: &fields[1],
            protocols,
            origin: Some(&fields[2]),
            headers: &extra,
        }
    } else {
        ClientRequest {
            host: "server.example.com",
            path: "/chat",
            protocols,
            origin: Some("http://example.com"),
            headers: &[],
        }
    };
    let new_client = || ClientHandshake::new(&config, now, request, &mut SampleNonce);
    let response = input.rest();

    // The request: exactly its own lines, so no field could add a header.
    let mut client = new_client();
    let head = client.poll_transmit().expect("the request head");
    assert_eq!(client.poll_transmit(), None, "the request is sent once");
    let lines = 1 + 5 + 1 + usize::from(!protocols.is_empty()) + request.headers.len() + 1;
    assert_eq!(head.windows(2).filter(|w| w == b"\r\n").count(), lines);
    assert_eq!(head.iter().filter(|&&b| b == b'\n').count(), lines);
    assert!(head.ends_with(b"\r\n\r\n"));
    if !fuzzed_fields {
        // Our server accepts our client's request, and our client its answer.
        let mut server = ServerHandshake::new(&config, now);
        if let Ok(Some(req)) = server.handle_bytes(now, &head) {
            let mut conn = req.accept(now, protocols.first().copied(), config.clone());
            let (answer, events) = drain_new_connection(&mut conn);
            assert!(events.is_empty());
            let mut check = new_client();
            let accepted = check
                .handle_bytes(now, &answer)
                .expect("our client accepts our server's 101")
                .expect("the 101 is complete");
            assert_eq!(accepted.protocol(), protocols.first().copied());
        } else {
            // Only a tiny header limit refuses the §1.3 request.
            assert!(config.max_handshake_headers < 7 || max < 256);
        }
    }

    let mut whole_hs = new_client();
    let (whole, _) = feed_handshake(response, &[usize::MAX], max, |b| {
        whole_hs.handle_bytes(now, b)
    });
    let mut chunked_hs = new_client();
    let (chunked, rest) =
        feed_handshake(response, &sizes, max, |b| chunked_hs.handle_bytes(now, b));
    match (whole, chunked) {
        (Ok(None), Ok(None)) => {
            let deadline = chunked_hs.poll_timeout().expect("a deadline while reading");
            assert_eq!(
                chunked_hs.handle_timeout(deadline),
                Err(HandshakeError::Timeout)
            );
        }
        (Err(e1), Err(e2)) => {
            assert_eq!(e1, e2, "chunking changed the error");
            assert_eq!(chunked_hs.handle_bytes(now, b"HTTP"), Err(e1));
        }
        (Ok(Some(r1)), Ok(Some(r2))) => {
            assert_eq!(r1.status(), 101);
            assert_eq!((r1.status(), r1.protocol()), (r2.status(), r2.protocol()));
            if let Some(p) = r1.protocol() {
                assert!(protocols.contains(&p), "selected {p:?}, not offered");
            }
            let mut c1 = r1.into_connection(now, config.clone(), SeededEntropy::new(1));
            let mut c2 = r2.into_connection(now, config.clone(), SeededEntropy::new(1));
            for chunk in rest.chunks(sizes[0].min(rest.len()).max(1)) {
                c2.handle_bytes(now, chunk);
            }
            let (out1, events1) = drain_new_connection(&mut c1);
            let (out2, events2) = drain_new_connection(&mut c2);
            assert_eq!(events1, events2, "chunking changed the events");
            assert_eq!(out1, out2, "chunking changed the output");
        }
        (w, c) => panic!("whole gave {w:?} but chunked gave {c:?}"),
    }
}

/// The `sockeye.v1` envelope decoder: arbitrary bytes as one WebSocket message, and as a
/// `Sockeye-Resume` header value.
///
/// Asserts that a decoded envelope re-encodes to bytes that decode to the same envelope,
/// in exactly as many bytes as `encode` wrote (the decoder may accept longer varints, the
/// encoder writes the shortest), that `decode` never claims more bytes than it was given,
/// and that a parsed resume header round-trips through `resume_header_value`.
pub fn envelope_decode(data: &[u8]) {
    use crate::session::envelope::{self, Envelope};

    match envelope::decode(data) {
        Ok((decoded, used)) => {
            assert!(
                used <= data.len() && used > 0,
                "decode used {used} of {}",
                data.len()
            );
            let mut again = Vec::new();
            envelope::encode(&decoded, &mut again);
            assert!(
                again.len() <= used,
                "re-encoding grew: {} > {used}",
                again.len()
            );
            let redecoded = envelope::decode_message(&again).expect("our own encoding decodes");
            assert_eq!(redecoded, decoded, "encode/decode changed the envelope");
            assert_eq!(envelope::decode_message(data).is_ok(), used == data.len());
        }
        Err(_) => assert!(envelope::decode_message(data).is_err()),
    }

    if let Ok(resume) = envelope::parse_resume_header(data) {
        let value = envelope::resume_header_value(&resume);
        let parsed =
            envelope::parse_resume_header(value.as_bytes()).expect("our own header parses");
        assert_eq!(parsed, resume);
        let as_envelope = Envelope::Resume(resume);
        let mut buf = Vec::new();
        envelope::encode(&as_envelope, &mut buf);
        assert_eq!(envelope::decode_message(&buf), Ok(as_envelope));
    }
}

/// A client session and a server session store fed arbitrary envelopes, sends, clock
/// steps, connects (with real, forged or garbage resume values) and cuts: the body lives
/// in [`crate::sim::session_ops`], which documents the input layout and the properties.
pub fn session_ops(data: &[u8]) {
    crate::sim::session_ops::session_ops(data);
}

/// A hub fed arbitrary operations, three bytes each (see
/// [`Op::decode`](crate::sim::hub::Op::decode)): connects and disconnects, joins and
/// leaves, publishes, direct messages, pushes and clock steps, on known and unknown
/// connections. After every one the hub must agree with the reference model in
/// [`crate::sim::hub`]: exact deliveries and presence, every user-addressed message
/// delivered, waiting or dead-lettered exactly once, mailboxes within their bounds. At the
/// end, the mailboxes survive an export and restore unchanged.
pub fn hub_ops(data: &[u8]) {
    use crate::sim::hub::{small_config, HubCheck, Op};
    let mut input = Input::new(data);
    let mut check = HubCheck::new(small_config());
    while !input.is_empty() {
        let op = Op::decode(input.u8(), input.u8(), input.u8());
        if let Err(e) = check.apply(op) {
            panic!("{e}");
        }
    }
    if let Err(e) = check.finish() {
        panic!("{e}");
    }
}

/// The server journal's replay: arbitrary bytes as a journal file.
///
/// Asserts that replay never claims more bytes than the file has, that the valid prefix
/// replays alone to the same state with no error and no torn tail, and that compacting
/// the state ([`crate::journal::JournalState::records`]) replays to the same state.
pub fn journal_replay(data: &[u8]) {
    use crate::journal::{encode_record, replay};

    let replayed = replay(data);
    assert!(replayed.valid_len <= data.len());
    assert!(!(replayed.torn_tail && replayed.error.is_some()));
    let prefix = replay(&data[..replayed.valid_len]);
    assert!(prefix.error.is_none() && !prefix.torn_tail);
    assert_eq!(prefix.records, replayed.records);
    assert_eq!(prefix.state, replayed.state);

    let mut compact = Vec::new();
    for record in replayed.state.records() {
        encode_record(&record, &mut compact);
    }
    let again = replay(&compact);
    assert!(again.error.is_none() && !again.torn_tail);
    assert_eq!(again.state, replayed.state, "compaction changed the state");
}

/// The message limits the `inflate` body picks from.
#[cfg(feature = "deflate")]
const INFLATE_LIMITS: [usize; 6] = [0, 1, 100, 4096, 65_536, 1 << 20];

/// permessage-deflate's receive path (RFC 7692), and its send path round trip.
///
/// Input: `[flags] [limit index] [chunk size]` then, by flags bit 7:
///
/// - **raw frames** (bit 7 clear): until the input ends, `[b0] [len] ([len16]) [payload]`:
///   a frame with first byte `b0` (FIN, RSV, opcode as given), masked as our peer must,
///   with `len` payload bytes (255: a 16-bit length follows). The frames are fed whole,
///   in chunks of the chunk size, and byte by byte (up to 8 KiB); all three must give the
///   same events. Checked: messages within the limit, text valid UTF-8, at most one
///   `Closed` and nothing after it; the decompressor never holds more than its state and
///   a 32 KiB window, without the peer's context takeover nothing once a message is
///   delivered, and nothing at all once closed; we never hold a compressor (we sent no
///   data).
/// - **round trip** (bit 7 set): `[level] [min_compress_bytes]` then messages
///   `[op] [len16] [data]` sent by one end (`op` bit 0: from the client; bit 1: text;
///   bit 2: `Compression::Never`; bits 3–4: fragments) and carried to the other in
///   chunks: every message arrives exactly as sent, and nothing closes.
///
/// Flags bit 0: our side is the client; bits 1–2: server_/client_no_context_takeover;
/// bits 3–5: the peer's window bits (8 + value).
#[cfg(feature = "deflate")]
pub fn inflate(data: &[u8]) {
    use crate::connection::{Compression, INFLATER_STATE_BYTES};
    use crate::handshake::{DeflateConfig, DeflateParams};

    let mut input = Input::new(data);
    let flags = input.u8();
    let max_message_bytes = INFLATE_LIMITS[usize::from(input.u8()) % INFLATE_LIMITS.len()];
    let chunk = chunk_size(input.u8());
    let side = if flags & 1 == 0 {
        Side::Server
    } else {
        Side::Client
    };
    let peer_bits = 8 + ((flags >> 3) & 7);
    let params = DeflateParams {
        server_no_context_takeover: flags & 2 != 0,
        client_no_context_takeover: flags & 4 != 0,
        server_max_window_bits: if side == Side::Client { peer_bits } else { 15 },
        client_max_window_bits: if side == Side::Server { peer_bits } else { 15 },
    };
    let peer_resets = match side {
        Side::Server => params.client_no_context_takeover,
        Side::Client => params.server_no_context_takeover,
    };
    let config = Config {
        max_frame_bytes: 1 << 16,
        max_message_bytes,
        ping_interval: None,
        ..Config::default()
    };
    let make = |side: Side, config: &Config, policy: &DeflateConfig| {
        let mut conn = match side {
            Side::Server => Connection::server(config.clone(), Instant::ZERO),
            Side::Client => {
                Connection::client(config.clone(), Instant::ZERO, SeededEntropy::new(7))
            }
        };
        conn.set_deflate(Some(params), policy);
        conn
    };

    if flags & 0x80 != 0 {
        // Round trip through a pair, every message compressed by our own codec.
        let policy = DeflateConfig {
            level: input.u8() % 11,
            min_compress_bytes: usize::from(input.u8()),
            ..DeflateConfig::on()
        };
        let config = Config {
            max_message_bytes: 1 << 20,
            ..config
        };
        let mut client = make(Side::Client, &config, &policy);
        let mut server = make(Side::Server, &config, &policy);
        while !input.is_empty() {
            let op = input.u8();
            let len = usize::from(input.u16()) % 4096;
            let mut payload = input.take(len).to_vec();
            let text = op & 2 != 0;
            if text {
                payload = String::from_utf8_lossy(&payload).into_owned().into_bytes();
            }
            let payload = Bytes::from(payload);
            let (from, to) = if op & 1 != 0 {
                (&mut client, &mut server)
            } else {
                (&mut server, &mut client)
            };
            let kind = if text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            };
            let compression = if op & 4 != 0 {
                Compression::Never
            } else {
                Compression::Auto
            };
            let fragments = usize::from((op >> 3) & 3) + 1;
            let step = payload.len().div_ceil(fragments).max(1);
            let mut start = 0;
            loop {
                let end = (start + step).min(payload.len());
                let fin = end == payload.len();
                from.send_fragment_with(
                    Instant::ZERO,
                    kind,
                    payload.slice(start..end),
                    fin,
                    compression,
                )
                .expect("a send into an open connection");
                start = end;
                if fin {
                    break;
                }
            }
            let mut wire = Vec::new();
            while let Some(bytes) = from.poll_transmit() {
                wire.extend_from_slice(&bytes);
            }
            let mut got = Vec::new();
            for piece in wire.chunks(chunk.min(1 << 20)) {
                to.handle_bytes(Instant::ZERO, piece);
                while let Some(event) = to.poll_event() {
                    match event {
                        Event::Message(m) => got.push(m),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            let expected = match kind {
                MessageKind::Text => Message::Text(payload),
                MessageKind::Binary => Message::Binary(payload),
            };
            assert_eq!(got, [expected], "the message did not round-trip");
        }
        return;
    }

    // Raw frames from the peer.
    let mut wire = Vec::new();
    let mut entropy = SeededEntropy::new(3);
    while !input.is_empty() {
        let b0 = input.u8();
        let mut len = usize::from(input.u8());
        if len == 255 {
            len = usize::from(input.u16());
        }
        let payload = input.take(len);
        let mask = (side == Side::Server).then(|| {
            let mut key = [0u8; 4];
            entropy.fill(&mut key);
            key
        });
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: match OpCode::from_u8(b0 & 0x0f) {
                Some(op) => op,
                None => OpCode::Binary,
            },
            mask,
            payload_len: payload.len() as u64,
        };
        let mut buf = BytesMut::new();
        crate::frame::encode_frame_parts(header, &[], payload, &mut buf);
        wire.extend_from_slice(&buf);
    }
    let policy = DeflateConfig::on();
    let run = |sizes: usize| -> Vec<Event> {
        let mut conn = make(side, &config, &policy);
        let mut events = Vec::new();
        let mut closed = false;
        for piece in wire.chunks(sizes) {
            conn.handle_bytes(Instant::ZERO, piece);
            while let Some(event) = conn.poll_event() {
                assert!(!closed, "event after Closed: {event:?}");
                let memory = conn.deflate_memory();
                assert_eq!(memory.compressor, 0, "a compressor, though we sent no data");
                assert!(memory.decompressor <= INFLATER_STATE_BYTES + (1 << 15));
                match &event {
                    Event::Message(message) => {
                        assert!(message.payload().len() <= max_message_bytes);
                        if let Message::Text(bytes) = message {
                            assert!(core::str::from_utf8(bytes).is_ok(), "text not UTF-8");
                        }
                        if peer_resets {
                            assert_eq!(memory.decompressor, 0, "context kept while idle");
                        }
                    }
                    Event::Closed(_) => {
                        closed = true;
                        assert_eq!(memory.total(), 0, "memory held after close");
                    }
                    _ => {}
                }
                events.push(event);
            }
            while conn.poll_transmit().is_some() {}
        }
        events
    };
    let whole = run(wire.len().max(1));
    assert_eq!(
        run(chunk.min(wire.len().max(1))),
        whole,
        "chunking changed the events"
    );
    if wire.len() <= 8192 {
        assert_eq!(run(1), whole, "byte-by-byte feeding changed the events");
    }
}

/// A permessage-deflate policy from one input byte: bit 0 set turns it off, bit 1 set
/// forbids the peer's context takeover, bit 2 set drops our compressor after every
/// message, bits 3–5 the peer's window (8 + value), bits 6–7 `min_compress_bytes`.
#[cfg(feature = "deflate")]
fn deflate_policy(b: u8) -> crate::handshake::DeflateConfig {
    crate::handshake::DeflateConfig {
        enabled: b & 1 == 0,
        allow_context_takeover: b & 2 == 0,
        keep_compressor: b & 4 == 0,
        max_window_bits: 8 + ((b >> 3) & 7),
        min_compress_bytes: [0, 1, 64, 1000][usize::from(b >> 6)],
        ..crate::handshake::DeflateConfig::on()
    }
}

/// The parameters of one `permessage-deflate` element as a model reads them: `None` if
/// any is unknown, repeated or out of range (RFC 7692 §7.1), else (server nct, client
/// nct, server bits, client bits: `Some(None)` given without a value).
#[cfg(feature = "deflate")]
#[allow(clippy::type_complexity)]
fn model_offer(
    offer: &crate::handshake::ExtensionOffer,
) -> Option<(bool, bool, Option<u8>, Option<Option<u8>>)> {
    let bits = |v: &str| -> Option<u8> {
        let ok = !v.starts_with('0') && v.len() <= 2;
        v.parse().ok().filter(|b| ok && (8..=15).contains(b))
    };
    let (mut snct, mut cnct, mut sbits, mut cbits) = (false, false, None, None);
    for (name, value) in &offer.params {
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !snct => snct = true,
            ("client_no_context_takeover", None) if !cnct => cnct = true,
            ("server_max_window_bits", Some(v)) if sbits.is_none() => sbits = Some(bits(v)?),
            ("client_max_window_bits", v) if cbits.is_none() => {
                cbits = Some(match v {
                    None => None,
                    Some(v) => Some(bits(v)?),
                })
            }
            _ => return None,
        }
    }
    Some((snct, cnct, sbits, cbits))
}

/// Sends messages made of `data` both ways between `a` and `b` (our own compressor and
/// inflater under whatever they agreed) and asserts each arrives exactly as sent.
#[cfg(feature = "deflate")]
fn deflate_round_trip(a: &mut Connection, b: &mut Connection, data: &[u8]) {
    let now = Instant::ZERO;
    let mut long = Vec::new();
    while long.len() < 3000 && !data.is_empty() {
        long.extend_from_slice(data);
    }
    let text = String::from_utf8_lossy(data).into_owned();
    let messages = [
        Message::binary(Bytes::from(long)),
        Message::text(text.clone()),
        Message::text(text.repeat(3)),
        Message::binary(Bytes::copy_from_slice(data)),
    ];
    for (i, message) in messages.into_iter().enumerate() {
        let (from, to) = if i % 2 == 0 {
            (&mut *a, &mut *b)
        } else {
            (&mut *b, &mut *a)
        };
        from.send(now, message.clone())
            .expect("a send into an open connection");
        while let Some(bytes) = from.poll_transmit() {
            to.handle_bytes(now, &bytes);
        }
        let got: Vec<Event> = core::iter::from_fn(|| to.poll_event()).collect();
        assert_eq!(
            got,
            [Event::Message(message)],
            "a message did not round-trip"
        );
    }
}

/// permessage-deflate negotiation (RFC 7692 §5–7) over arbitrary header values, then the
/// codec under what was agreed.
///
/// Input: `[server policy] [client policy] [split]` (policies as `deflate_policy`
/// reads a byte), then the bytes of a `Sec-WebSocket-Extensions` value (CR, LF and NUL
/// made spaces, at most 2 KiB), cut at `split` into two header lines when `split` falls
/// inside it.
///
/// - **Our server, offered that value** in an upgrade request: `accept_offers` agrees
///   with `answer_offers`; nothing is agreed with the policy off; an agreement answers a
///   `permessage-deflate` offer the model finds valid, honouring what it asked (our
///   reset, a limit on our window, no limit on the client's unless offered, never 8 bits
///   for the client's) and the policy's limits; the 101 carries exactly the answer's
///   value, the connection the agreement, and messages round-trip through a client
///   connection under it.
/// - **Our client, answered with that value** in a 101: an agreement only when the
///   policy offered, within what it asked (the server's reset when asked, its window no
///   larger than asked); the connection has it and messages round-trip through a server
///   connection under it; with the policy off any extension fails the handshake.
/// - **Our client and our server** under the two policies always agree on the same
///   parameters, and messages round-trip.
#[cfg(feature = "deflate")]
pub fn deflate_negotiation(data: &[u8]) {
    use crate::handshake::{DeflateConfig, DeflateParams};

    let mut input = Input::new(data);
    let server_policy = deflate_policy(input.u8());
    let client_policy = deflate_policy(input.u8());
    let split = usize::from(input.u8()) * 8;
    let raw = input.rest();
    let value: Vec<u8> = raw
        .iter()
        .take(2048)
        .map(|&b| {
            if matches!(b, b'\r' | b'\n' | 0) {
                b' '
            } else {
                b
            }
        })
        .collect();
    let mut lines = Vec::new();
    let (first, second) = value.split_at(split.min(value.len()));
    for part in [first, second] {
        if !part.is_empty() || lines.is_empty() {
            lines.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            lines.extend_from_slice(part);
            lines.extend_from_slice(b"\r\n");
        }
    }
    let config = Config::default();
    let now = Instant::ZERO;
    let payload = &raw[..raw.len().min(512)];
    let limit = |policy: &DeflateConfig| policy.max_window_bits.clamp(9, 15);

    // Our server, offered the fuzzed value.
    let mut request = Vec::from(
        &b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"[..],
    );
    request.extend_from_slice(&lines);
    request.extend_from_slice(b"\r\n");
    if let Ok(Some(req)) = ServerHandshake::new(&config, now).handle_bytes(now, &request) {
        let offers = req.extensions().to_vec();
        let answer = server_policy.answer_offers(&offers);
        assert_eq!(
            server_policy.accept_offers(&offers),
            answer.as_ref().map(|(p, _)| *p)
        );
        if !server_policy.enabled {
            assert!(answer.is_none(), "agreed with the policy off");
        }
        let valid = offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case("permessage-deflate"))
            .find_map(model_offer);
        assert_eq!(answer.is_some(), server_policy.enabled && valid.is_some());
        if let (Some((p, _)), Some((snct, cnct, sbits, cbits))) = (&answer, valid) {
            assert_eq!(
                p.server_no_context_takeover,
                snct || !server_policy.keep_compressor
            );
            assert_eq!(
                p.client_no_context_takeover,
                cnct || !server_policy.allow_context_takeover
            );
            assert_eq!(p.server_max_window_bits, sbits.unwrap_or(15));
            match cbits {
                None => assert_eq!(p.client_max_window_bits, 15),
                Some(offered) => assert_eq!(
                    p.client_max_window_bits,
                    offered.unwrap_or(15).min(limit(&server_policy))
                ),
            }
            assert!(p.client_max_window_bits >= 9);
        }
        let mut server = req.accept_deflate(now, None, config.clone(), &server_policy);
        let head = server.poll_transmit().expect("the 101");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(matches!(
            parsed.parse(&head),
            Ok(httparse::Status::Complete(_))
        ));
        let extension = parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|h| h.value);
        assert_eq!(
            extension,
            answer.as_ref().map(|(_, value)| value.as_bytes())
        );
        assert_eq!(server.deflate_params(), answer.as_ref().map(|(p, _)| p));
        if let Some((p, _)) = answer {
            let mut client = Connection::client(config.clone(), now, SeededEntropy::new(5));
            client.set_deflate(Some(p), &client_policy);
            deflate_round_trip(&mut server, &mut client, payload);
        }
    }

    // Our client, answered with the fuzzed value.
    let request = ClientRequest {
        host: "server.example.com",
        path: "/chat",
        protocols: &[],
        origin: None,
        headers: &[],
    };
    let mut handshake =
        ClientHandshake::with_deflate(&config, now, request, &mut SampleNonce, &client_policy);
    let mut response = Vec::from(
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
           Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"[..],
    );
    response.extend_from_slice(&lines);
    response.extend_from_slice(b"\r\n");
    match handshake.handle_bytes(now, &response) {
        Ok(Some(accepted)) => {
            let agreed: Option<DeflateParams> = accepted.deflate_params().copied();
            if let Some(p) = agreed {
                assert!(client_policy.enabled, "agreed though nothing was offered");
                if !client_policy.allow_context_takeover {
                    assert!(p.server_no_context_takeover, "our reset request ignored");
                }
                assert!(p.server_max_window_bits <= limit(&client_policy));
                for bits in [p.server_max_window_bits, p.client_max_window_bits] {
                    assert!((8..=15).contains(&bits));
                }
            }
            let mut client = accepted.into_connection(now, config.clone(), SeededEntropy::new(6));
            assert_eq!(client.deflate_params().copied(), agreed);
            if let Some(p) = agreed {
                let mut server = Connection::server(config.clone(), now);
                server.set_deflate(Some(p), &server_policy);
                deflate_round_trip(&mut client, &mut server, payload);
            }
        }
        Ok(None) => panic!("a complete 101 head was not taken"),
        Err(HandshakeError::UnexpectedExtension) => {}
        Err(e) => {
            // Only the extension header varies; anything else it breaks is a bad head.
            assert_eq!(e, HandshakeError::Malformed, "{e:?}");
        }
    }

    // Our two ends under the two policies.
    let mut client =
        ClientHandshake::with_deflate(&config, now, request, &mut SampleNonce, &client_policy);
    let head = client.poll_transmit().expect("the request");
    let req = ServerHandshake::new(&config, now)
        .handle_bytes(now, &head)
        .expect("our server takes our request")
        .expect("a whole head");
    let mut server = req.accept_deflate(now, None, config.clone(), &server_policy);
    let answer = server.poll_transmit().expect("the 101");
    let accepted = client
        .handle_bytes(now, &answer)
        .expect("our client takes our server's answer")
        .expect("a whole 101");
    let agreed = accepted.deflate_params().copied();
    assert_eq!(agreed.as_ref(), server.deflate_params());
    assert_eq!(
        agreed.is_some(),
        client_policy.enabled && server_policy.enabled
    );
    let mut client = accepted.into_connection(now, config, SeededEntropy::new(7));
    deflate_round_trip(&mut client, &mut server, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fuzz body.
    type Body = fn(&[u8]);

    /// Every body, by target name (the directory name under `fuzz/seeds/`).
    fn bodies() -> Vec<(&'static str, Body)> {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut bodies: Vec<(&'static str, Body)> = std::vec![
            ("frame_decode", frame_decode),
            ("server_connection", server_connection),
            ("client_connection", client_connection),
            ("server_handshake", server_handshake),
            ("client_response", client_response),
            ("envelope_decode", envelope_decode),
            ("session_ops", session_ops),
            ("hub_ops", hub_ops),
            ("journal_replay", journal_replay),
        ];
        #[cfg(feature = "deflate")]
        bodies.push(("inflate", inflate));
        #[cfg(feature = "deflate")]
        bodies.push(("deflate_negotiation", deflate_negotiation));
        bodies
    }

    fn seeds_dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds")
            .join(target)
    }

    #[test]
    fn every_body_passes_its_committed_seeds() {
        for (target, body) in bodies() {
            let dir = seeds_dir(target);
            let mut count = 0;
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                std::println!("{target}: {}", path.display());
                body(&data);
                count += 1;
            }
            assert!(count >= 5, "{target}: only {count} seeds");
        }
    }

    #[test]
    fn journal_seeds_are_what_their_names_say() {
        use crate::journal::{replay, JournalError};
        let read = |name: &str| std::fs::read(seeds_dir("journal_replay").join(name)).unwrap();
        let session = replay(&read("session"));
        assert_eq!(
            (session.records, session.error, session.torn_tail),
            (7, None, false)
        );
        assert_eq!(replay(&read("mail")).state.mailboxes().count(), 1);
        assert!(replay(&read("torn-tail")).torn_tail);
        let uncommitted = replay(&read("uncommitted"));
        assert_eq!((uncommitted.records, uncommitted.uncommitted), (1, 2));
        assert_eq!(
            replay(&read("bad-crc")).error,
            Some(JournalError::BadChecksum)
        );
        assert!(matches!(
            replay(&read("inconsistent")).error,
            Some(JournalError::Inconsistent(_))
        ));
    }

    #[test]
    fn every_body_survives_pseudo_random_inputs() {
        let mut entropy = SeededEntropy::new(6455);
        for (_, body) in bodies() {
            for i in 0..300 {
                let len = (entropy.next_u64() % (64 + 8 * i)) as usize;
                let mut data = std::vec![0u8; len];
                entropy.fill(&mut data);
                body(&data);
            }
        }
    }
}
