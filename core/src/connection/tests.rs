//! Conformance tests for RFC 6455 §5–8, named after the section whose MUST they check,
//! plus two connections talking over the in-memory [`Pair`](crate::sim::Pair).

use alloc::vec;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::time::Duration;
use proptest::prelude::*;

use super::*;
use crate::frame::{apply_mask, FrameDecoder};
use crate::sim::Pair;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame with an arbitrary first byte (FIN, RSV, opcode), masked if `mask` is set.
fn raw(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

/// A frame as a client sends it (masked).
fn from_client(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw(b0, Some(KEY), payload)
}

fn server() -> Connection {
    Connection::server(Config::default(), Instant::ZERO)
}

fn client() -> Connection {
    Connection::client(
        Config::default(),
        Instant::ZERO,
        crate::SeededEntropy::new(3),
    )
}

fn events(conn: &mut Connection) -> Vec<Event> {
    core::iter::from_fn(|| conn.poll_event()).collect()
}

fn transmitted(conn: &mut Connection) -> Vec<u8> {
    core::iter::from_fn(|| conn.poll_transmit())
        .flat_map(|b| b.to_vec())
        .collect()
}

/// Decodes what `conn` sent, as its peer would.
fn sent_frames(conn: &mut Connection) -> Vec<Frame> {
    let peer = match conn.side() {
        Side::Server => Side::Client,
        Side::Client => Side::Server,
    };
    let mut decoder = FrameDecoder::new(peer, u64::MAX >> 1);
    let mut buf = BytesMut::from(&transmitted(conn)[..]);
    core::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
}

fn text(s: &'static str) -> Event {
    Event::Message(Message::Text(Bytes::from_static(s.as_bytes())))
}

/// Asserts the connection failed with `error`, sent a close frame with its code, and
/// wants the transport closed.
fn assert_failed(conn: &mut Connection, error: ConnectionError) {
    let code = error.close_code();
    let evs = events(conn);
    let Some(Event::Closed(close)) = evs.last() else {
        panic!("expected Closed, got {evs:?}");
    };
    assert_eq!(close.error.as_ref(), Some(&error));
    assert_eq!(close.code, code);
    let frames = sent_frames(conn);
    let close_frame = frames.last().expect("a close frame");
    assert_eq!(close_frame.header.opcode, OpCode::Close);
    assert_eq!(&close_frame.payload[..2], &code.as_u16().to_be_bytes());
    assert!(conn.wants_disconnect());
    assert!(conn.is_closed());
}

#[test]
fn rfc6455_5_1_server_fails_on_unmasked_frame() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &raw(0x81, None, b"hi"));
    assert_failed(&mut s, ProtocolError::UnmaskedClientFrame.into());
}

#[test]
fn rfc6455_5_1_client_fails_on_masked_frame() {
    let mut c = client();
    c.handle_bytes(Instant::ZERO, &raw(0x81, Some(KEY), b"hi"));
    assert_failed(&mut c, ProtocolError::MaskedServerFrame.into());
}

#[test]
fn rfc6455_5_1_client_masks_every_frame_with_fresh_keys() {
    let mut c = client();
    c.send(Instant::ZERO, Message::text("one")).unwrap();
    c.send(Instant::ZERO, Message::text("two")).unwrap();
    let bytes = transmitted(&mut c);
    let mut decoder = FrameDecoder::new(Side::Server, 1 << 20);
    let mut buf = BytesMut::from(&bytes[..]);
    let a = decoder.decode(&mut buf).unwrap().unwrap();
    let b = decoder.decode(&mut buf).unwrap().unwrap();
    assert!(a.header.mask.is_some() && b.header.mask.is_some());
    assert_ne!(a.header.mask, b.header.mask);
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"one"[..], &b"two"[..]));
}

#[test]
fn rfc6455_5_2_nonzero_rsv_without_extension_fails() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(0x81 | rsv, b"x"));
        assert_failed(&mut s, ProtocolError::ReservedBits.into());
    }
}

#[test]
fn rfc6455_5_2_reserved_opcodes_fail() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(0x80 | op, b""));
        assert_failed(&mut s, ProtocolError::ReservedOpcode(op).into());
    }
}

#[test]
fn rfc6455_5_2_length_with_top_bit_set_fails() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_failed(&mut s, ProtocolError::LengthTopBitSet.into());
}

