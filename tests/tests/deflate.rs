//! permessage-deflate (RFC 7692) between our own ends: the std and smol runtimes both
//! ways, and the `sockeye` server on both of its runtimes. (Interop with Python
//! `websockets` is in `python_client.rs` and `python_server.rs`.)

use std::time::Duration;

use serde_json::{json, Value};
use sockeye::Runtime;
use sockeye_core::COMPRESSOR_BYTES;
use sockeye_std::{
    Client, ClientOptions, CloseCode, Compression, DeflateConfig, Message, WebSocket,
};
use sockeye_tests::server::{server_config, start_server};
use sockeye_tests::{bounded, echo, spawn_std_deflate_echo_server, test_config};

/// Text that compresses well.
fn compressible(len: usize) -> Message {
    let mut text = "all work and no play makes jack a dull boy; ".repeat(len / 44 + 1);
    text.truncate(len);
    Message::text(text)
}

/// A std client offering `offer` to a std echo server answering by `policy`.
fn std_pair(
    policy: DeflateConfig,
    offer: DeflateConfig,
    body: impl FnOnce(&mut WebSocket) + Send + 'static,
) {
    bounded(Duration::from_secs(30), move || {
        let server = spawn_std_deflate_echo_server(test_config(), policy);
        let url = format!("ws://{}/", server.local_addr());
        let options = ClientOptions {
            deflate: Some(&offer),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
        body(&mut ws);
    })
}

#[test]
fn std_to_std_agrees_and_round_trips() {
    std_pair(DeflateConfig::on(), DeflateConfig::on(), |ws| {
        let ours = *ws.deflate_params().expect("agreed");
        ws.send(Message::text("deflate?")).unwrap();
        let theirs = ws.recv().unwrap().unwrap();
        assert_eq!(theirs.as_text(), Some(format!("{:?}", Some(ours)).as_str()));
        // A message kept uncompressed allocates no compressor; the next one does.
        let secret = compressible(10_000);
        ws.send_with(secret.clone(), Compression::Never).unwrap();
        assert_eq!(ws.deflate_memory().compressor, 0);
        assert_eq!(ws.recv().unwrap(), Some(secret));
        echo(ws, compressible(1 << 20));
        assert_eq!(ws.deflate_memory().compressor, COMPRESSOR_BYTES);
        assert!(ws.deflate_memory().decompressor > 0);
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
    });
}

#[test]
fn no_context_takeover_holds_nothing_between_messages() {
    let mut policy = DeflateConfig::on();
    policy.allow_context_takeover = false;
    policy.keep_compressor = false;
    policy.max_window_bits = 9;
    std_pair(policy, DeflateConfig::on(), |ws| {
        let p = *ws.deflate_params().unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.client_max_window_bits, 9);
        for len in [100, 5000, 300_000] {
            echo(ws, compressible(len));
            assert_eq!(ws.deflate_memory().total(), 0, "after a message of {len}");
        }
    });
}

#[test]
fn smol_client_to_std_server_and_std_client_to_smol_server() {
    bounded(Duration::from_secs(30), || {
        let policy = DeflateConfig::on();
        let server = spawn_std_deflate_echo_server(test_config(), policy.clone());
        let url = format!("ws://{}/", server.local_addr());
        let options = ClientOptions {
            deflate: Some(&policy),
            ..ClientOptions::default()
        };
        smol::block_on(async {
            let mut ws = sockeye_smol::Client::connect_with(&url, test_config(), options)
                .await
                .expect("connect");
            assert!(ws.deflate_params().is_some());
            let message = compressible(200_000);
            ws.send(message.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(message));
            assert!(ws.deflate_memory().compressor > 0);
            let secret = compressible(1000);
            ws.send_with(secret.clone(), Compression::Never)
                .await
                .unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(secret));
        });

        let smol_server = sockeye_smol::Server::bind("127.0.0.1:0", test_config())
            .unwrap()
            .deflate(policy.clone());
        let url = format!("ws://{}/", smol_server.local_addr().unwrap());
        let echo_one = std::thread::spawn(move || {
            smol::block_on(async {
                let mut ws = smol_server.accept().await?.upgrade().await?;
                let agreed = ws.deflate_params().copied();
                while let Some(message) = ws.recv().await? {
                    ws.send(message).await?;
                }
                Ok::<_, sockeye_smol::Error>(agreed)
            })
        });
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
        let ours = ws.deflate_params().copied();
        assert!(ours.is_some());
        echo(&mut ws, compressible(300_000));
        assert!(
            ws.deflate_memory().decompressor > 0,
            "the echo came compressed"
        );
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(echo_one.join().unwrap().unwrap(), ours);
    });
}

/// The `sockeye` server with `--deflate` on `runtime`: a plain-mode client offering it
/// gets it, and a long room message comes back compressed.
fn server_compresses_on(runtime: Runtime) {
    bounded(Duration::from_secs(30), move || {
        let mut config = server_config();
        config.runtime = runtime;
        config.deflate = true;
        let server = start_server(config);
        let url = format!("ws://{}/ws?user=kim", server.local_addr());
        let policy = DeflateConfig::on();
        let options = ClientOptions {
            deflate: Some(&policy),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
        assert!(ws.deflate_params().is_some());
        let welcome = ws.recv().unwrap().expect("the welcome");
        let welcome: Value = serde_json::from_str(welcome.as_text().unwrap()).unwrap();
        assert_eq!(welcome["type"], "welcome");
        let words = "the quick brown fox jumps over the lazy dog ".repeat(200);
        let command = json!({"type": "message", "to": "kim", "data": words});
        ws.send(Message::text(command.to_string())).unwrap();
        let got = ws.recv().unwrap().expect("the direct message");
        let got: Value = serde_json::from_str(got.as_text().unwrap()).unwrap();
        assert_eq!(got["data"], words);
        assert!(ws.deflate_memory().decompressor > 0, "it came compressed");
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        server.shutdown();
    });
}

#[test]
fn the_server_compresses_on_smol() {
    server_compresses_on(Runtime::Smol);
}

#[test]
fn the_server_compresses_on_threads() {
    server_compresses_on(Runtime::Threads);
}
