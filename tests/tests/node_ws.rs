//! permessage-deflate with Node `ws` (`perMessageDeflate`), both ways: our std and smol
//! clients against a `ws` echo server (`peers/ws_echo_server.mjs`), and a `ws` client
//! (`peers/ws_client.mjs`) against our std and smol echo servers and the `sockeye` server on
//! both of its runtimes. Each test checks the extension was agreed (the handshake header
//! each side saw), that messages from 0 B to 1 MiB, whole and fragmented, come back
//! unchanged, and that the bytes on the wire were compressed both ways (each side counts
//! what its socket read).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sockeye::Runtime;
use sockeye_std::{
    Client, ClientOptions, CloseCode, Compression, DeflateConfig, Message, MessageKind, WebSocket,
};
use sockeye_tests::server::{server_config, start_server};
use sockeye_tests::{bounded, echo, payload, spawn_std_deflate_echo_server, test_config, Peer};

/// How long a test may take (a hang guard, not a measurement).
const LIMIT: Duration = Duration::from_secs(60);

/// `len` bytes of log-like text, which compresses well (the same as `ws_client.mjs` sends).
fn log_lines(len: usize) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < len {
        text.push_str(&format!("line {} of the log, status {}\n", i % 97, i % 7));
        i += 1;
    }
    text.truncate(len);
    text
}

/// Starts `ws_echo_server.mjs` and returns it with its URL.
fn ws_server() -> (Peer, String) {
    let server = Peer::node("ws_echo_server.mjs", &[]);
    let line = server
        .line(Duration::from_secs(30))
        .expect("ws_echo_server.mjs did not print its port");
    let port = line.strip_prefix("PORT ").expect("a PORT line").to_string();
    (server, format!("ws://127.0.0.1:{port}/"))
}

/// The bytes the `ws` server's socket has read on this connection so far (its `stats?`).
fn server_wire_in(ws: &mut WebSocket) -> u64 {
    ws.send(Message::text("stats?")).unwrap();
    let stats = ws.recv().unwrap().expect("the stats");
    let stats: Value = serde_json::from_str(stats.as_text().unwrap()).unwrap();
    stats["wire_in"].as_u64().expect("wire_in")
}

#[test]
fn std_client_with_a_ws_server() {
    bounded(LIMIT, || {
        let (server, url) = ws_server();
        let policy = DeflateConfig::on();
        let options = ClientOptions {
            deflate: Some(&policy),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
        assert!(ws.deflate_params().is_some(), "we agreed to deflate");
        ws.send(Message::text("extensions?")).unwrap();
        let answer = ws.recv().unwrap().expect("the server's header");
        assert!(
            answer.as_text().unwrap().starts_with("permessage-deflate"),
            "ws answered {answer:?}"
        );
        let mut sent = 0;
        for len in [0, 1, 125, 126, 1000, 65535, 65536, 70_000, 1 << 20] {
            echo(&mut ws, Message::text(log_lines(len)));
            sent += len;
        }
        echo(&mut ws, Message::binary(log_lines(70_000)));
        echo(&mut ws, payload(200_000, 7, false));
        sent += 270_000;
        // Our fragments, compressed as they go, come back as one message.
        let text = log_lines(200_000);
        for (i, part) in [&text[..1000], &text[1000..100_000], &text[100_000..]]
            .into_iter()
            .enumerate()
        {
            ws.send_fragment(MessageKind::Text, Bytes::from(part.to_string()), i == 2)
                .unwrap();
        }
        assert_eq!(ws.recv().unwrap(), Some(Message::text(text)));
        sent += 200_000;
        // ws' fragments, each compressed (its threshold is 0).
        ws.send(Message::text("fragments:one |two |three")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("one two three")));
        let secret = Message::text(log_lines(5000));
        ws.send_with(secret.clone(), Compression::Never).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(secret));
        let memory = ws.deflate_memory();
        assert!(memory.compressor > 0, "we compressed: {memory:?}");
        assert!(memory.decompressor > 0, "ws compressed: {memory:?}");
        let wire_in = server_wire_in(&mut ws);
        assert!(
            wire_in * 4 < sent as u64,
            "ws read {wire_in} bytes for {sent} bytes of payload"
        );
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        drop(server);
    });
}