#[test]
fn rfc6455_5_4_control_frames_may_be_injected_between_fragments() {
    let mut s = server();
    let mut wire = from_client(0x01, b"Hel");
    wire.extend(from_client(0x89, b"p"));
    wire.extend(from_client(0x80, b"lo"));
    s.handle_bytes(Instant::ZERO, &wire);
    assert_eq!(
        events(&mut s),
        vec![Event::Ping(Bytes::from_static(b"p")), text("Hello")]
    );
    let pong = sent_frames(&mut s);
    assert_eq!(pong.len(), 1);
    assert_eq!(
        (pong[0].header.opcode, &pong[0].payload[..]),
        (OpCode::Pong, &b"p"[..])
    );
}

#[test]
fn rfc6455_5_4_continuation_without_a_message_fails() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x80, b"lo"));
    assert_failed(&mut s, ProtocolError::UnexpectedContinuation.into());
}

#[test]
fn rfc6455_5_4_new_message_inside_a_fragmented_one_fails() {
    let mut s = server();
    let mut wire = from_client(0x01, b"Hel");
    wire.extend(from_client(0x82, b"x"));
    s.handle_bytes(Instant::ZERO, &wire);
    assert_failed(&mut s, ProtocolError::ExpectedContinuation.into());
}

#[test]
fn rfc6455_5_5_control_frame_over_125_bytes_fails() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x89, &[0u8; 126]));
    assert_failed(&mut s, ProtocolError::ControlFrameTooLong.into());
}

#[test]
fn rfc6455_5_5_fragmented_control_frame_fails() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x09, b"p"));
    assert_failed(&mut s, ProtocolError::FragmentedControlFrame.into());
}

#[test]
fn rfc6455_5_5_1_close_is_echoed_and_server_disconnects() {
    let mut s = server();
    s.handle_bytes(
        Instant::ZERO,
        &from_client(0x88, &[0x03, 0xE8, b'b', b'y', b'e']),
    );
    let evs = events(&mut s);
    let expected = Close {
        code: CloseCode::NORMAL,
        reason: "bye".into(),
        initiated_by_peer: true,
        error: None,
    };
    assert_eq!(evs, vec![Event::Closed(expected)]);
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].header.opcode, &frames[0].payload[..]),
        (OpCode::Close, &[0x03, 0xE8][..])
    );
    assert!(s.wants_disconnect());
}

#[test]
fn rfc6455_5_5_1_empty_close_is_echoed_empty() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x88, b""));
    let Some(Event::Closed(close)) = events(&mut s).pop() else {
        panic!()
    };
    assert_eq!(close.code, CloseCode::NO_STATUS);
    let frames = sent_frames(&mut s);
    assert_eq!(
        (frames[0].header.opcode, frames[0].payload.len()),
        (OpCode::Close, 0)
    );
}

#[test]
fn rfc6455_5_5_1_no_data_frames_after_sending_close() {
    let mut s = server();
    s.close(Instant::ZERO, CloseCode::GOING_AWAY, "shutdown")
        .unwrap();
    assert_eq!(
        s.send(Instant::ZERO, Message::text("late")),
        Err(SendError::Closed)
    );
    assert_eq!(s.ping(Instant::ZERO, Bytes::new()), Err(SendError::Closed));
    assert_eq!(s.state(), State::Closing);
    // Data from the peer still arrives until its close frame does.
    s.handle_bytes(Instant::ZERO, &from_client(0x81, b"in flight"));
    s.handle_bytes(Instant::ZERO, &from_client(0x88, &[0x03, 0xE9]));
    let evs = events(&mut s);
    assert_eq!(evs[0], text("in flight"));
    let Event::Closed(close) = &evs[1] else {
        panic!()
    };
    assert!(close.is_clean() && !close.initiated_by_peer);
    // Our close went out once, with our code; nothing else after it.
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0].payload[..], b"\x03\xe9shutdown");
}

#[test]
fn rfc6455_5_5_1_one_byte_close_body_fails() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x88, &[0x03]));
    assert_failed(&mut s, ProtocolError::InvalidClosePayload.into());
}

#[test]
fn rfc6455_7_4_1_close_with_unsendable_code_fails() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000] {
        let mut s = server();
        s.handle_bytes(Instant::ZERO, &from_client(0x88, &code.to_be_bytes()));
        assert_failed(&mut s, ProtocolError::InvalidCloseCode(code).into());
    }
}

#[test]
fn rfc6455_5_5_1_close_reason_must_be_utf8() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x88, &[0x03, 0xE8, 0xC0, 0x80]));
    assert_failed(&mut s, ProtocolError::InvalidCloseReason.into());
}

