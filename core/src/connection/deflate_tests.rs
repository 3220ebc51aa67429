//! permessage-deflate through the connection (RFC 7692 §6–7): the §7.2.3 examples on the
//! wire, RSV1 rules, the size threshold and the per-message choice, bounded inflation
//! (1009 as soon as the limit is crossed), memory held as negotiated, and round trips
//! under every parameter set with arbitrary fragmentation and chunking.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::frame::{apply_mask, FrameDecoder};
use crate::handshake::{DeflateConfig, DeflateParams};
use crate::SeededEntropy;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn params(
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    }
}

const PLAIN: DeflateParams = DeflateParams {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

/// Our policy with every message compressed, however small.
fn always() -> DeflateConfig {
    DeflateConfig {
        min_compress_bytes: 0,
        ..DeflateConfig::on()
    }
}

fn server_with(p: Option<DeflateParams>, policy: &DeflateConfig, config: Config) -> Connection {
    let mut conn = Connection::server(config, Instant::ZERO);
    conn.set_deflate(p, policy);
    conn
}

fn client_with(p: Option<DeflateParams>, policy: &DeflateConfig, config: Config) -> Connection {
    let mut conn = Connection::client(config, Instant::ZERO, SeededEntropy::new(5));
    conn.set_deflate(p, policy);
    conn
}

fn server() -> Connection {
    server_with(Some(PLAIN), &always(), Config::default())
}

/// A masked client frame with first byte `b0` (FIN, RSV, opcode).
fn from_client(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&KEY);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}

fn events(conn: &mut Connection) -> Vec<Event> {
    core::iter::from_fn(|| conn.poll_event()).collect()
}

fn output(conn: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        wire.extend_from_slice(&chunk);
    }
    wire
}

/// The frames in `wire` as `receiver` would decode them, any RSV bits allowed.
fn frames(receiver: Side, wire: &[u8]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(receiver, u64::MAX >> 1);
    decoder.set_allowed_rsv(0b111);
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        out.push(frame);
    }
    assert!(buf.is_empty());
    out
}

fn closed_with(conn: &mut Connection, error: ConnectionError) {
    let evs = events(conn);
    let Some(Event::Closed(close)) = evs.last() else {
        panic!("expected Closed, got {evs:?}");
    };
    assert_eq!(close.error.as_ref(), Some(&error));
    let code = error.close_code();
    let sent = frames(Side::Client, &output(conn));
    let close_frame = sent.last().expect("a close frame");
    assert_eq!(close_frame.header.opcode, OpCode::Close);
    assert_eq!(&close_frame.payload[..2], &code.as_u16().to_be_bytes());
    assert!(conn.is_closed());
}

