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