#[test]
fn rfc6455_5_5_2_ping_is_answered_with_identical_pong_at_once() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x89, b"are you there"));
    // The pong is queued by the call that saw the ping, before any other input.
    let frames = sent_frames(&mut s);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Pong);
    assert_eq!(&frames[0].payload[..], b"are you there");
    assert_eq!(
        events(&mut s),
        vec![Event::Ping(Bytes::from_static(b"are you there"))]
    );
}

#[test]
fn rfc6455_5_5_3_unsolicited_pong_is_reported_not_an_error() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x8A, b"beat"));
    let expected = Event::Pong {
        payload: Bytes::from_static(b"beat"),
        rtt: None,
    };
    assert_eq!(events(&mut s), vec![expected]);
    assert_eq!(s.state(), State::Open);
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_with_1007() {
    let mut s = server();
    s.handle_bytes(Instant::ZERO, &from_client(0x81, &[b'a', 0xFF]));
    assert_failed(&mut s, ProtocolError::InvalidUtf8.into());
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_before_the_frame_ends() {
    let mut s = server();
    let mut payload = vec![b'x'; 100];
    payload[10] = 0xFF;
    let wire = from_client(0x81, &payload);
    // Only the header and 20 payload bytes have arrived.
    s.handle_bytes(Instant::ZERO, &wire[..6 + 20]);
    assert_failed(&mut s, ProtocolError::InvalidUtf8.into());
}

#[test]
fn rfc6455_8_1_invalid_utf8_across_fragments_fails_at_the_bad_fragment() {
    let mut s = server();
    // "€" is E2 82 AC: split across fragments it is fine; E2 28 never is.
    let mut wire = from_client(0x01, &[0xE2]);
    wire.extend(from_client(0x00, &[0x82]));
    wire.extend(from_client(0x80, &[0xAC]));
    s.handle_bytes(Instant::ZERO, &wire);
    assert_eq!(events(&mut s), vec![text("€")]);
    s.handle_bytes(Instant::ZERO, &from_client(0x01, &[0xE2]));
    s.handle_bytes(Instant::ZERO, &from_client(0x00, &[0x28]));
    assert_failed(&mut s, ProtocolError::InvalidUtf8.into());
}

#[test]
fn rfc6455_7_1_1_client_waits_for_the_server_to_close_the_transport() {
    let mut c = client();
    c.handle_bytes(Instant::ZERO, &raw(0x88, None, &[0x03, 0xE8]));
    assert!(c.is_closed());
    assert!(
        !c.wants_disconnect(),
        "the client leaves the TCP close to the server"
    );
    let deadline = c
        .poll_timeout()
        .expect("a deadline for the server's TCP close");
    c.handle_timeout(deadline);
    assert!(c.wants_disconnect());

    let mut c = client();
    c.handle_bytes(Instant::ZERO, &raw(0x88, None, &[0x03, 0xE8]));
    c.handle_eof(Instant::ZERO);
    assert!(c.wants_disconnect());
}

#[test]
fn nothing_is_accepted_after_close() {
    let mut s = server();
    let mut wire = from_client(0x88, &[0x03, 0xE8]);
    wire.extend(from_client(0x81, b"too late"));
    wire.extend(from_client(0x89, b"ping"));
    s.handle_bytes(Instant::ZERO, &wire);
    s.handle_bytes(Instant::ZERO, &from_client(0x81, b"later still"));
    let evs = events(&mut s);
    assert_eq!(evs.len(), 1);
    assert!(matches!(evs[0], Event::Closed(_)));
    assert_eq!(sent_frames(&mut s).len(), 1, "only the close echo, no pong");
}

#[test]
fn a_message_is_answered_before_a_later_violation_in_the_same_read() {
    let mut s = server();
    let mut wire = from_client(0x81, b"hello");
    wire.extend(from_client(0xC1, b"reserved bit set"));
    s.handle_bytes(Instant::ZERO, &wire);
    let Some(Event::Message(echo)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(
        s.state(),
        State::Open,
        "the bad frame waits until the app asks for more"
    );
    s.send(Instant::ZERO, echo).unwrap();
    let Some(Event::Closed(close)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(close.error, Some(ProtocolError::ReservedBits.into()));
    let frames = sent_frames(&mut s);
    assert_eq!(
        (frames[0].header.opcode, &frames[0].payload[..]),
        (OpCode::Text, &b"hello"[..])
    );
    assert_eq!(
        (frames[1].header.opcode, &frames[1].payload[..]),
        (OpCode::Close, &[0x03, 0xEA][..])
    );
}

#[test]
fn eof_takes_effect_after_the_frames_received_before_it() {
    let mut s = server();
    let mut wire = from_client(0x81, b"one");
    wire.extend(from_client(0x81, b"two"));
    s.handle_bytes(Instant::ZERO, &wire);
    s.handle_eof(Instant::ZERO);
    let evs = events(&mut s);
    assert_eq!(evs[..2], [text("one"), text("two")]);
    let Event::Closed(close) = &evs[2] else {
        panic!("{evs:?}")
    };
    assert_eq!(close.error, Some(ConnectionError::UnexpectedEof));
    assert!(s.wants_disconnect());
}

#[test]
fn frame_over_the_limit_fails_with_1009_before_its_payload_arrives() {
    let config = Config {
        max_frame_bytes: 1000,
        ..Config::default()
    };
    let mut s = Connection::server(config, Instant::ZERO);
    let wire = from_client(0x82, &[0u8; 1001]);
    s.handle_bytes(Instant::ZERO, &wire[..8]);
    assert_failed(
        &mut s,
        LimitError::FrameTooLarge {
            len: 1001,
            max: 1000,
        }
        .into(),
    );
}

#[test]
fn message_over_the_limit_fails_with_1009_across_fragments() {
    let config = Config {
        max_message_bytes: 100,
        ..Config::default()
    };
    let mut s = Connection::server(config, Instant::ZERO);
    let mut wire = from_client(0x02, &[0u8; 60]);
    wire.extend(from_client(0x80, &[0u8; 60]));
    s.handle_bytes(Instant::ZERO, &wire[..wire.len() - 60]);
    assert_failed(&mut s, LimitError::MessageTooLarge { max: 100 }.into());
}

#[test]
fn closing_handshake_times_out() {
    let mut s = server();
    s.close(Instant::ZERO, CloseCode::NORMAL, "").unwrap();
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, Instant::ZERO + Config::default().close_timeout);
    s.handle_timeout(deadline);
    let Some(Event::Closed(close)) = events(&mut s).pop() else {
        panic!()
    };
    assert_eq!(close.error, Some(ConnectionError::CloseTimeout));
    assert!(s.wants_disconnect());
}

#[test]
fn eof_without_close_is_abnormal_and_sends_nothing() {
    let mut s = server();
    s.handle_eof(Instant::ZERO);
    let Some(Event::Closed(close)) = events(&mut s).pop() else {
        panic!()
    };
    assert_eq!(close.code, CloseCode::ABNORMAL);
    assert_eq!(close.error, Some(ConnectionError::UnexpectedEof));
    assert!(transmitted(&mut s).is_empty());
}

#[test]
fn try_send_hands_the_message_back_when_full_or_closed() {
    let config = Config {
        max_send_queue_bytes: 1000,
        ..Config::default()
    };
    let mut s = Connection::server(config, Instant::ZERO);
    s.try_send_with(
        Instant::ZERO,
        Message::binary(vec![0u8; 1500]),
        Compression::Auto,
    )
    .unwrap();
    let refused = Message::text("kept");
    let (error, back) = s
        .try_send_with(Instant::ZERO, refused.clone(), Compression::Auto)
        .unwrap_err();
    assert_eq!((error, &back), (SendError::Full, &refused));
    assert!(!transmitted(&mut s).is_empty());
    // Room again: the same message goes through.
    s.try_send_with(Instant::ZERO, back, Compression::Auto)
        .unwrap();
    s.close(Instant::ZERO, CloseCode::NORMAL, "").unwrap();
    let (error, back) = s
        .try_send_with(Instant::ZERO, refused.clone(), Compression::Auto)
        .unwrap_err();
    assert_eq!((error, back), (SendError::Closed, refused));
}

#[test]
fn full_send_queue_is_backpressure_not_growth() {
    let config = Config {
        max_send_queue_bytes: 1000,
        ..Config::default()
    };
    let mut s = Connection::server(config, Instant::ZERO);
    // An empty queue takes any message, even one over the limit.
    s.send(Instant::ZERO, Message::binary(vec![0u8; 1500]))
        .unwrap();
    assert_eq!(
        s.send(Instant::ZERO, Message::binary(vec![0u8; 10])),
        Err(SendError::Full)
    );
    assert!(!transmitted(&mut s).is_empty());
    assert_eq!(s.queued_bytes(), 0);
    s.send(Instant::ZERO, Message::binary(vec![0u8; 10]))
        .unwrap();
}

#[test]
fn fragments_must_be_sent_in_order() {
    let mut s = server();
    s.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"a"),
        false,
    )
    .unwrap();
    assert_eq!(
        s.send(Instant::ZERO, Message::text("x")),
        Err(SendError::FragmentOrder)
    );
    assert_eq!(
        s.send_fragment(Instant::ZERO, MessageKind::Binary, Bytes::new(), true),
        Err(SendError::FragmentOrder)
    );
    s.ping(Instant::ZERO, Bytes::from_static(b"between"))
        .unwrap();
    s.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"b"),
        true,
    )
    .unwrap();
    let ops: Vec<_> = sent_frames(&mut s)
        .iter()
        .map(|f| (f.header.opcode, f.header.fin))
        .collect();
    assert_eq!(
        ops,
        vec![
            (OpCode::Text, false),
            (OpCode::Ping, true),
            (OpCode::Continuation, true)
        ]
    );
}