#[test]
fn rfc7692_7_2_3_1_hello_as_frames() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    // One frame: 0xc1 0x07 ...
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0xc1, &hello));
    assert_eq!(events(&mut s), [Event::Message(Message::text("Hello"))]);
    // Fragmented: 0x41 0x03 f2 48 cd, then 0x80 0x04 c9 c9 07 00, fed byte by byte.
    let mut s = server();
    let mut wire = from_client(0x41, &hello[..3]);
    wire.extend(from_client(0x80, &hello[3..]));
    for b in &wire {
        s.handle_bytes(Instant::ZERO, core::slice::from_ref(b));
    }
    assert_eq!(events(&mut s), [Event::Message(Message::text("Hello"))]);
    // What we send: the same bytes, RSV1 set.
    let mut s = server();
    s.send(Instant::ZERO, Message::text("Hello")).unwrap();
    assert_eq!(
        output(&mut s),
        [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
}

#[test]
fn rfc7692_7_2_3_2_second_message_shares_the_window() {
    let mut s = server();
    s.send(Instant::ZERO, Message::text("Hello")).unwrap();
    s.send(Instant::ZERO, Message::text("Hello")).unwrap();
    let wire = output(&mut s);
    assert_eq!(&wire[9..], [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    let mut c = client_with(Some(PLAIN), &always(), Config::default());
    c.handle_bytes(Instant::ZERO, &wire);
    assert_eq!(
        events(&mut c),
        [
            Event::Message(Message::text("Hello")),
            Event::Message(Message::text("Hello"))
        ]
    );
    // With server_no_context_takeover the second one stands alone.
    let mut s = server_with(
        Some(params(true, false, 15, 15)),
        &always(),
        Config::default(),
    );
    s.send(Instant::ZERO, Message::text("Hello")).unwrap();
    s.send(Instant::ZERO, Message::text("Hello")).unwrap();
    let wire = output(&mut s);
    assert_eq!(&wire[..9], &wire[9..]);
}

#[test]
fn rfc7692_7_2_3_3_to_5_other_encodings_of_hello() {
    for payload in [
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ][..],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        &[
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ],
    ] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(0xc1, payload));
        // A second message after it, to show the context survives.
        s.handle_bytes(
            Instant::ZERO,
            &from_client(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        );
        assert_eq!(
            events(&mut s),
            [
                Event::Message(Message::text("Hello")),
                Event::Message(Message::text("Hello"))
            ],
            "{payload:x?}"
        );
    }
}

#[test]
fn rfc7692_6_1_rsv1_misuse_is_a_protocol_error() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    // Not negotiated: RSV1 is a reserved bit.
    let mut s = server_with(None, &always(), Config::default());
    s.handle_bytes(Instant::ZERO, &from_client(0xc1, &hello));
    closed_with(&mut s, ProtocolError::ReservedBits.into());
    // RSV1 on a continuation frame.
    let mut s = server();
    let mut wire = from_client(0x41, &hello[..3]);
    wire.extend(from_client(0xc0, &hello[3..]));
    s.handle_bytes(Instant::ZERO, &wire);
    closed_with(&mut s, ProtocolError::CompressedContinuation.into());
    // ...also when the first frame was not compressed.
    let mut s = server();
    let mut wire = from_client(0x01, b"He");
    wire.extend(from_client(0xc0, &hello));
    s.handle_bytes(Instant::ZERO, &wire);
    closed_with(&mut s, ProtocolError::CompressedContinuation.into());
    // RSV1 on control frames.
    for opcode in [0x88u8, 0x89, 0x8a] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(opcode | 0x40, &[]));
        closed_with(&mut s, ProtocolError::CompressedControlFrame.into());
    }
    // RSV2 and RSV3 stay reserved.
    for rsv in [0x20u8, 0x10] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(0x81 | rsv, b"x"));
        closed_with(&mut s, ProtocolError::ReservedBits.into());
    }
    // Garbage that does not inflate: 1007.
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0xc2, &[0xff, 0xff]));
    closed_with(&mut s, ProtocolError::InvalidCompressedData.into());
}

#[test]
fn utf8_is_checked_on_the_inflated_text() {
    // The compressed bytes of valid text are not UTF-8; fed one byte at a time, the
    // partial-frame check must not look at them.
    let mut c = client_with(Some(PLAIN), &always(), Config::default());
    c.send(Instant::ZERO, Message::text("κόσμε κόσμε κόσμε"))
        .unwrap();
    let wire = output(&mut c);
    assert!(core::str::from_utf8(&wire[6..]).is_err());
    let mut s = server();
    for b in &wire {
        s.handle_bytes(Instant::ZERO, core::slice::from_ref(b));
    }
    assert_eq!(
        events(&mut s),
        [Event::Message(Message::text("κόσμε κόσμε κόσμε"))]
    );
    // Invalid UTF-8, compressed: 1007 once inflated.
    let mut c = client_with(Some(PLAIN), &always(), Config::default());
    c.send(
        Instant::ZERO,
        Message::Text(Bytes::from_static(b"ok \xed\xa0\x80 no")),
    )
    .unwrap();
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &output(&mut c));
    closed_with(&mut s, ProtocolError::InvalidUtf8.into());
    // A text message cut inside a code point at its end.
    let mut c = client_with(Some(PLAIN), &always(), Config::default());
    c.send(
        Instant::ZERO,
        Message::Text(Bytes::from_static(b"a\xe2\x82")),
    )
    .unwrap();
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &output(&mut c));
    closed_with(&mut s, ProtocolError::InvalidUtf8.into());
}

