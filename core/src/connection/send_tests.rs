//! The copying and borrowing send paths (`send_slice`, `send_parts`, `transmit_chunk`
//! and `advance_transmit`) against `send` and `poll_transmit`: the same bytes on the wire,
//! whatever the payload sizes, the write sizes, or how the two ways of draining mix.

use alloc::vec::Vec;
use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::SeededEntropy;

fn connection(side: Side) -> Connection {
    let config = Config::default();
    match side {
        Side::Server => Connection::server(config, Instant::ZERO),
        // The same seed on both runs: the same masking keys, drawn in the same order.
        Side::Client => Connection::client(config, Instant::ZERO, SeededEntropy::new(7)),
    }
}

/// What `send` and `poll_transmit` put on the wire for these messages.
fn reference(side: Side, messages: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut conn = connection(side);
    let mut wire = Vec::new();
    for (_, payload) in messages {
        conn.send(Instant::ZERO, Message::binary(payload.clone()))
            .unwrap();
        while let Some(chunk) = conn.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
    }
    wire
}

/// Drains by `transmit_chunk` in writes of the given sizes, now and then by
/// `poll_transmit`.
fn drain(conn: &mut Connection, writes: &mut impl Iterator<Item = usize>, wire: &mut Vec<u8>) {
    loop {
        let n = writes.next().unwrap_or(1);
        if n == 0 {
            let Some(chunk) = conn.poll_transmit() else {
                break;
            };
            wire.extend_from_slice(&chunk);
            continue;
        }
        let chunk = conn.transmit_chunk();
        if chunk.is_empty() {
            break;
        }
        let n = n.min(chunk.len());
        wire.extend_from_slice(&chunk[..n]);
        conn.advance_transmit(n);
    }
}

fn arb_messages() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(any::<u8>(), 8000..8300),
        proptest::collection::vec(any::<u8>(), 20_000..20_100),
    ];
    proptest::collection::vec((any::<bool>(), payload), 1..10)
}

proptest! {
    #[test]
    fn borrowing_send_paths_put_the_same_bytes_on_the_wire(
        server in any::<bool>(),
        messages in arb_messages(),
        writes in proptest::collection::vec(0usize..3000, 1..20),
        drain_every in 1usize..4,
    ) {
        let side = if server { Side::Server } else { Side::Client };
        let mut conn = connection(side);
        let mut writes = writes.into_iter().cycle();
        let mut wire = Vec::new();
        for (i, (by_slice, payload)) in messages.iter().enumerate() {
            if *by_slice && i % 3 == 1 {
                let (head, rest) = payload.split_at(payload.len() / 3);
                conn.send_parts(Instant::ZERO, MessageKind::Binary, head, rest).unwrap();
            } else if *by_slice && i % 3 == 2 {
                let prepared = PreparedMessage::new(&Message::binary(payload.clone()));
                conn.send_prepared(Instant::ZERO, &prepared).unwrap();
            } else if *by_slice {
                conn.send_slice(Instant::ZERO, MessageKind::Binary, payload).unwrap();
            } else {
                conn.send(Instant::ZERO, Message::Binary(Bytes::from(payload.clone()))).unwrap();
            }
            if i % drain_every == 0 {
                drain(&mut conn, &mut writes, &mut wire);
                prop_assert_eq!(conn.queued_bytes(), 0);
            }
        }
        drain(&mut conn, &mut writes, &mut wire);
        prop_assert_eq!(conn.queued_bytes(), 0);
        prop_assert!(conn.transmit_chunk().is_empty());
        prop_assert_eq!(wire, reference(side, &messages));
    }
}

#[test]
fn a_prepared_message_is_one_buffer_shared_by_every_server_connection() {
    let prepared = PreparedMessage::new(&Message::text("to the whole room"));
    let mut frames = Vec::new();
    for _ in 0..3 {
        let mut conn = connection(Side::Server);
        conn.send_prepared(Instant::ZERO, &prepared).unwrap();
        let chunk = conn.poll_transmit().unwrap();
        assert_eq!(conn.poll_transmit(), None);
        frames.push(chunk);
    }
    for chunk in &frames {
        assert_eq!(chunk.as_ptr(), prepared.frame().as_ptr(), "not copied");
        assert_eq!(&chunk[..2], &[0x81, 17]);
        assert_eq!(&chunk[2..], b"to the whole room");
    }
    // A client masks its frames, so it frames the payload itself.
    let mut client = connection(Side::Client);
    client.send_prepared(Instant::ZERO, &prepared).unwrap();
    let chunk = client.poll_transmit().unwrap();
    assert_eq!(chunk[0..2], [0x81, 0x80 | 17]);
    assert_eq!(chunk.len(), 2 + 4 + 17);
}

#[test]
fn send_prepared_answers_like_send() {
    let prepared = PreparedMessage::new(&Message::text("b"));
    let mut conn = connection(Side::Server);
    conn.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"a"),
        false,
    )
    .unwrap();
    assert_eq!(
        conn.send_prepared(Instant::ZERO, &prepared),
        Err(SendError::FragmentOrder)
    );
    conn.close(Instant::ZERO, CloseCode::NORMAL, "").unwrap();
    assert_eq!(
        conn.send_prepared(Instant::ZERO, &prepared),
        Err(SendError::Closed)
    );
}

#[test]
fn send_slice_answers_like_send() {
    let mut conn = connection(Side::Server);
    conn.send_fragment(
        Instant::ZERO,
        MessageKind::Text,
        Bytes::from_static(b"a"),
        false,
    )
    .unwrap();
    assert_eq!(
        conn.send_slice(Instant::ZERO, MessageKind::Text, b"b"),
        Err(SendError::FragmentOrder)
    );
    conn.close(Instant::ZERO, CloseCode::NORMAL, "").unwrap();
    assert_eq!(
        conn.send_slice(Instant::ZERO, MessageKind::Binary, b"c"),
        Err(SendError::Closed)
    );
}

#[test]
fn releasing_idle_buffers_changes_nothing_on_the_wire() {
    let messages: Vec<(bool, Vec<u8>)> = (0..6u8)
        .map(|i| (false, alloc::vec![i; 100 * usize::from(i)]))
        .collect();
    let mut conn = connection(Side::Client);
    let mut wire = Vec::new();
    for (_, payload) in &messages {
        conn.release_idle_buffers();
        conn.send(Instant::ZERO, Message::binary(payload.clone()))
            .unwrap();
        conn.release_idle_buffers(); // queued bytes wait: the buffer must be kept
        while let Some(chunk) = conn.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
        conn.release_idle_buffers();
        assert_eq!(conn.coalesce.capacity(), 0);
    }
    assert_eq!(wire, reference(Side::Client, &messages));
}