#[test]
fn close_arguments_are_checked() {
    let mut s = server();
    assert_eq!(
        s.close(Instant::ZERO, CloseCode::NO_STATUS, ""),
        Err(SendError::InvalidCloseCode(1005))
    );
    let long = "x".repeat(124);
    assert_eq!(
        s.close(Instant::ZERO, CloseCode::NORMAL, &long),
        Err(SendError::ControlPayloadTooLong)
    );
    assert_eq!(
        s.ping(Instant::ZERO, Bytes::from(vec![0u8; 126])),
        Err(SendError::ControlPayloadTooLong)
    );
}

// --- Two connections over the in-memory link ------------------------------------------

fn messages(log: &[Event]) -> Vec<Message> {
    log.iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn pattern(len: usize, salt: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect::<Vec<_>>()
        .into()
}

#[test]
fn pair_carries_boundary_sizes_both_ways_in_any_chunking() {
    for seed in [None, Some(1), Some(2)] {
        let mut pair = match seed {
            Some(s) => Pair::seeded(Config::default(), s),
            None => Pair::new(Config::default()),
        };
        let mut sent = Vec::new();
        for (i, len) in [0usize, 125, 126, 65535, 65536, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let m = Message::Binary(pattern(len, i as u8));
            pair.client.send(pair.now, m.clone()).unwrap();
            pair.server.send(pair.now, m.clone()).unwrap();
            sent.push(m);
            pair.drive();
        }
        let t = Message::text("é".repeat(40_000));
        pair.client.send(pair.now, t.clone()).unwrap();
        pair.server.send(pair.now, t.clone()).unwrap();
        sent.push(t);
        pair.drive();
        assert_eq!(messages(&pair.log.server), sent, "seed {seed:?}");
        assert_eq!(messages(&pair.log.client), sent, "seed {seed:?}");
    }
}

#[test]
fn pair_carries_fragmented_messages_with_pings_between() {
    let mut pair = Pair::seeded(Config::default(), 9);
    let parts: [&'static [u8]; 3] = [b"frag", b"men", b"ted \xE2\x82\xAC"];
    for (i, part) in parts.iter().enumerate() {
        let fin = i == parts.len() - 1;
        let now = pair.now;
        pair.client
            .send_fragment(now, MessageKind::Text, Bytes::from_static(part), fin)
            .unwrap();
        pair.client.ping(now, Bytes::from_static(b"mid")).unwrap();
        pair.server
            .send_fragment(now, MessageKind::Binary, Bytes::from_static(part), fin)
            .unwrap();
        pair.drive();
    }
    assert_eq!(
        messages(&pair.log.server),
        vec![Message::text("fragmented €")]
    );
    assert_eq!(
        messages(&pair.log.client),
        vec![Message::binary(&b"fragmented \xE2\x82\xAC"[..])]
    );
    let pongs = pair
        .log
        .client
        .iter()
        .filter(|e| matches!(e, Event::Pong { .. }))
        .count();
    assert_eq!(pongs, 3);
}

#[test]
fn pair_keepalive_ping_measures_rtt() {
    let config = Config {
        ping_interval: Some(Duration::from_secs(5)),
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    pair.advance(Duration::from_secs(6));
    let rtt = pair.log.client.iter().find_map(|e| match e {
        Event::Pong { rtt, .. } => *rtt,
        _ => None,
    });
    assert_eq!(rtt, Some(Duration::ZERO), "the in-memory link has no delay");
    assert_eq!(pair.client.rtt(), Some(Duration::ZERO));
    assert_eq!(pair.client.state(), State::Open);
}

#[test]
fn pair_keepalive_times_out_a_silent_peer() {
    let config = Config {
        ping_interval: Some(Duration::from_secs(5)),
        pong_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    pair.to_client.stalled = true;
    pair.to_server.stalled = true;
    pair.advance(Duration::from_secs(7));
    assert_eq!(
        pair.client.state(),
        State::Open,
        "pinged at 5 s, not dead yet"
    );
    pair.advance(Duration::from_secs(2));
    let Some(Event::Closed(close)) = pair.log.client.last() else {
        panic!("{:?}", pair.log.client)
    };
    assert_eq!(close.error, Some(ConnectionError::KeepaliveTimeout));
    assert!(pair.client.wants_disconnect());
}

#[test]
fn pair_close_started_by_either_side_is_clean_on_both() {
    for client_starts in [true, false] {
        let mut pair = Pair::seeded(Config::default(), 4);
        let now = pair.now;
        if client_starts {
            pair.client.close(now, CloseCode::NORMAL, "done").unwrap();
        } else {
            pair.server
                .close(now, CloseCode::GOING_AWAY, "restart")
                .unwrap();
        }
        pair.drive();
        let Some(Event::Closed(c)) = pair.log.client.last().cloned() else {
            panic!()
        };
        let Some(Event::Closed(s)) = pair.log.server.last().cloned() else {
            panic!()
        };
        assert!(c.is_clean() && s.is_clean());
        assert_eq!(c.initiated_by_peer, !client_starts);
        assert_eq!(s.initiated_by_peer, client_starts);
        // The server closed the transport; the client saw EOF and is done too.
        assert!(pair.server.wants_disconnect() && pair.client.wants_disconnect());
        assert_eq!(pair.client.poll_timeout(), None);
        assert_eq!(pair.server.poll_timeout(), None);
    }
}

// --- Chunking never matters -----------------------------------------------------------

fn arb_client_frame() -> impl Strategy<Value = Vec<u8>> {
    let payload = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        // Mostly well-formed frames of every kind, sometimes with bad UTF-8 or bad bits.
        (
            prop_oneof![
                Just(0x81u8),
                Just(0x82),
                Just(0x01),
                Just(0x02),
                Just(0x80),
                Just(0x00)
            ],
            payload.clone()
        )
            .prop_map(|(b0, p)| from_client(b0, &p)),
        "[a-zA-Zé€ ]{0,40}".prop_map(|s| from_client(0x81, s.as_bytes())),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(|p| from_client(0x89, &p)),
        proptest::collection::vec(any::<u8>(), 0..125).prop_map(|p| from_client(0x8A, &p)),
        (any::<u16>(), "[a-z]{0,10}").prop_map(|(c, r)| {
            let mut p = c.to_be_bytes().to_vec();
            p.extend(r.as_bytes());
            from_client(0x88, &p)
        }),
        (any::<u8>(), payload).prop_map(|(b0, p)| from_client(b0, &p)),
    ]
}

fn run_server(wire: &[u8], chunks: &[usize]) -> (Vec<Event>, Vec<u8>) {
    let config = Config {
        max_message_bytes: 400,
        ..Config::default()
    };
    let mut s = Connection::server(config, Instant::ZERO);
    let (mut evs, mut out) = (Vec::new(), Vec::new());
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        s.handle_bytes(Instant::ZERO, &rest[..n]);
        rest = &rest[n..];
        evs.extend(events(&mut s));
        out.extend(transmitted(&mut s));
    }
    (evs, out)
}

proptest! {
    #[test]
    fn chunking_never_changes_events_or_replies(
        frames in proptest::collection::vec(arb_client_frame(), 1..12),
        chunks in proptest::collection::vec(1usize..64, 1..10),
    ) {
        let wire: Vec<u8> = frames.concat();
        let whole = run_server(&wire, &[usize::MAX]);
        prop_assert_eq!(&run_server(&wire, &[1]), &whole);
        prop_assert_eq!(&run_server(&wire, &chunks), &whole);
        // At most one Closed, and it is the last event.
        let closes = whole.0.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        prop_assert!(closes <= 1);
        if closes == 1 {
            prop_assert!(matches!(whole.0.last(), Some(Event::Closed(_))));
        }
    }
}