#[test]
fn threshold_and_per_message_choice() {
    let policy = DeflateConfig {
        min_compress_bytes: 16,
        ..DeflateConfig::on()
    };
    let mut s = server_with(Some(PLAIN), &policy, Config::default());
    let long = "a long enough message, a long enough message";
    s.send(Instant::ZERO, Message::text("short")).unwrap();
    s.send(Instant::ZERO, Message::text(long)).unwrap();
    s.send_with(Instant::ZERO, Message::text(long), Compression::Never)
        .unwrap();
    s.send_slice(Instant::ZERO, MessageKind::Binary, long.as_bytes())
        .unwrap();
    s.send_parts(
        Instant::ZERO,
        MessageKind::Binary,
        b"head:",
        long.as_bytes(),
    )
    .unwrap();
    s.ping(
        Instant::ZERO,
        Bytes::from_static(b"a ping, never compressed"),
    )
    .unwrap();
    // Fragmented: compressed whatever the first fragment's size, unless told not to.
    s.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"a"),
        false,
    )
    .unwrap();
    s.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"b"),
        true,
    )
    .unwrap();
    s.send_fragment_with(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from(long),
        false,
        Compression::Never,
    )
    .unwrap();
    s.send_fragment(Instant::ZERO, MessageKind::Text, Bytes::from(long), true)
        .unwrap();
    let wire = output(&mut s);
    let sent = frames(Side::Client, &wire);
    let rsv: Vec<(OpCode, u8)> = sent
        .iter()
        .map(|f| (f.header.opcode, f.header.rsv))
        .collect();
    assert_eq!(
        rsv,
        [
            (OpCode::Text, 0),
            (OpCode::Text, RSV1),
            (OpCode::Text, 0),
            (OpCode::Binary, RSV1),
            (OpCode::Binary, RSV1),
            (OpCode::Ping, 0),
            (OpCode::Text, RSV1),
            (OpCode::Continuation, 0),
            (OpCode::Text, 0),
            (OpCode::Continuation, 0),
        ]
    );
    let mut c = client_with(Some(PLAIN), &policy, Config::default());
    c.handle_bytes(Instant::ZERO, &wire);
    let got: Vec<Event> = events(&mut c);
    let head_long = alloc::format!("head:{long}");
    let longlong = alloc::format!("{long}{long}");
    assert_eq!(
        got,
        [
            Event::Message(Message::text("short")),
            Event::Message(Message::text(long)),
            Event::Message(Message::text(long)),
            Event::Message(Message::binary(long.as_bytes().to_vec())),
            Event::Message(Message::binary(head_long.into_bytes())),
            Event::Ping(Bytes::from_static(b"a ping, never compressed")),
            Event::Message(Message::text("ab")),
            Event::Message(Message::text(longlong)),
        ]
    );
}

#[test]
fn without_a_negotiated_extension_nothing_is_compressed() {
    let mut s = server_with(None, &always(), Config::default());
    s.send(Instant::ZERO, Message::text("Hello Hello Hello Hello"))
        .unwrap();
    assert!(frames(Side::Client, &output(&mut s))
        .iter()
        .all(|f| f.header.rsv == 0));
    assert_eq!(s.deflate_memory(), DeflateMemory::default());
}

#[test]
fn a_limited_window_on_our_side_still_compresses() {
    // Our window limited to 9 bits (512 bytes): compressed in contexts of 512 bytes, so
    // a client inflating with exactly that window reads it back.
    let p = params(false, false, 9, 15);
    let mut s = server_with(Some(p), &always(), Config::default());
    let mut c = client_with(Some(p), &always(), Config::default());
    let text = Message::text("all work and no play makes jack a dull boy. ".repeat(200));
    s.send(Instant::ZERO, text.clone()).unwrap();
    let wire = output(&mut s);
    assert!(frames(Side::Client, &wire)[0].header.rsv == RSV1);
    assert!(wire.len() < text.payload().len() / 4, "{}", wire.len());
    c.handle_bytes(Instant::ZERO, &wire);
    assert_eq!(events(&mut c), [Event::Message(text)]);
}

