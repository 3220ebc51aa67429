//! Reliable delivery over real sockets: a `ReliableClient` and a `ReliableServer` talk
//! through a proxy that cuts the TCP connection at seeded random byte offsets. Every
//! message must arrive exactly once and in order, in both directions, and the two
//! examples must show the same from outside. The async client of `sockeye-smol` runs the
//! same cuts against the std server.
//!
//! `SOCKEYE_SEED=<n>` replays a seed; each test prints the seed it used.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockeye_core::SeededEntropy;
use sockeye_std::{
    Error, ReconnectConfig, ReliableClient, ReliableError, ReliableOptions, ReliableServer,
    SessionConfig, SessionEvent, SessionId, SessionRegistry,
};
use sockeye_tests::{bounded, test_config, test_seed, CuttingProxy, Peer};

const MESSAGES: u64 = 10_000;
const CUTS: usize = 20;
const DEADLINE: Duration = Duration::from_secs(60);

/// Sessions for a run with twenty cuts in a fraction of a second.
///
/// Every connection may transmit a message once before it is cut (no retransmission
/// timer fires in so short a run), so a message can use up to `CUTS + 1` of its
/// lifetime tries. With the default `resend_max_tries` (8) the session would rightly
/// give a message up after eight cut transmissions (a dead letter, `docs/PROTOCOL.md`
/// §7); this test is about cuts, not about giving up, so it allows more tries than cuts.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.resend_max_tries = 2 * CUTS as u32 + 2;
    config
}

/// Quick reconnects, so twenty cuts cost milliseconds rather than seconds.
fn client_options() -> ReliableOptions {
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(2);
    reconnect.max_delay = Duration::from_millis(50);
    ReliableOptions {
        config: test_config(),
        reconnect,
        session: session_config(),
        ..ReliableOptions::default()
    }
}

/// The payload of message `i`: its number, padded so messages are not all tiny.
fn payload(i: u64) -> String {
    format!("message {i:06}")
}

/// `CUTS` offsets, seeded, spread over the bytes a run certainly forwards: each message
/// costs at least its payload plus 10 bytes of envelope and frame header.
fn cut_offsets(seed: u64) -> Vec<u64> {
    let floor = MESSAGES * (payload(0).len() as u64 + 10) * 9 / 10;
    let mut rng = SeededEntropy::new(seed);
    (0..CUTS).map(|_| 500 + rng.next_u64() % floor).collect()
}

fn server() -> (ReliableServer, SessionRegistry) {
    let server =
        ReliableServer::bind("127.0.0.1:0", test_config(), session_config()).expect("bind");
    let registry = server.registry();
    (server, registry)
}

