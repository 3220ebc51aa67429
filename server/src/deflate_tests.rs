//! permessage-deflate through the whole layer: the 101 answers the offer by
//! `Config::deflate`, messages both ways are compressed and arrive whole, `/metrics`
//! counts the connection and what its codec holds.

use sockeye_core::handshake::{ClientRequest, DeflateConfig};
use sockeye_core::{ClientHandshake, Connection, Event, Instant, Message, SeededEntropy};

use crate::{Action, Config, ConnId, Server};

/// Moves what the layer has for `conn` into `client` (or, before the 101, returns it).
fn pump(server: &mut Server, conn: ConnId) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(action) = server.poll_action() {
        if let Action::Wake(c) = action {
            while let Some(chunk) = server.poll_transmit(c) {
                if c == conn {
                    out.extend_from_slice(&chunk);
                }
            }
        }
    }
    out
}

/// A server with `policy`, and a client of user `kim` that offered `offer`: the
/// client's connection, its id in the layer, and the 101's extension header.
fn connect(
    policy: DeflateConfig,
    offer: &DeflateConfig,
) -> (Server, ConnId, Connection, Option<String>) {
    let now = Instant::ZERO;
    let config = Config {
        deflate: policy,
        ..Config::default()
    };
    let mut server = Server::new(config, now, 0, Box::new(SeededEntropy::new(1)), None);
    let ws_config = sockeye_core::Config::default();
    let request = ClientRequest {
        host: "x",
        path: "/ws?user=kim",
        protocols: &[],
        origin: None,
        headers: &[],
    };
    let mut entropy = SeededEntropy::new(2);
    let mut handshake =
        ClientHandshake::with_deflate(&ws_config, now, request, &mut entropy, offer);
    let conn = server.handle_accept(now);
    server.handle_bytes(now, conn, &handshake.poll_transmit().unwrap());
    let answer = pump(&mut server, conn);
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let response = handshake
        .handle_bytes(now, &answer[..end])
        .unwrap()
        .unwrap();
    let extension = response
        .header("Sec-WebSocket-Extensions")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let mut client = response.into_connection(now, ws_config, SeededEntropy::new(3));
    client.handle_bytes(now, &answer[end..]);
    (server, conn, client, extension)
}

/// Sends `text` from the client and returns what the client then receives.
fn round(server: &mut Server, conn: ConnId, client: &mut Connection, text: &str) -> Vec<Event> {
    let now = Instant::ZERO;
    client.send(now, Message::text(text.to_string())).unwrap();
    while let Some(bytes) = client.poll_transmit() {
        server.handle_bytes(now, conn, &bytes);
    }
    client.handle_bytes(now, &pump(server, conn));
    std::iter::from_fn(|| client.poll_event()).collect()
}

#[test]
fn an_offer_is_answered_and_messages_flow_compressed() {
    let (mut server, conn, mut client, extension) =
        connect(DeflateConfig::on(), &DeflateConfig::on());
    assert_eq!(extension.as_deref(), Some("permessage-deflate"));
    assert!(client.deflate_params().is_some());
    let welcome = std::iter::from_fn(|| client.poll_event()).collect::<Vec<_>>();
    assert_eq!(
        welcome,
        [Event::Message(Message::text(
            r#"{"type":"welcome","user":"kim"}"#
        ))]
    );
    // A direct message to herself, long and compressible: compressed both ways.
    let words = "the quick brown fox jumps over the lazy dog ".repeat(100);
    let command = format!(r#"{{"type":"message","to":"kim","data":"{words}"}}"#);
    let events = round(&mut server, conn, &mut client, &command);
    let [Event::Message(Message::Text(got))] = &events[..] else {
        panic!("expected one message, got {events:?}");
    };
    assert!(std::str::from_utf8(got).unwrap().contains(&words));
    let memory = client.deflate_memory();
    assert!(
        memory.compressor > 0 && memory.decompressor > 0,
        "{memory:?}"
    );
    let metrics = server.metrics_text();
    assert!(
        metrics.contains("sockeye_deflate_connections 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sockeye_deflate_memory_bytes 0\n"),
        "{metrics}"
    );
}

#[test]
fn the_policy_decides() {
    // Off: the offer is declined, nothing is compressed.
    let (server, _, client, extension) = connect(DeflateConfig::OFF, &DeflateConfig::on());
    assert_eq!(extension, None);
    assert!(client.deflate_params().is_none());
    assert!(server
        .metrics_text()
        .contains("sockeye_deflate_connections 0\n"));
    // Neither side keeps a context: both resets are in the answer.
    let mut policy = DeflateConfig::on();
    policy.allow_context_takeover = false;
    policy.keep_compressor = false;
    policy.max_window_bits = 10;
    let (_, _, client, extension) = connect(policy, &DeflateConfig::on());
    assert_eq!(
        extension.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             client_max_window_bits=10"
        )
    );
    let p = client.deflate_params().unwrap();
    assert_eq!(p.client_max_window_bits, 10);
}