/// A raw DEFLATE stream (one fixed-Huffman block, not final) of a zero byte and then
/// `matches` copies of 258 bytes at distance 1: `1 + 258 * matches` zeros from about
/// `13 * matches / 8` bytes, the best ratio fixed codes allow.
pub(super) fn zero_bomb(matches: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        /// `len` bits of `value`, least significant first (header fields, extra bits).
        fn put(&mut self, value: u32, len: u32) {
            self.acc |= value << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            let reversed = code.reverse_bits() >> (32 - len);
            self.put(reversed, len);
        }
    }
    let mut bits = Bits {
        out: Vec::with_capacity(matches * 13 / 8 + 8),
        acc: 0,
        n: 0,
    };
    bits.put(0b010, 3); // BFINAL 0, BTYPE 01 (fixed Huffman)
    bits.code(0x30, 8); // literal 0
    for _ in 0..matches {
        bits.code(0b1100_0101, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: distance 1
    }
    bits.code(0, 7); // end of block (256)
                     // A sync flush, so the receiver's appended 00 00 ff ff completes an empty block.
    bits.put(0, 3);
    if bits.n > 0 {
        bits.put(0, 8 - bits.n);
    }
    bits.out
}

#[test]
fn a_zip_bomb_closes_1009_after_inflating_at_most_the_limit() {
    let bomb = zero_bomb(4096); // 1 MiB of zeros from 6.6 KB
    assert!(bomb.len() < 7 * 1024, "{}", bomb.len());
    let config = Config {
        max_message_bytes: 64 * 1024,
        ..Config::default()
    };
    // Unmasked, as a server sends it, to a client.
    let mut wire = vec![0xc2, 126];
    wire.extend_from_slice(&(bomb.len() as u16).to_be_bytes());
    wire.extend_from_slice(&bomb);
    let mut c = client_with(Some(PLAIN), &always(), config.clone());
    c.handle_bytes(Instant::ZERO, &wire);
    let evs = events(&mut c);
    let Some(Event::Closed(close)) = evs.last() else {
        panic!("{evs:?}");
    };
    assert_eq!(close.code, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(
        close.error,
        Some(LimitError::MessageTooLarge { max: 64 * 1024 }.into())
    );
    assert_eq!(c.deflate_memory(), DeflateMemory::default());
    // One 6.8 MB frame that inflates to 1 GiB (DEFLATE's ratio is at most about 1032:1,
    // so 1 GiB needs at least a megabyte on the wire): it stops at the 1 MiB limit.
    let giant = zero_bomb((1 << 30) / 258);
    let mut wire = vec![0xc2, 127];
    wire.extend_from_slice(&(giant.len() as u64).to_be_bytes());
    wire.extend_from_slice(&giant);
    let mut c = client_with(
        Some(PLAIN),
        &always(),
        Config {
            max_message_bytes: 1 << 20,
            ..Config::default()
        },
    );
    c.handle_bytes(Instant::ZERO, &wire);
    let evs = events(&mut c);
    assert!(
        matches!(evs.last(), Some(Event::Closed(close)) if close.code == CloseCode::MESSAGE_TOO_BIG),
        "{evs:?}"
    );
    // Just under the limit, the same stream is a message.
    let ok = zero_bomb(200);
    let mut wire = vec![0xc2, 126];
    wire.extend_from_slice(&(ok.len() as u16).to_be_bytes());
    wire.extend_from_slice(&ok);
    let mut c = client_with(Some(PLAIN), &always(), config.clone());
    c.handle_bytes(Instant::ZERO, &wire);
    assert_eq!(
        events(&mut c),
        [Event::Message(Message::binary(vec![0u8; 1 + 258 * 200]))]
    );
    // Spread over many small fragments, it fails as soon as the limit is crossed: the
    // fragments after that are never inflated.
    let mut s = server_with(Some(PLAIN), &always(), config);
    let mut fed = 0;
    for (i, piece) in bomb.chunks(100).enumerate() {
        let b0 = if i == 0 { 0x42 } else { 0x00 };
        s.handle_bytes(Instant::ZERO, &from_client(b0, piece));
        fed += piece.len();
        if s.is_closed() {
            break;
        }
    }
    assert!(s.is_closed());
    // 64 KiB of zeros is about 64 * 1024 / 258 * 13 / 8 = 413 bytes of this stream.
    assert!(fed < 600, "{fed}");
    closed_with(
        &mut s,
        LimitError::MessageTooLarge { max: 64 * 1024 }.into(),
    );
}

#[test]
fn memory_is_reported_and_freed_as_negotiated() {
    let text = Message::text("some text that compresses, some text that compresses");
    for (server_nct, client_nct) in [(false, false), (true, false), (false, true), (true, true)] {
        let p = params(server_nct, client_nct, 15, 15);
        let mut s = server_with(Some(p), &always(), Config::default());
        let mut c = client_with(Some(p), &always(), Config::default());
        assert_eq!(
            s.deflate_memory().total(),
            0,
            "nothing before the first message"
        );
        c.send(Instant::ZERO, text.clone()).unwrap();
        s.handle_bytes(Instant::ZERO, &output(&mut c));
        s.send(Instant::ZERO, text.clone()).unwrap();
        c.handle_bytes(Instant::ZERO, &output(&mut s));
        assert_eq!(events(&mut s), [Event::Message(text.clone())]);
        assert_eq!(events(&mut c), [Event::Message(text.clone())]);
        let compressor = |nct: bool| if nct { 0 } else { COMPRESSOR_BYTES };
        let inflater = |nct: bool, bits: usize| {
            if nct {
                0
            } else {
                INFLATER_STATE_BYTES + (1 << bits)
            }
        };
        assert_eq!(
            s.deflate_memory(),
            DeflateMemory {
                compressor: compressor(server_nct),
                decompressor: inflater(client_nct, 15),
            }
        );
        assert_eq!(
            c.deflate_memory(),
            DeflateMemory {
                compressor: compressor(client_nct),
                decompressor: inflater(server_nct, 15),
            }
        );
        // Closed: nothing is held.
        s.close(Instant::ZERO, CloseCode::NORMAL, "").unwrap();
        c.handle_bytes(Instant::ZERO, &output(&mut s));
        assert!(c.is_closed());
        assert_eq!(c.deflate_memory().total(), 0);
    }
}

/// A payload that compresses (repeated words) or does not (arbitrary bytes), or both.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        ("[a-d é€]{1,12}", 1usize..300).prop_map(|(s, n)| s.repeat(n).into_bytes()),
        (
            proptest::collection::vec(any::<u8>(), 0..100),
            "[xyz]{1,4}",
            0usize..2000
        )
            .prop_map(|(mut b, s, n)| {
                b.extend(s.repeat(n).into_bytes());
                b
            }),
    ]
}