#[test]
fn client_to_server_survives_twenty_cuts() {
    let seed = test_seed();
    println!("client_to_server_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let started = Instant::now();
        let (server, registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));

        let receiver = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while (got.len() as u64) < MESSAGES {
                match registry.next_event(Some(DEADLINE)) {
                    Some((_, SessionEvent::Delivered { payload, .. })) => got.push(payload),
                    Some((_, SessionEvent::DeadLetter { seq, .. })) => {
                        panic!("server dead-lettered {seq}")
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            got
        });

        let url = format!("ws://{}/", proxy.addr());
        let mut client = ReliableClient::connect(&url, client_options()).expect("connect");
        let mut next = 0;
        while next < MESSAGES {
            match client.send(Bytes::from(payload(next)), true) {
                Ok(_) => next += 1,
                Err(Error::Reliable(e)) if e.is_full() => {
                    expect_no_dead_letter(client.next_event(Some(Duration::from_millis(5))));
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        assert!(client.wait_acked(Some(DEADLINE)).unwrap(), "not all acked");
        while let Some(event) = client.next_event(Some(Duration::ZERO)).unwrap() {
            expect_no_dead_letter(Ok(Some(event)));
        }
        let got = receiver.join().unwrap();
        assert_in_order(&got);
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
        println!(
            "{MESSAGES} messages over {} connections ({} through the proxy), {} cuts, {:?}",
            client.connections(),
            proxy.connections(),
            proxy.cuts_done(),
            started.elapsed()
        );
    });
}

#[test]
fn server_to_client_survives_twenty_cuts() {
    let seed = test_seed();
    println!("server_to_client_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let started = Instant::now();
        let (server, registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));

        let url = format!("ws://{}/", proxy.addr());
        let mut client = ReliableClient::connect(&url, client_options()).expect("connect");
        let id = client.session_id().expect("established");

        let sender = std::thread::spawn(move || send_all(&registry, id));
        let mut got = Vec::with_capacity(MESSAGES as usize);
        while (got.len() as u64) < MESSAGES {
            match client
                .next_event(Some(Duration::from_millis(100)))
                .expect("next_event")
            {
                Some(SessionEvent::Delivered { payload, .. }) => got.push(payload),
                Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
                Some(_) => {}
                // A sender that stopped early (it panicked) sends no more.
                None if sender.is_finished() => break,
                None => {}
            }
        }
        // Let the last acks reach the server so its window empties.
        let registry = sender.join().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while registry.unacked_messages(id) != Some(0) && Instant::now() < until {
            let _ = client.next_event(Some(Duration::from_millis(10)));
        }
        assert_eq!(
            registry.unacked_messages(id),
            Some(0),
            "server still holds messages"
        );
        assert_in_order(&got);
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
        println!(
            "{MESSAGES} messages over {} connections, {} cuts, {:?}",
            client.connections(),
            proxy.cuts_done(),
            started.elapsed()
        );
    });
}