/// A client of `user` on `server` that offered `offer`, its welcome read.
fn join_server(server: &mut Server, user: &str, offer: &DeflateConfig) -> (ConnId, Connection) {
    let now = Instant::ZERO;
    let ws_config = sockeye_core::Config::default();
    let path = format!("/ws?user={user}");
    let request = ClientRequest {
        host: "x",
        path: &path,
        protocols: &[],
        origin: None,
        headers: &[],
    };
    let mut entropy = SeededEntropy::new(7);
    let mut handshake =
        ClientHandshake::with_deflate(&ws_config, now, request, &mut entropy, offer);
    let conn = server.handle_accept(now);
    server.handle_bytes(now, conn, &handshake.poll_transmit().unwrap());
    let answer = pump(server, conn);
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let response = handshake
        .handle_bytes(now, &answer[..end])
        .unwrap()
        .unwrap();
    let mut client = response.into_connection(now, ws_config, SeededEntropy::new(8));
    client.handle_bytes(now, &answer[end..]);
    while client.poll_event().is_some() {}
    (conn, client)
}

#[test]
fn a_room_message_is_compressed_once_for_members_without_context() {
    // The server keeps no compression context: every member gets the same compressed
    // frame (compressed once, in the fan-out), and each inflates it.
    let mut policy = DeflateConfig::on();
    policy.allow_context_takeover = false;
    policy.keep_compressor = false;
    let config = Config {
        deflate: policy,
        ..Config::default()
    };
    let now = Instant::ZERO;
    let mut server = Server::new(config, now, 0, Box::new(SeededEntropy::new(1)), None);
    let members: Vec<(ConnId, Connection)> = ["ann", "bob", "cat"]
        .into_iter()
        .map(|user| {
            let (conn, mut client) = join_server(&mut server, user, &DeflateConfig::on());
            client
                .send(now, Message::text(r#"{"type":"join","room":"lobby"}"#))
                .unwrap();
            while let Some(bytes) = client.poll_transmit() {
                server.handle_bytes(now, conn, &bytes);
            }
            (conn, client)
        })
        .collect();
    // Drain joins and presence.
    let mut members: Vec<(ConnId, Connection)> = members
        .into_iter()
        .map(|(conn, mut client)| {
            client.handle_bytes(now, &pump(&mut server, conn));
            while client.poll_event().is_some() {}
            (conn, client)
        })
        .collect();
    let words = "the quick brown fox jumps over the lazy dog ".repeat(50);
    let command = format!(r#"{{"type":"message","room":"lobby","data":"{words}"}}"#);
    let (ann, client) = &mut members[0];
    client.send(now, Message::text(command)).unwrap();
    while let Some(bytes) = client.poll_transmit() {
        server.handle_bytes(now, *ann, &bytes);
    }
    // pump() moves only one connection's bytes: collect each member's from one drain.
    // Also where each member's largest chunk lives: one buffer for all is one encoding.
    let mut wires: Vec<Vec<u8>> = vec![Vec::new(); members.len()];
    let mut largest: Vec<(usize, *const u8)> = vec![(0, std::ptr::null()); members.len()];
    while let Some(action) = server.poll_action() {
        if let Action::Wake(c) = action {
            while let Some(chunk) = server.poll_transmit(c) {
                if let Some(i) = members.iter().position(|(conn, _)| *conn == c) {
                    wires[i].extend_from_slice(&chunk);
                    if chunk.len() > largest[i].0 {
                        largest[i] = (chunk.len(), chunk.as_ptr());
                    }
                }
            }
        }
    }
    assert!(
        wires.iter().all(|w| *w == wires[0]),
        "the same bytes to all"
    );
    assert!(
        largest.iter().all(|l| *l == largest[0]),
        "one shared compressed frame: {largest:?}"
    );
    assert_eq!(wires[0][0] & 0x40, 0x40, "compressed (RSV1)");
    assert!(wires[0].len() < words.len() / 4, "{} bytes", wires[0].len());
    for ((_, client), wire) in members.iter_mut().zip(&wires) {
        client.handle_bytes(now, wire);
        let events = std::iter::from_fn(|| client.poll_event()).collect::<Vec<_>>();
        let [Event::Message(Message::Text(got))] = &events[..] else {
            panic!("expected the room message, got {events:?}");
        };
        assert!(std::str::from_utf8(got).unwrap().contains(&words));
    }
}