/// One message to send: from the client or the server, text (its payload made valid
/// UTF-8) or binary, cut into fragments at these fractions of its length, compressed
/// by the `Auto` rule or `Never`, with a ping between fragments or not.
#[derive(Clone, Debug)]
struct Send {
    from_client: bool,
    text: bool,
    data: Vec<u8>,
    cuts: Vec<u8>,
    never: bool,
    ping: bool,
}

fn send_op() -> impl Strategy<Value = Send> {
    (
        any::<bool>(),
        any::<bool>(),
        payload(),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(from_client, text, data, cuts, never, ping)| Send {
            from_client,
            text,
            data: if text {
                String::from_utf8_lossy(&data).into_owned().into_bytes()
            } else {
                data
            },
            cuts,
            never,
            ping,
        })
}

/// Sends `op` on `conn`; returns the message as the peer must see it.
fn send(conn: &mut Connection, op: &Send) -> Message {
    let kind = if op.text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    let compression = if op.never {
        Compression::Never
    } else {
        Compression::Auto
    };
    let data = Bytes::from(op.data.clone());
    if op.cuts.is_empty() {
        let message = match kind {
            MessageKind::Text => Message::Text(data.clone()),
            MessageKind::Binary => Message::Binary(data.clone()),
        };
        conn.send_with(Instant::ZERO, message.clone(), compression)
            .unwrap();
        return message;
    }
    let mut points: Vec<usize> = op
        .cuts
        .iter()
        .map(|&c| usize::from(c) * data.len() / 255)
        .collect();
    points.sort_unstable();
    let mut start = 0;
    for &end in &points {
        conn.send_fragment_with(
            Instant::ZERO,
            kind,
            data.slice(start..end),
            false,
            compression,
        )
        .unwrap();
        if op.ping {
            conn.ping(Instant::ZERO, Bytes::from_static(b"p")).unwrap();
        }
        start = end;
    }
    conn.send_fragment_with(Instant::ZERO, kind, data.slice(start..), true, compression)
        .unwrap();
    match kind {
        MessageKind::Text => Message::Text(data),
        MessageKind::Binary => Message::Binary(data),
    }
}