#[test]
fn smol_client_to_std_server_survives_twenty_cuts() {
    let seed = test_seed();
    println!("smol_client_to_std_server_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let (server, registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));
        let receiver = std::thread::spawn(move || receive_all(&registry));
        let url = format!("ws://{}/", proxy.addr());
        let connections = smol::block_on(async {
            let mut client = sockeye_smol::ReliableClient::connect(&url, client_options())
                .await
                .expect("connect");
            let mut next = 0;
            while next < MESSAGES {
                match client.send(Bytes::from(payload(next)), true) {
                    Ok(_) => next += 1,
                    Err(Error::Reliable(e)) if e.is_full() => {
                        let event = client.next_event(Some(Duration::from_millis(5))).await;
                        expect_no_dead_letter(event);
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
            assert!(
                client.wait_acked(Some(DEADLINE)).await.unwrap(),
                "not all acked"
            );
            while let Some(event) = client.next_event(Some(Duration::ZERO)).await.unwrap() {
                expect_no_dead_letter(Ok(Some(event)));
            }
            client.connections()
        });
        assert_in_order(&receiver.join().unwrap());
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
        println!("{MESSAGES} messages over {connections} connections, {CUTS} cuts");
    });
}

#[test]
fn std_server_to_smol_client_survives_twenty_cuts() {
    let seed = test_seed();
    println!("std_server_to_smol_client_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let (server, registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));
        let url = format!("ws://{}/", proxy.addr());
        smol::block_on(async {
            let mut client = sockeye_smol::ReliableClient::connect(&url, client_options())
                .await
                .expect("connect");
            let id = client.session_id().expect("established");
            let sender = std::thread::spawn(move || send_all(&registry, id));
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while (got.len() as u64) < MESSAGES {
                let event = client.next_event(Some(Duration::from_millis(100))).await;
                match event.expect("next_event") {
                    Some(SessionEvent::Delivered { payload, .. }) => got.push(payload),
                    Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
                    Some(_) => {}
                    None if sender.is_finished() && got.len() as u64 == MESSAGES => break,
                    None => {}
                }
            }
            let registry = sender.join().unwrap();
            // Let the last acks reach the server so its window empties.
            while registry.unacked_messages(id) != Some(0) {
                let _ = client.next_event(Some(Duration::from_millis(10))).await;
            }
            assert_in_order(&got);
        });
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
    });
}

/// A `sockeye-smol` reliable server on its own thread: its address and registry.
fn smol_server() -> (SocketAddr, sockeye_smol::SessionRegistry) {
    let server = sockeye_smol::Server::bind("127.0.0.1:0", test_config()).unwrap();
    let addr = server.local_addr().unwrap();
    let registry = sockeye_smol::SessionRegistry::new(session_config()).unwrap();
    let accepting = registry.clone();
    std::thread::spawn(move || {
        smol::block_on(async {
            while let Ok(incoming) = server.accept().await {
                let registry = accepting.clone();
                smol::spawn(async move {
                    if let Ok(sockeye_smol::Upgrade::Reliable(conn)) =
                        registry.upgrade(incoming).await
                    {
                        let _ = conn.run().await;
                    }
                })
                .detach();
            }
        })
    });
    (addr, registry)
}

#[test]
fn std_client_to_smol_server_survives_twenty_cuts() {
    let seed = test_seed();
    println!("std_client_to_smol_server_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let (addr, registry) = smol_server();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));
        let receiver = std::thread::spawn(move || {
            smol::block_on(async {
                let mut got = Vec::with_capacity(MESSAGES as usize);
                while (got.len() as u64) < MESSAGES {
                    match registry.next_event(Some(DEADLINE)).await {
                        Some((_, SessionEvent::Delivered { payload, .. })) => got.push(payload),
                        Some((_, SessionEvent::DeadLetter { seq, .. })) => {
                            panic!("server dead-lettered {seq}")
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                got
            })
        });
        let url = format!("ws://{}/", proxy.addr());
        let mut client = ReliableClient::connect(&url, client_options()).expect("connect");
        let mut next = 0;
        while next < MESSAGES {
            match client.send(Bytes::from(payload(next)), true) {
                Ok(_) => next += 1,
                Err(Error::Reliable(e)) if e.is_full() => {
                    expect_no_dead_letter(client.next_event(Some(Duration::from_millis(5))));
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        assert!(client.wait_acked(Some(DEADLINE)).unwrap(), "not all acked");
        assert_in_order(&receiver.join().unwrap());
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
    });
}

#[test]
fn smol_server_to_smol_client_survives_twenty_cuts() {
    let seed = test_seed();
    println!("smol_server_to_smol_client_survives_twenty_cuts: SOCKEYE_SEED={seed}");
    bounded(DEADLINE, move || {
        let (addr, registry) = smol_server();
        let proxy = CuttingProxy::start(addr, cut_offsets(seed));
        let url = format!("ws://{}/", proxy.addr());
        smol::block_on(async {
            let mut client = sockeye_smol::ReliableClient::connect(&url, client_options())
                .await
                .expect("connect");
            let id = client.session_id().expect("established");
            let sender = {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    smol::block_on(async {
                        let mut next = 0;
                        while next < MESSAGES {
                            match registry.send(id, Bytes::from(payload(next)), true) {
                                Ok(_) => next += 1,
                                Err(Error::Reliable(e)) if e.is_full() => {
                                    if let Some((_, SessionEvent::DeadLetter { seq, .. })) =
                                        registry.next_event(Some(Duration::from_millis(5))).await
                                    {
                                        panic!("server dead-lettered {seq}");
                                    }
                                }
                                Err(e) => panic!("server send: {e}"),
                            }
                        }
                    })
                })
            };
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while (got.len() as u64) < MESSAGES {
                let event = client.next_event(Some(Duration::from_millis(100))).await;
                match event.expect("next_event") {
                    Some(SessionEvent::Delivered { payload, .. }) => got.push(payload),
                    Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
                    _ => {}
                }
            }
            sender.join().unwrap();
            while registry.unacked_messages(id) != Some(0) {
                let _ = client.next_event(Some(Duration::from_millis(10))).await;
            }
            assert_in_order(&got);
        });
        assert_eq!(proxy.cuts_done(), CUTS, "not every cut happened");
    });
}

/// The server application's side of a client-to-server run: every delivered payload.
fn receive_all(registry: &SessionRegistry) -> Vec<Bytes> {
    let mut got = Vec::with_capacity(MESSAGES as usize);
    while (got.len() as u64) < MESSAGES {
        match registry.next_event(Some(DEADLINE)) {
            Some((_, SessionEvent::Delivered { payload, .. })) => got.push(payload),
            Some((_, SessionEvent::DeadLetter { seq, .. })) => panic!("server dead-lettered {seq}"),
            Some(_) => {}
            None => break,
        }
    }
    got
}

/// The server application sends every message to session `id`, waiting on
/// backpressure; returns the registry when all are queued.
fn send_all(registry: &SessionRegistry, id: SessionId) -> SessionRegistry {
    let mut next = 0;
    while next < MESSAGES {
        match registry.send(id, Bytes::from(payload(next)), true) {
            Ok(_) => next += 1,
            Err(Error::Reliable(e)) if e.is_full() => {
                if let Some((_, SessionEvent::DeadLetter { seq, reason, .. })) =
                    registry.next_event(Some(Duration::from_millis(5)))
                {
                    panic!("server dead-lettered {seq}: {reason}");
                }
            }
            Err(e) => panic!("server send: {e}"),
        }
    }
    registry.clone()
}

fn expect_no_dead_letter(event: Result<Option<SessionEvent>, Error>) {
    match event.expect("next_event") {
        Some(SessionEvent::DeadLetter { seq, reason, .. }) => panic!("dead letter {seq}: {reason}"),
        Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
        _ => {}
    }
}

fn assert_in_order(got: &[Bytes]) {
    assert_eq!(got.len() as u64, MESSAGES, "wrong number delivered");
    for (i, p) in got.iter().enumerate() {
        assert!(
            p[..] == *payload(i as u64).as_bytes(),
            "position {i} holds {:?}",
            String::from_utf8_lossy(p)
        );
    }
}

/// Builds the two examples (release, as the issue runs them) and returns their folder.
fn examples_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "sockeye-std",
            "-p",
            "sockeye-smol",
        ])
        .args(["--example", "reliable_sink", "--example", "reliable_send"])
        .args([
            "--example",
            "smol_reliable_sink",
            "--example",
            "smol_reliable_send",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the examples failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("release").join("examples")
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn examples_deliver_everything_through_a_cutting_proxy() {
    examples_through_a_cutting_proxy("reliable_send", "reliable_sink");
}

#[test]
fn smol_examples_talk_to_std_examples_through_a_cutting_proxy() {
    examples_through_a_cutting_proxy("smol_reliable_send", "reliable_sink");
    examples_through_a_cutting_proxy("reliable_send", "smol_reliable_sink");
}

/// `send` sends 0..N to `sink` through a proxy that cuts four times: the sink prints
/// every number once, in order, and `send` exits 0.
fn examples_through_a_cutting_proxy(send: &'static str, sink: &'static str) {
    const N: u64 = 2_000;
    let seed = test_seed();
    println!("{send} -> {sink} through a cutting proxy: SOCKEYE_SEED={seed}");
    // Building may take a while the first time; the run itself is bounded below.
    let dir = examples_dir();
    bounded(DEADLINE, move || {
        let addr = free_port();
        let sink_peer = Peer::spawn({
            let mut c = Command::new(dir.join(sink));
            c.arg(addr.to_string());
            c
        });
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < until, "{sink} did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        // A few cuts spread over the first half of the traffic (at least ~20 bytes a message).
        let mut rng = SeededEntropy::new(seed);
        let cuts = (0..4).map(|_| 300 + rng.next_u64() % (N * 10)).collect();
        let proxy = CuttingProxy::start(addr, cuts);
        let sender = Peer::spawn({
            let mut c = Command::new(dir.join(send));
            c.arg(format!("ws://{}", proxy.addr())).arg(N.to_string());
            c
        });
        let (status, _, stderr) = sender.finish(Duration::from_secs(50));
        assert!(status.success(), "{send} failed: {stderr}");
        let mut lines = Vec::new();
        while (lines.len() as u64) < N {
            match sink_peer.line(Duration::from_secs(5)) {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "sink printed {} lines",
            lines.len()
        );
        assert!(lines == expected, "sink output out of order or duplicated");
        // reliable_send exited after its closing handshake, so everything it sent has
        // reached the sink: whatever the sink printed beyond N lines is a duplicate.
        let extra = sink_peer.kill_and_rest();
        assert!(extra.is_empty(), "extra lines: {extra:?}");
        assert_eq!(proxy.cuts_done(), 4, "not every cut happened");
        println!(
            "{N} messages, {} connections: {stderr}",
            proxy.connections()
        );
    });
}

#[test]
fn expired_sessions_dead_letters_reach_the_server_application() {
    bounded(DEADLINE, || {
        let mut config = session_config();
        config.session_expiry = Duration::from_millis(200);
        let server = ReliableServer::bind("127.0.0.1:0", test_config(), config).unwrap();
        let registry = server.registry();
        let url = format!("ws://{}/", server.local_addr().unwrap());
        let _accepting = server.spawn().unwrap();
        let client = ReliableClient::connect(&url, client_options()).expect("connect");
        let id = client.session_id().unwrap();
        client.close().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while registry.is_connected(id) {
            assert!(Instant::now() < until, "the server never saw the close");
            std::thread::sleep(Duration::from_millis(5));
        }
        for text in ["a", "b", "c"] {
            registry.send(id, Bytes::from(text), true).unwrap();
        }
        let mut dead = Vec::new();
        let mut lost = false;
        while !lost {
            match registry.next_event(Some(Duration::from_secs(10))) {
                Some((
                    from,
                    SessionEvent::DeadLetter {
                        payload,
                        reason,
                        possibly_delivered,
                        ..
                    },
                )) => {
                    assert_eq!(from, id);
                    assert_eq!(reason, sockeye_std::DeadLetterReason::SessionLost);
                    assert!(!possibly_delivered, "never transmitted, so certainly lost");
                    dead.push(payload);
                }
                Some((from, SessionEvent::SessionLost { .. })) => {
                    assert_eq!(from, id);
                    lost = true;
                }
                Some(_) => {}
                None => panic!("no expiry within 10 s"),
            }
        }
        assert_eq!(
            dead,
            ["a", "b", "c"].map(|s| Bytes::from_static(s.as_bytes()))
        );
        assert!(matches!(
            registry.send(id, Bytes::from_static(b"late"), true),
            Err(Error::Reliable(ReliableError::UnknownSession))
        ));
    });
}

#[test]
fn upgrade_answers_400_to_a_malformed_resume_and_1008_to_plain_clients() {
    use std::io::{Read, Write};
    bounded(DEADLINE, || {
        let (server, _registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();

        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: sockeye.v1\r\nSockeye-Resume: not-a-resume\r\n\r\n",
        )
        .unwrap();
        let mut answer = String::new();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = tcp.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "answered {answer:?}");

        let mut ws = sockeye_std::Client::connect(&format!("ws://{addr}/"), test_config()).unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(
            ws.close_info().unwrap().code,
            sockeye_std::CloseCode::POLICY_VIOLATION
        );
    });
}

#[test]
fn client_gives_up_after_max_attempts() {
    bounded(DEADLINE, || {
        // A port nobody listens on.
        let addr = free_port();
        let mut options = client_options();
        options.reconnect.max_attempts = Some(3);
        match ReliableClient::connect(&format!("ws://{addr}/"), options) {
            Err(Error::Reliable(ReliableError::GaveUp {
                attempts,
                last: Some(last),
            })) => {
                assert_eq!(attempts, 3);
                assert!(matches!(*last, Error::Io(_)), "last error {last}");
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
    });
}

/// The events a client reports from a cut until its session is back, in order, without
/// `Acked` and `Delivered` (whatever was in flight) and the first `Established`.
fn until_resumed(mut next: impl FnMut() -> Option<SessionEvent>) -> Vec<SessionEvent> {
    let mut seen = Vec::new();
    loop {
        match next() {
            Some(
                SessionEvent::Acked { .. }
                | SessionEvent::Delivered { .. }
                | SessionEvent::Established { .. },
            ) => {}
            Some(event) => {
                let done = matches!(event, SessionEvent::Resumed { .. });
                seen.push(event);
                if done {
                    return seen;
                }
            }
            None => panic!("no event within the deadline; so far {seen:?}"),
        }
    }
}

/// What `until_resumed` must see: the drop, one scheduled attempt (the first after a
/// drop waits `initial_delay` less jitter), the resume.
fn assert_drop_then_resume(seen: &[SessionEvent], initial_delay: Duration) {
    match seen {
        [SessionEvent::Disconnected, SessionEvent::Reconnecting { attempt: 1, delay }, SessionEvent::Resumed { .. }] =>
        {
            assert!(*delay <= initial_delay, "{delay:?}")
        }
        other => panic!("expected Disconnected, Reconnecting {{ attempt: 1 }}, Resumed: {other:?}"),
    }
}

#[test]
fn reliable_clients_report_the_drop_and_the_reconnect_attempt() {
    use sockeye_tests::proxy::{Cut, FaultProxy};
    bounded(DEADLINE, || {
        let (server, registry) = server();
        let addr = server.local_addr().unwrap();
        let _accepting = server.spawn().unwrap();
        let options = client_options();
        let initial = options.reconnect.initial_delay;

        // std
        let proxy = FaultProxy::start(addr);
        let mut client =
            ReliableClient::connect(&format!("ws://{}/", proxy.addr()), options.clone()).unwrap();
        let first = client.send(Bytes::from("one"), true).unwrap();
        assert!(client.wait_acked(Some(DEADLINE)).unwrap());
        proxy.arm(&[1], Cut::Both);
        let second = client.send(Bytes::from("two"), true).unwrap();
        let seen = until_resumed(|| client.next_event(Some(DEADLINE)).unwrap());
        assert_drop_then_resume(&seen, initial);
        assert!(client.wait_acked(Some(DEADLINE)).unwrap());
        assert_eq!((first.0, second.0), (1, 2));

        // smol, against the same server
        let proxy = FaultProxy::start(addr);
        let url = format!("ws://{}/", proxy.addr());
        smol::block_on(async {
            let mut client = sockeye_smol::ReliableClient::connect(&url, client_options())
                .await
                .unwrap();
            client.send(Bytes::from("three"), true).unwrap();
            assert!(client.wait_acked(Some(DEADLINE)).await.unwrap());
            proxy.arm(&[1], Cut::Both);
            client.send(Bytes::from("four"), true).unwrap();
            let mut seen = Vec::new();
            loop {
                match client.next_event(Some(DEADLINE)).await.unwrap() {
                    Some(
                        SessionEvent::Acked { .. }
                        | SessionEvent::Delivered { .. }
                        | SessionEvent::Established { .. },
                    ) => {}
                    Some(event) => {
                        let done = matches!(event, SessionEvent::Resumed { .. });
                        seen.push(event);
                        if done {
                            break;
                        }
                    }
                    None => panic!("no event within the deadline; so far {seen:?}"),
                }
            }
            assert_drop_then_resume(&seen, initial);
        });
        drop(registry);
    });
}
