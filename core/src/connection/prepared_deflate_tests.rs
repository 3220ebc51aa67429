//! A prepared message compressed once for every server connection that keeps no
//! compression context (issue 10, point 4): the same bytes as each would have compressed
//! on its own, shared, and inflated by a client; connections with a context, other
//! settings, or a message under the size threshold compress (or not) for themselves.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::handshake::{DeflateConfig, DeflateParams};
use crate::SeededEntropy;

fn agreed(server_no_context_takeover: bool, server_max_window_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover: false,
        server_max_window_bits,
        client_max_window_bits: 15,
    }
}

fn server(params: DeflateParams, policy: &DeflateConfig) -> Connection {
    let mut conn = Connection::server(Config::default(), Instant::ZERO);
    conn.set_deflate(Some(params), policy);
    conn
}

fn wire(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

/// What a client that agreed to `params` makes of `wire`.
fn received(params: DeflateParams, wire: &[u8]) -> Vec<Event> {
    let mut client = Connection::client(Config::default(), Instant::ZERO, SeededEntropy::new(3));
    client.set_deflate(Some(params), &DeflateConfig::on());
    client.handle_bytes(Instant::ZERO, wire);
    core::iter::from_fn(|| client.poll_event()).collect()
}

fn room_message() -> String {
    "the same room message for every member of the room, ".repeat(20)
}

#[test]
fn compressed_once_and_sent_as_the_same_bytes() {
    let resets = agreed(true, 15);
    let text = room_message();
    let mut prepared = PreparedMessage::new(&Message::text(text.clone()));
    let mut members: Vec<Connection> = (0..3)
        .map(|_| server(resets, &DeflateConfig::on()))
        .collect();
    for member in &members {
        member.prepare_compressed(&mut prepared);
    }
    assert!(prepared.is_compressed());
    let frame = prepared.frame().clone();
    let mut wires = Vec::new();
    for member in &mut members {
        member.send_prepared(Instant::ZERO, &prepared).unwrap();
        wires.push(wire(member));
        assert_eq!(
            member.deflate_memory().compressor,
            0,
            "no compressor of its own"
        );
    }
    assert!(wires.iter().all(|w| *w == wires[0]));
    // FIN, RSV1, text; smaller than the message.
    assert_eq!(wires[0][0], 0x80 | 0x40 | 0x01);
    assert!(wires[0].len() < text.len() / 4, "{} bytes", wires[0].len());
    // Byte for byte what a member compressing for itself sends.
    let mut alone = server(resets, &DeflateConfig::on());
    alone
        .send(Instant::ZERO, Message::text(text.clone()))
        .unwrap();
    assert_eq!(wire(&mut alone), wires[0]);
    assert_eq!(
        received(resets, &wires[0]),
        [Event::Message(Message::text(text))]
    );
    // The plain frame is still there for connections without compression.
    assert_eq!(*prepared.frame(), frame);
    let mut plain = Connection::server(Config::default(), Instant::ZERO);
    plain.send_prepared(Instant::ZERO, &prepared).unwrap();
    assert_eq!(wire(&mut plain), frame);
}

#[test]
fn a_policy_that_drops_its_compressor_shares_too() {
    // Context takeover agreed, but our policy starts every message afresh anyway.
    let mut policy = DeflateConfig::on();
    policy.keep_compressor = false;
    let conn = server(agreed(false, 15), &policy);
    let mut prepared = PreparedMessage::new(&Message::text(room_message()));
    conn.prepare_compressed(&mut prepared);
    assert!(prepared.is_compressed());
}

#[test]
fn connections_that_cannot_share_compress_for_themselves() {
    let text = room_message();
    // A connection keeping its context: nothing to share, its own compression.
    let mut keeps = server(agreed(false, 15), &DeflateConfig::on());
    let mut prepared = PreparedMessage::new(&Message::text(text.clone()));
    keeps.prepare_compressed(&mut prepared);
    assert!(!prepared.is_compressed());
    // Compressed for 15-bit connections without context; a 9-bit one compresses for
    // itself, within its window, and a kept context still works.
    let mut wide = server(agreed(true, 15), &DeflateConfig::on());
    wide.prepare_compressed(&mut prepared);
    assert!(prepared.is_compressed());
    let mut narrow = server(agreed(true, 9), &DeflateConfig::on());
    narrow.prepare_compressed(&mut prepared);
    for (conn, params) in [
        (&mut wide, agreed(true, 15)),
        (&mut narrow, agreed(true, 9)),
        (&mut keeps, agreed(false, 15)),
    ] {
        conn.send_prepared(Instant::ZERO, &prepared).unwrap();
        let bytes = wire(conn);
        assert_eq!(bytes[0], 0x80 | 0x40 | 0x01);
        assert_eq!(
            received(params, &bytes),
            [Event::Message(Message::text(text.clone()))]
        );
    }
    assert!(keeps.deflate_memory().compressor > 0, "its own, kept");
    // Under the size threshold nothing is compressed, or prepared.
    let mut short = PreparedMessage::new(&Message::text("hi"));
    wide.prepare_compressed(&mut short);
    assert!(!short.is_compressed());
    wide.send_prepared(Instant::ZERO, &short).unwrap();
    assert_eq!(wire(&mut wide), *short.frame());
    // A client never shares: its frames are masked.
    let client = {
        let mut c = Connection::client(Config::default(), Instant::ZERO, SeededEntropy::new(1));
        c.set_deflate(Some(agreed(true, 15)), &DeflateConfig::on());
        c
    };
    let mut fresh = PreparedMessage::new(&Message::text(text));
    client.prepare_compressed(&mut fresh);
    assert!(!fresh.is_compressed());
}