#[test]
fn smol_client_with_a_ws_server() {
    bounded(LIMIT, || {
        let (server, url) = ws_server();
        let policy = DeflateConfig::on();
        let options = ClientOptions {
            deflate: Some(&policy),
            ..ClientOptions::default()
        };
        smol::block_on(async {
            let mut ws = sockeye_smol::Client::connect_with(&url, test_config(), options)
                .await
                .expect("connect");
            assert!(ws.deflate_params().is_some(), "we agreed to deflate");
            ws.send(Message::text("extensions?")).await.unwrap();
            let answer = ws.recv().await.unwrap().expect("the server's header");
            assert!(answer.as_text().unwrap().starts_with("permessage-deflate"));
            let mut sent = 0;
            for len in [0, 100, 65536, 70_000, 1 << 20] {
                let message = Message::text(log_lines(len));
                ws.send(message.clone()).await.unwrap();
                let got = ws.recv().await.unwrap();
                assert!(got == Some(message), "the echo of {len} bytes differs");
                sent += len;
            }
            let text = log_lines(150_000);
            ws.send_fragment(
                MessageKind::Text,
                Bytes::from(text[..70_000].to_string()),
                false,
            )
            .await
            .unwrap();
            ws.send_fragment(
                MessageKind::Text,
                Bytes::from(text[70_000..].to_string()),
                true,
            )
            .await
            .unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(Message::text(text)));
            sent += 150_000;
            ws.send(Message::text("fragments:a|b|c")).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(Message::text("abc")));
            let memory = ws.deflate_memory();
            assert!(
                memory.compressor > 0 && memory.decompressor > 0,
                "{memory:?}"
            );
            ws.send(Message::text("stats?")).await.unwrap();
            let stats = ws.recv().await.unwrap().expect("the stats");
            let stats: Value = serde_json::from_str(stats.as_text().unwrap()).unwrap();
            let wire_in = stats["wire_in"].as_u64().unwrap();
            assert!(
                wire_in * 4 < sent as u64,
                "ws read {wire_in} bytes for {sent} bytes of payload"
            );
            ws.close(CloseCode::NORMAL, "").await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), None);
        });
        drop(server);
    });
}

/// Runs `ws_client.mjs MODE URL` to its end and returns its report, after checking what
/// every run must show: it passed, deflate was agreed, the server's messages came
/// compressed, and the close was 1000.
fn ws_client(mode: &str, url: &str) -> Value {
    let client = Peer::node("ws_client.mjs", &[mode, url]);
    let (status, lines, stderr) = client.finish(LIMIT);
    let report = lines.last().map(String::as_str).unwrap_or("{}");
    let report: Value = serde_json::from_str(report)
        .unwrap_or_else(|e| panic!("ws_client.mjs printed {lines:?} ({e}); stderr:\n{stderr}"));
    assert!(
        status.success() && report["ok"] == true,
        "ws_client.mjs: {report}; stderr:\n{stderr}"
    );
    let extensions = report["extensions"].as_str().unwrap();
    assert!(
        extensions.starts_with("permessage-deflate"),
        "our server answered {extensions:?}"
    );
    let (wire_in, payload_in) = (
        report["wire_in"].as_u64().unwrap(),
        report["payload_in"].as_u64().unwrap(),
    );
    assert!(
        wire_in * 4 < payload_in,
        "ws read {wire_in} bytes for {payload_in} bytes of payload"
    );
    assert_eq!(report["close"], 1000);
    report
}

#[test]
fn ws_client_with_our_std_echo_server() {
    bounded(LIMIT, || {
        let server = spawn_std_deflate_echo_server(test_config(), DeflateConfig::on());
        let report = ws_client("echo", &format!("ws://{}/", server.local_addr()));
        assert_eq!(report["messages"], 18);
    });
}

#[test]
fn ws_client_with_our_smol_echo_server() {
    bounded(LIMIT, || {
        let server = sockeye_smol::Server::bind("127.0.0.1:0", test_config())
            .unwrap()
            .deflate(DeflateConfig::on());
        let url = format!("ws://{}/", server.local_addr().unwrap());
        let echo_one = std::thread::spawn(move || {
            smol::block_on(async {
                let mut ws = server.accept().await?.upgrade().await?;
                let agreed = ws.deflate_params().is_some();
                while let Some(message) = ws.recv().await? {
                    ws.send(message).await?;
                }
                Ok::<_, sockeye_smol::Error>((agreed, ws.deflate_memory()))
            })
        });
        let report = ws_client("echo", &url);
        assert_eq!(report["messages"], 18);
        let (agreed, memory) = echo_one.join().unwrap().unwrap();
        assert!(agreed);
        assert_eq!(memory.total(), 0, "freed once closed");
    });
}

/// A `ws` client in plain JSON mode against the `sockeye` server with `--deflate` on
/// `runtime` (and `--deflate-no-context-takeover` if `no_context`, where the server sends
/// each message as the frame it compressed once for every such connection), sending
/// itself direct messages up to 1 MiB.
fn ws_client_with_the_server_on(runtime: Runtime, no_context: bool) {
    bounded(LIMIT, move || {
        let mut config = server_config();
        config.runtime = runtime;
        config.deflate = true;
        config.deflate_no_context_takeover = no_context;
        config.max_frame_bytes = 4 << 20;
        config.max_message_bytes = 4 << 20;
        config.max_queue_bytes = 8 << 20;
        let server = start_server(config);
        let url = format!("ws://{}/ws?user=node", server.local_addr());
        let report = ws_client("sockeye", &url);
        assert_eq!(report["messages"], 13);
        let extensions = report["extensions"].as_str().unwrap();
        assert_eq!(
            extensions.contains("server_no_context_takeover"),
            no_context,
            "{extensions}"
        );
        server.shutdown();
    });
}

#[test]
fn ws_client_with_the_server_on_smol() {
    ws_client_with_the_server_on(Runtime::Smol, false);
}

#[test]
fn ws_client_with_the_server_without_context_takeover() {
    ws_client_with_the_server_on(Runtime::Smol, true);
}

#[test]
fn ws_client_with_the_server_on_threads() {
    ws_client_with_the_server_on(Runtime::Threads, false);
}