/// Moves everything `from` queued to `to` in chunks of `sizes` (cycled), checking the
/// RSV bits on the way; returns the messages `to` received.
fn carry(
    from: &mut Connection,
    to: &mut Connection,
    sizes: &[usize],
    compressed: bool,
) -> Vec<Message> {
    let wire = output(from);
    let mut first = true;
    for frame in frames(to.side(), &wire) {
        let h = frame.header;
        match h.opcode {
            OpCode::Text | OpCode::Binary => {
                assert_eq!(h.rsv, if compressed { RSV1 } else { 0 }, "{h:?}");
                first = false;
            }
            _ => assert_eq!(h.rsv, 0, "{h:?}"),
        }
    }
    assert!(!first, "a data frame was sent");
    let mut received = Vec::new();
    let mut rest = &wire[..];
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        to.handle_bytes(Instant::ZERO, &rest[..n]);
        rest = &rest[n..];
        while let Some(event) = to.poll_event() {
            match event {
                Event::Message(m) => received.push(m),
                Event::Ping(_) | Event::Pong { .. } => {}
                Event::Closed(close) => panic!("closed: {close:?}"),
            }
        }
    }
    // Pongs for the pings go back; the sender just drops them.
    let _ = output(to);
    received
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn round_trips_under_every_parameter_set(
        server_nct in any::<bool>(),
        client_nct in any::<bool>(),
        server_bits in prop_oneof![Just(15u8), 8u8..=15],
        client_bits in prop_oneof![Just(15u8), 8u8..=15],
        level in 0u8..=10,
        min_compress_bytes in prop_oneof![Just(0usize), Just(64), 0usize..600],
        ops in proptest::collection::vec(send_op(), 1..8),
        sizes in proptest::collection::vec(1usize..400, 1..4),
    ) {
        let p = params(server_nct, client_nct, server_bits, client_bits);
        let policy = DeflateConfig { level, min_compress_bytes, ..DeflateConfig::on() };
        let mut s = server_with(Some(p), &policy, Config::default());
        let mut c = client_with(Some(p), &policy, Config::default());
        for op in &ops {
            let (from, to) = if op.from_client {
                (&mut c, &mut s)
            } else {
                (&mut s, &mut c)
            };
            let expected = send(from, op);
            let whole = op.cuts.is_empty();
            let compressed = !op.never && (!whole || op.data.len() >= min_compress_bytes);
            let got = carry(from, to, &sizes, compressed);
            prop_assert_eq!(got, vec![expected]);
            // No context takeover: nothing is held between messages.
            if server_nct {
                prop_assert_eq!(s.deflate_memory().compressor, 0);
                prop_assert_eq!(c.deflate_memory().decompressor, 0);
            }
            if client_nct {
                prop_assert_eq!(c.deflate_memory().compressor, 0);
                prop_assert_eq!(s.deflate_memory().decompressor, 0);
            }
        }
    }
}
