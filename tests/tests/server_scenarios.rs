//! The `sockeye` server over real sockets: routing, push, rooms, mailboxes, limits,
//! metrics. Each test starts its own server in-process on an ephemeral port and is
//! bounded in time. (SIGTERM against the real binary: `app/tests/server_binary.rs`.)

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use sockeye_core::auth::mint;
use sockeye_std::{
    Client, CloseCode, Config, Message, ReconnectConfig, ReliableClient, ReliableOptions,
    SessionEvent,
};
use sockeye_tests::proxy::{Cut, FaultProxy};
use sockeye_tests::server::{
    body, get, metric, push, raw_request, server_config, start_server, status, JsonClient,
};
use sockeye_tests::{bounded, CuttingProxy};

const LIMIT: Duration = Duration::from_secs(60);

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[test]
fn welcome_join_presence_message_and_direct_message() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut alice = JsonClient::connect(addr, "user=alice");
        assert_eq!(alice.user, "alice");
        let joined = alice.join("lobby");
        assert_eq!(joined["members"], json!(["alice"]));
        let mut bob = JsonClient::connect(addr, "user=bob");
        let joined = bob.join("lobby");
        assert_eq!(joined["members"], json!(["alice", "bob"]));
        assert_eq!(
            alice.recv(),
            json!({"type":"presence","room":"lobby","user":"bob","joined":true})
        );
        bob.send(json!({"type":"message","room":"lobby","data":{"text":"hi"}}));
        let expected = json!({"type":"message","room":"lobby","from":"bob","data":{"text":"hi"}});
        assert_eq!(alice.recv(), expected);
        assert_eq!(bob.recv(), expected);
        alice.send(json!({"type":"message","to":"bob","data":"psst"}));
        assert_eq!(
            bob.recv(),
            json!({"type":"message","from":"alice","data":"psst"})
        );
        bob.send(json!({"type":"message","room":"elsewhere","data":1}));
        assert_eq!(bob.recv()["type"], "error");
        bob.send(json!({"type":"leave","room":"lobby"}));
        assert_eq!(bob.recv(), json!({"type":"left","room":"lobby"}));
        assert_eq!(
            alice.recv(),
            json!({"type":"presence","room":"lobby","user":"bob","joined":false})
        );
        // Anonymous users get generated ids in development mode.
        let anon = JsonClient::connect(addr, "");
        assert!(anon.user.starts_with("anon-"), "{}", anon.user);
    });
}

#[test]
fn binary_closes_1003_and_bad_json_closes_1008() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        for (message, code) in [
            (Message::binary(vec![1, 2, 3]), CloseCode::UNSUPPORTED_DATA),
            (Message::text("{not json"), CloseCode::POLICY_VIOLATION),
            (
                Message::text(r#"{"type":"dance"}"#),
                CloseCode::POLICY_VIOLATION,
            ),
        ] {
            let mut client = JsonClient::connect(addr, "user=carol");
            client.ws.send(message).unwrap();
            while let Ok(Some(_)) = client.ws.recv() {}
            assert_eq!(client.ws.close_info().map(|c| c.code), Some(code));
        }
    });
}

#[test]
fn push_to_a_user_with_three_connections_reaches_all_three() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut devices: Vec<JsonClient> = (0..3)
            .map(|_| JsonClient::connect(addr, "user=dana"))
            .collect();
        let answer = push(addr, "", r#"{"user":"dana","data":{"order":42}}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        let receipt: Value = serde_json::from_str(body(&answer)).unwrap();
        assert_eq!(receipt["queued"]["connections"], 3);
        assert_eq!(receipt["queued"]["mailboxed"], 0);
        for device in &mut devices {
            assert_eq!(device.recv(), json!({"type":"message","data":{"order":42}}));
        }
    });
}

#[test]
fn a_room_of_100_connections_gets_every_publish() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.max_connections_per_user = 200;
        let server = start_server(config);
        let addr = server.local_addr();
        let mut members: Vec<JsonClient> = (0..100)
            .map(|i| {
                let mut c = JsonClient::connect(addr, &format!("user=m{i}"));
                c.join("big");
                c
            })
            .collect();
        const PUBLISHES: usize = 5;
        for n in 0..PUBLISHES {
            members[0].send(json!({"type":"message","room":"big","data":n}));
        }
        // The publisher gets its own messages too; once it has them all, the hub has
        // routed every publish, so the push below comes after them for everyone.
        for n in 0..PUBLISHES {
            assert_eq!(members[0].recv_type("message")["data"], n);
        }
        let answer = push(addr, "", r#"{"room":"big","data":"from the backend"}"#);
        assert_eq!(status(&answer), 202);
        assert!(body(&answer).contains("\"connections\":100"), "{answer}");
        for (i, member) in members.iter_mut().enumerate() {
            for n in (0..PUBLISHES).filter(|_| i > 0) {
                let m = member.recv_type("message");
                assert_eq!(m["data"], n);
                assert_eq!(m["from"], "m0");
            }
            let m = member.recv_type("message");
            assert_eq!(m["data"], "from the backend");
            assert_eq!(m["room"], "big");
        }
    });
}

#[test]
fn a_batch_push_reaches_its_targets_in_order_and_is_answered_per_push() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut members: Vec<JsonClient> = (0..3)
            .map(|i| {
                let mut c = JsonClient::connect(addr, &format!("user=b{i}"));
                c.join("burst");
                c
            })
            .collect();
        let batch: Vec<Value> = (0..50)
            .map(|n| json!({"room":"burst","data":n}))
            .chain([
                json!({"user":"b1","data":"direct"}),
                json!({"user":"nobody-here","data":1}),
            ])
            .collect();
        let answer = push(addr, "", &Value::Array(batch).to_string());
        assert_eq!(status(&answer), 202, "{answer}");
        let queued: Value = serde_json::from_str(body(&answer)).unwrap();
        let queued = queued["queued"].as_array().unwrap();
        assert_eq!(queued.len(), 52);
        assert_eq!(queued[0]["connections"], 3);
        assert_eq!(queued[50]["connections"], 1);
        assert_eq!(queued[51]["mailboxed"], 1);
        for (i, member) in members.iter_mut().enumerate() {
            for n in 0..50 {
                assert_eq!(member.recv_type("message")["data"], n);
            }
            if i == 1 {
                assert_eq!(member.recv_type("message")["data"], "direct");
            }
        }
        // Refused whole when one push is bad: nothing of it is delivered.
        let bad = r#"[{"room":"burst","data":"no"},{"room":"","data":1}]"#;
        assert_eq!(status(&push(addr, "", bad)), 400);
        let after = push(addr, "", r#"{"room":"burst","data":"after"}"#);
        assert_eq!(status(&after), 202);
        assert_eq!(members[0].recv_type("message")["data"], "after");
    });
}

#[test]
fn an_offline_user_receives_the_mailbox_on_connect() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        for n in 1..=3 {
            let answer = push(addr, "", &format!(r#"{{"user":"erin","data":{n}}}"#));
            assert_eq!(status(&answer), 202);
            assert!(body(&answer).contains("\"mailboxed\":1"), "{answer}");
        }
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_mailbox_depth"), 3);
        let mut erin = JsonClient::connect(addr, "user=erin");
        for n in 1..=3 {
            assert_eq!(erin.recv(), json!({"type":"message","data":n}));
        }
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_mailbox_depth"), 0);
    });
}

#[test]
fn one_client_cannot_fill_the_mailboxes_of_real_users() {
    bounded(LIMIT, || {
        let mut config = server_config();
        // Room for the 9,000 refusals she reads only at the end.
        config.max_queue_bytes = 4 << 20;
        let server = start_server(config);
        let addr = server.local_addr();
        // Eve writes one byte to each of 10,000 made-up names: as many users as the hub
        // keeps mailboxes for.
        let mut eve = JsonClient::connect(addr, "user=eve");
        for n in 0..10_000 {
            eve.send(json!({"type":"message","to":format!("ghost{n}"),"data":1}));
        }
        // Commands are handled in order, so once the join is answered every message was;
        // each one past her share was answered with an error.
        eve.send(json!({"type":"join","room":"done"}));
        let mut refused = 0;
        loop {
            let reply = eve.recv();
            match reply["type"].as_str() {
                Some("joined") => break,
                Some("error") => refused += 1,
                _ => panic!("unexpected {reply}"),
            }
        }
        assert_eq!(refused, 9_000);
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_mailbox_depth"), 1_000, "her share");
        assert_eq!(metric(&page, "sockeye_mailbox_drops_total"), 9_000);
        // A backend push to a real offline user still finds room.
        let answer = push(addr, "", r#"{"user":"frank","data":"invoice"}"#);
        assert_eq!(status(&answer), 202);
        assert!(body(&answer).contains("\"mailboxed\":1"), "{answer}");
        let mut frank = JsonClient::connect(addr, "user=frank");
        assert_eq!(frank.recv(), json!({"type":"message","data":"invoice"}));
    });
}

#[test]
fn http_routing_and_errors() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        assert_eq!(status(&get(addr, "/healthz")), 200);
        let page = get(addr, "/");
        assert_eq!(status(&page), 200);
        assert!(page.contains("<html"));
        let missing = get(addr, "/nope");
        assert_eq!(status(&missing), 404);
        assert!(body(&missing).contains("\"error\""));
        // A non-upgrade request to /ws: 426 with a one-line reason.
        let plain = get(addr, "/ws");
        assert_eq!(status(&plain), 426, "{plain}");
        // A malformed upgrade (bad key): 400.
        let bad_key = raw_request(
            addr,
            upgrade_request("/ws", "")
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "short")
                .as_bytes(),
        );
        assert_eq!(status(&bad_key), 400, "{bad_key}");
        // Push errors are JSON.
        for (request_body, code) in [
            ("{nope", 400),
            (r#"{"data":1}"#, 400),
            (r#"{"user":"x"}"#, 400),
        ] {
            let answer = push(addr, "", request_body);
            assert_eq!(status(&answer), code, "{answer}");
            assert!(body(&answer).starts_with("{\"error\":"), "{answer}");
        }
        let huge = format!(r#"{{"everyone":true,"data":"{}"}}"#, "x".repeat(100_000));
        assert_eq!(status(&push(addr, "", &huge)), 413);
    });
}

#[test]
fn oversized_and_slow_heads_get_431_and_408() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.head_timeout = Duration::from_millis(300);
        let server = start_server(config);
        let addr = server.local_addr();
        let huge = upgrade_request("/ws", &format!("X-Pad: {}\r\n", "p".repeat(20_000)));
        assert_eq!(status(&raw_request(addr, huge.as_bytes())), 431);
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
        let answer = raw_request_on(slow);
        assert_eq!(status(&answer), 408, "{answer}");
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(
            metric(
                &page,
                "sockeye_handshakes_rejected_total{reason=\"timeout\"}"
            ),
            1
        );
        assert_eq!(
            metric(
                &page,
                "sockeye_handshakes_rejected_total{reason=\"head_too_large\"}"
            ),
            1
        );
    });
}

fn raw_request_on(mut stream: TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn over_the_connection_limits_the_upgrade_is_answered_503() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.max_connections = 3;
        config.max_connections_per_user = 2;
        let server = start_server(config);
        let addr = server.local_addr();
        let _a1 = JsonClient::connect(addr, "user=a");
        let _a2 = JsonClient::connect(addr, "user=a");
        let third = raw_request(addr, upgrade_request("/ws?user=a", "").as_bytes());
        assert_eq!(status(&third), 503, "{third}");
        let _b = JsonClient::connect(addr, "user=b");
        let fourth = raw_request(addr, upgrade_request("/ws?user=c", "").as_bytes());
        assert_eq!(status(&fourth), 503, "{fourth}");
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(
            metric(
                &page,
                "sockeye_handshakes_rejected_total{reason=\"over_limit\"}"
            ),
            2
        );
        assert_eq!(metric(&page, "sockeye_connections_open"), 3);
    });
}

#[test]
fn with_a_secret_tokens_are_required_and_push_needs_the_api_key() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.secret = Some("s3cret".into());
        config.api_key = Some("k3y".into());
        let server = start_server(config);
        let addr = server.local_addr();
        let missing = raw_request(addr, upgrade_request("/ws?user=mallory", "").as_bytes());
        assert_eq!(status(&missing), 401, "{missing}");
        let forged = mint(b"wrong", "mallory", u64::MAX / 2);
        let answer = raw_request(
            addr,
            upgrade_request(&format!("/ws?token={forged}"), "").as_bytes(),
        );
        assert_eq!(status(&answer), 401);
        let expired = mint(b"s3cret", "frank", 1);
        let answer = raw_request(
            addr,
            upgrade_request("/ws", &format!("Authorization: Bearer {expired}\r\n")).as_bytes(),
        );
        assert_eq!(status(&answer), 401);
        let good = mint(b"s3cret", "frank", u64::MAX / 2);
        let mut frank = JsonClient::connect(addr, &format!("token={good}"));
        assert_eq!(frank.user, "frank");
        let body_text = r#"{"user":"frank","data":"ok"}"#;
        assert_eq!(status(&push(addr, "", body_text)), 401);
        assert_eq!(status(&push(addr, "X-Api-Key: nope\r\n", body_text)), 401);
        assert_eq!(status(&push(addr, "X-Api-Key: k3y\r\n", body_text)), 202);
        assert_eq!(frank.recv()["data"], "ok");
        assert_eq!(
            status(&push(addr, "Authorization: Bearer k3y\r\n", body_text)),
            202
        );
        assert_eq!(frank.recv()["data"], "ok");
    });
}

#[test]
fn metrics_counters_move() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let before = body(&get(addr, "/metrics")).to_string();
        for name in [
            "sockeye_connections_open",
            "sockeye_messages_in_total",
            "sockeye_messages_out_total",
            "sockeye_resends_total",
            "sockeye_resumes_total",
            "sockeye_dead_letters_total",
            "sockeye_mailbox_depth",
            "sockeye_mailbox_drops_total",
        ] {
            assert_eq!(metric(&before, name), 0, "{name}");
        }
        let mut gina = JsonClient::connect(addr, "user=gina");
        gina.join("r");
        gina.send(json!({"type":"message","room":"r","data":1}));
        gina.recv_type("message");
        let after = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&after, "sockeye_connections_open"), 1);
        assert_eq!(metric(&after, "sockeye_messages_in_total"), 2);
        assert_eq!(metric(&after, "sockeye_messages_out_total"), 1);
        assert_eq!(metric(&after, "sockeye_rooms"), 1);
    });
}

#[test]
fn a_slow_consumer_is_closed_instead_of_buffered() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.max_queue_bytes = 64 * 1024;
        let server = start_server(config);
        let addr = server.local_addr();
        // A client that upgrades and then never reads.
        let mut lazy = TcpStream::connect(addr).unwrap();
        lazy.write_all(upgrade_request("/ws?user=lazy", "").as_bytes())
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        let chunk = format!(r#"{{"user":"lazy","data":"{}"}}"#, "z".repeat(60_000));
        let mut closed = false;
        for _ in 0..400 {
            push(addr, "", &chunk);
            let page = body(&get(addr, "/metrics")).to_string();
            if metric(&page, "sockeye_slow_consumers_total") >= 1 {
                closed = true;
                break;
            }
        }
        assert!(closed, "the slow consumer was never closed");
        drop(lazy);
        // Everyone else is unaffected.
        let mut other = JsonClient::connect(addr, "user=quick");
        other.join("r");
    });
}

#[test]
fn a_client_offering_sockeye_v1_gets_it_and_a_welcome() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let answer = {
            use std::io::Read;
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(
                    upgrade_request("/ws?user=h", "Sec-WebSocket-Protocol: sockeye.v1\r\n")
                        .as_bytes(),
                )
                .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(status(&answer), 101);
        assert!(answer
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: sockeye.v1"));
        // The reliable client's session is established, and its first message is the
        // JSON welcome naming the user.
        let mut hana = reliable_client(addr, "user=hana");
        assert_eq!(
            recv_json(&mut hana),
            json!({"type":"welcome","user":"hana"})
        );
        // And a normal client still works alongside.
        let url = format!("ws://{addr}/ws?user=i");
        let mut ws = Client::connect(&url, Config::default()).unwrap();
        assert!(matches!(ws.recv().unwrap(), Some(Message::Text(_))));
    });
}

#[test]
fn a_reliable_client_joins_a_room_and_chats_with_a_plain_client() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut rita = reliable_client(addr, "user=rita");
        assert_eq!(recv_json(&mut rita)["type"], "welcome");
        send_json(&mut rita, json!({"type":"join","room":"lobby"}));
        assert_eq!(
            recv_json(&mut rita),
            json!({"type":"joined","room":"lobby","members":["rita"],"count":1})
        );
        let mut pat = JsonClient::connect(addr, "user=pat");
        pat.join("lobby");
        assert_eq!(
            recv_json(&mut rita),
            json!({"type":"presence","room":"lobby","user":"pat","joined":true})
        );
        for i in 0..20 {
            pat.send(json!({"type":"message","room":"lobby","data":i}));
            assert_eq!(
                recv_json(&mut rita),
                json!({"type":"message","room":"lobby","from":"pat","data":i})
            );
            pat.recv_type("message");
        }
        send_json(
            &mut rita,
            json!({"type":"message","room":"lobby","data":"hi"}),
        );
        assert_eq!(
            pat.recv_type("message"),
            json!({"type":"message","room":"lobby","from":"rita","data":"hi"})
        );
        send_json(
            &mut rita,
            json!({"type":"message","to":"pat","data":"psst"}),
        );
        assert_eq!(
            pat.recv_type("message"),
            json!({"type":"message","from":"rita","data":"psst"})
        );
        // Rita hears her own publish, as in plain mode.
        assert_eq!(recv_json(&mut rita)["from"], "rita");
        // A bad command is answered with an error, as in plain mode.
        send_json(&mut rita, json!({"type":"join"}));
        assert_eq!(recv_json(&mut rita)["type"], "error");
    });
}

#[test]
fn a_push_reaches_a_reliable_user_and_the_metrics_count_it() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut rob = reliable_client(addr, "user=rob");
        assert_eq!(recv_json(&mut rob)["type"], "welcome");
        let answer = push(addr, "", r#"{"user":"rob","data":{"order":7}}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        let receipt: Value = serde_json::from_str(body(&answer)).unwrap();
        assert_eq!(receipt["queued"]["connections"], 1);
        assert_eq!(
            recv_json(&mut rob),
            json!({"type":"message","data":{"order":7}})
        );
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_connections_open"), 1);
        assert_eq!(metric(&page, "sockeye_messages_out_total"), 1);
    });
}

/// Sends a `sockeye.v1` upgrade request and reads the answer's status and, after a 101,
/// the status byte of the WELCOME that follows it.
fn welcome_status(addr: std::net::SocketAddr, request: &str) -> (u16, u8) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    // The head, then a binary frame's 2-byte header and the envelope's kind and status.
    loop {
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|end| got.len() >= end + 4 + 4) {
            break;
        }
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let code = status(&text);
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frame = &got[end..];
    assert_eq!(frame.get(2), Some(&0x03), "a WELCOME envelope: {frame:?}");
    (code, frame[3])
}

#[test]
fn another_user_cannot_resume_a_session() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let mut owner = reliable_client(addr, "user=owner");
        assert_eq!(recv_json(&mut owner)["type"], "welcome");
        let resume = owner
            .session()
            .resume_header_value()
            .expect("an established session can be resumed");
        // A thief with the real token, one with a wrong token and one naming an id that
        // never existed all get the same answer (docs/PROTOCOL.md §6.3): a 101 and a
        // WELCOME that refuses the resume as unknown (status 2), so none learns that
        // the id exists.
        let mut wrong = resume.clone().into_bytes();
        let last = wrong.len() - 5; // inside the token
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        let wrong = String::from_utf8(wrong).unwrap();
        let mut unknown = resume.clone().into_bytes();
        unknown[3] = if unknown[3] == b'A' { b'B' } else { b'A' }; // inside the id
        let unknown = String::from_utf8(unknown).unwrap();
        for value in [&resume, &wrong, &unknown] {
            let extra =
                format!("Sec-WebSocket-Protocol: sockeye.v1\r\nSockeye-Resume: {value}\r\n");
            let request = upgrade_request("/ws?user=thief", &extra);
            assert_eq!(welcome_status(addr, &request), (101, 2), "{value}");
        }
        // The owner's session is untouched.
        let answer = push(addr, "", r#"{"user":"owner","data":1}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        assert_eq!(recv_json(&mut owner), json!({"type":"message","data":1}));
    });
}

#[test]
fn a_resume_after_cuts_loses_nothing() {
    const PUSHES: u64 = 500;
    bounded(LIMIT, || {
        let mut config = server_config();
        config.mailbox_size = 2 * PUSHES as usize;
        // A resume replaces the connection it takes over, even one the server has not
        // seen drop yet: it does not count against the limit.
        config.max_connections_per_user = 1;
        let server = start_server(config);
        let addr = server.local_addr();
        // Each pushed message costs the proxy at least 40 bytes; cut three times while
        // the pushes flow.
        let proxy = CuttingProxy::start(addr, vec![3_000, 8_000, 14_000]);
        let mut sam = reliable_client(proxy.addr(), "user=sam");
        assert_eq!(recv_json(&mut sam)["type"], "welcome");
        let pusher = thread::spawn(move || {
            for i in 0..PUSHES {
                let answer = push(addr, "", &format!(r#"{{"user":"sam","data":{i}}}"#));
                assert_eq!(status(&answer), 202, "{answer}");
            }
        });
        for i in 0..PUSHES {
            let got = recv_json(&mut sam);
            assert_eq!(got, json!({"type":"message","data":i}), "message {i}");
        }
        pusher.join().unwrap();
        // Nothing more (no duplicate) arrives.
        if let Some(SessionEvent::Delivered { payload, .. }) =
            sam.next_event(Some(Duration::from_millis(300))).unwrap()
        {
            panic!("extra delivery: {}", String::from_utf8_lossy(&payload));
        }
        assert_eq!(proxy.cuts_done(), 3, "not every cut happened");
        assert!(sam.connections() >= 4, "the client did not reconnect");
        let page = body(&get(addr, "/metrics")).to_string();
        assert!(metric(&page, "sockeye_resumes_total") >= 3, "{page}");
        assert!(metric(&page, "sockeye_resends_total") >= 1, "{page}");
        assert_eq!(
            metric(
                &page,
                "sockeye_handshakes_rejected_total{reason=\"over_limit\"}"
            ),
            0,
            "a resume was refused over the limit"
        );
    });
}

#[test]
fn a_full_reliable_window_closes_the_connection_and_loses_nothing() {
    // One more than the session's window (`SessionConfig::default().window_messages`).
    const PUSHES: u64 = 1024 + 76;
    bounded(LIMIT, || {
        let mut config = server_config();
        config.mailbox_size = PUSHES as usize;
        let server = start_server(config);
        let addr = server.local_addr();
        let mut lena = reliable_client(addr, "user=lena");
        assert_eq!(recv_json(&mut lena)["type"], "welcome");
        // Lena does not read while the pushes come, so nothing is acknowledged and the
        // session's window fills: the server closes her connection instead of queuing
        // more, and keeps the rest in her mailbox.
        for i in 0..PUSHES {
            let answer = push(addr, "", &format!(r#"{{"user":"lena","data":{i}}}"#));
            assert_eq!(status(&answer), 202, "{answer}");
        }
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_slow_consumers_total"), 1, "{page}");
        assert_eq!(metric(&page, "sockeye_dead_letters_total"), 0, "{page}");
        // She reads again, reconnects, resumes, and gets everything once, in order.
        for i in 0..PUSHES {
            assert_eq!(recv_json(&mut lena), json!({"type":"message","data":i}));
        }
        assert!(lena.connections() >= 2, "the connection was not closed");
        if let Some(SessionEvent::Delivered { payload, .. }) =
            lena.next_event(Some(Duration::from_millis(300))).unwrap()
        {
            panic!("extra delivery: {}", String::from_utf8_lossy(&payload));
        }
    });
}

#[test]
fn a_reliable_session_stays_in_its_rooms_across_a_resume() {
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        // The cut comes once the pushes below have carried enough bytes.
        let proxy = CuttingProxy::start(addr, vec![6_000]);
        let mut ruth = reliable_client(proxy.addr(), "user=ruth");
        assert_eq!(recv_json(&mut ruth)["type"], "welcome");
        send_json(&mut ruth, json!({"type":"join","room":"den"}));
        assert_eq!(recv_json(&mut ruth)["type"], "joined");
        let mut i = 0;
        while proxy.cuts_done() == 0 {
            assert!(i < 1_000, "the proxy never cut");
            let answer = push(addr, "", &format!(r#"{{"user":"ruth","data":{i}}}"#));
            assert_eq!(status(&answer), 202, "{answer}");
            assert_eq!(recv_json(&mut ruth), json!({"type":"message","data":i}));
            i += 1;
        }
        // Wait for the resume, then a plain client talks in the room.
        let answer = push(addr, "", r#"{"user":"ruth","data":"after"}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        assert_eq!(
            recv_json(&mut ruth),
            json!({"type":"message","data":"after"})
        );
        let mut paul = JsonClient::connect(addr, "user=paul");
        let joined = paul.join("den");
        assert_eq!(joined["members"], json!(["paul", "ruth"]), "{joined}");
        paul.send(json!({"type":"message","room":"den","data":"still there?"}));
        loop {
            let got = recv_json(&mut ruth);
            if got["type"] == "message" {
                assert_eq!(got["data"], "still there?", "{got}");
                break;
            }
        }
        assert!(ruth.connections() >= 2, "the client did not reconnect");
    });
}

#[test]
fn room_messages_published_while_a_reliable_session_is_cut_reach_it_on_resume() {
    const WHILE_CUT: u64 = 20;
    bounded(LIMIT, || {
        let server = start_server(server_config());
        let addr = server.local_addr();
        let proxy = FaultProxy::start(addr);
        let mut ruth = reliable_client(proxy.addr(), "user=ruth");
        assert_eq!(recv_json(&mut ruth)["type"], "welcome");
        send_json(&mut ruth, json!({"type":"join","room":"den"}));
        assert_eq!(recv_json(&mut ruth)["type"], "joined");
        let mut paul = JsonClient::connect(addr, "user=paul");
        paul.join("den");
        // The next byte forwarded cuts Ruth's connection both ways; she does not drive
        // her client until the end, so she stays away while Paul talks.
        proxy.arm(&[1], Cut::Both);
        paul.send(json!({"type":"message","room":"den","data":0}));
        assert_eq!(paul.recv_type("message")["data"], 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while metric(body(&get(addr, "/metrics")), "sockeye_connections_open") != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never saw the cut"
            );
            thread::sleep(Duration::from_millis(5));
        }
        for i in 1..=WHILE_CUT {
            paul.send(json!({"type":"message","room":"den","data":i}));
            let got = paul.recv();
            // Ruth's session is still in the room: nobody saw her leave.
            assert_eq!(got["type"], "message", "{got}");
            assert_eq!(got["data"], i);
        }
        let mut got = recv_json(&mut ruth);
        assert_eq!(
            got,
            json!({"type":"presence","room":"den","user":"paul","joined":true})
        );
        for i in 0..=WHILE_CUT {
            got = recv_json(&mut ruth);
            assert_eq!(got["type"], "message", "{got}");
            assert_eq!(
                (got["from"].clone(), got["data"].clone()),
                (json!("paul"), json!(i))
            );
        }
        assert_eq!(proxy.cuts_done(), 1);
        assert!(ruth.connections() >= 2, "the client did not reconnect");
        if let Some(SessionEvent::Delivered { payload, .. }) =
            ruth.next_event(Some(Duration::from_millis(300))).unwrap()
        {
            panic!("extra delivery: {}", String::from_utf8_lossy(&payload));
        }
    });
}

#[test]
fn shutdown_closes_reliable_connections_too() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.shutdown_grace = Duration::from_secs(5);
        let server = start_server(config);
        let addr = server.local_addr();
        let mut sue = reliable_client(addr, "user=sue");
        assert_eq!(recv_json(&mut sue)["type"], "welcome");
        let stopping = thread::spawn(move || server.shutdown());
        // Sue keeps driving her client, so she answers the server's close; then her
        // reconnects are refused by a server that is gone.
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while !stopping.is_finished() && std::time::Instant::now() < until {
            let _ = sue.next_event(Some(Duration::from_millis(20)));
        }
        assert_eq!(
            stopping.join().unwrap(),
            0,
            "a connection outlived the shutdown"
        );
    });
}

#[test]
fn with_a_journal_the_mailbox_survives_a_restart() {
    bounded(LIMIT, || {
        let dir = std::env::temp_dir().join(format!(
            "sockeye-journal-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal");
        let mut config = server_config();
        config.journal = Some(path.clone());
        // Before the restart: ten pushes (202) and a direct message for offline olga; one
        // delivered mailbox for otto, which must not come back.
        let server = start_server(config.clone());
        let addr = server.local_addr();
        for i in 0..10 {
            let answer = push(addr, "", &format!(r#"{{"user":"olga","data":{i}}}"#));
            assert_eq!(status(&answer), 202, "{answer}");
        }
        let answer = push(addr, "", r#"{"user":"otto","data":"once"}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        let mut otto = JsonClient::connect(addr, "user=otto");
        assert_eq!(otto.recv(), json!({"type":"message","data":"once"}));
        otto.send(json!({"type":"message","to":"olga","data":"from otto"}));
        let mut depth = 0;
        for _ in 0..200 {
            depth = metric(body(&get(addr, "/metrics")), "sockeye_mailbox_depth");
            if depth == 11 {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(depth, 11, "the direct message never reached the mailbox");
        drop(otto);
        assert_eq!(server.shutdown(), 0);
        // After: olga gets all eleven, in order; otto gets nothing again.
        let server = start_server(config);
        let addr = server.local_addr();
        let mut olga = JsonClient::connect(addr, "user=olga");
        for i in 0..10 {
            assert_eq!(olga.recv(), json!({"type":"message","data":i}));
        }
        assert_eq!(
            olga.recv(),
            json!({"type":"message","from":"otto","data":"from otto"})
        );
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_mailbox_depth"), 0, "{page}");
        drop(olga);
        assert_eq!(server.shutdown(), 0);
        // A third start finds every mailbox empty.
        let mut config = server_config();
        config.journal = Some(path);
        let server = start_server(config);
        let page = body(&get(server.local_addr(), "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_mailbox_depth"), 0, "{page}");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn with_a_journal_a_reliable_session_resumes_after_a_restart() {
    bounded(LIMIT, || {
        let dir = std::env::temp_dir().join(format!("sockeye-sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal");
        let _ = std::fs::remove_file(&path);
        let mut config = server_config();
        config.journal = Some(path);
        config.shutdown_grace = Duration::from_millis(500);
        let server = start_server(config.clone());
        let addr = server.local_addr();
        let mut kai = reliable_client(addr, "user=kai");
        assert_eq!(recv_json(&mut kai)["type"], "welcome");
        for i in 0..30 {
            let answer = push(addr, "", &format!(r#"{{"user":"kai","data":{i}}}"#));
            assert_eq!(status(&answer), 202, "{answer}");
        }
        for i in 0..10 {
            assert_eq!(recv_json(&mut kai), json!({"type":"message","data":i}));
        }
        // The server goes away and comes back on the same port with its journal: kai's
        // session is resumed, not replaced, and the rest arrives once, in order. (Kai is
        // not reading now, so her connection may outlive the short grace.)
        let _ = server.shutdown();
        config.listen = addr.to_string();
        let server = start_server(config);
        let mut resumed = false;
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !resumed || got.len() < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "only {got:?}, resumed {resumed}"
            );
            match kai.next_event(Some(Duration::from_millis(100))).unwrap() {
                Some(SessionEvent::Delivered { payload, .. }) => {
                    let value: Value = serde_json::from_slice(&payload).unwrap();
                    got.push(value["data"].as_u64().expect("a pushed number"));
                }
                Some(SessionEvent::Resumed { .. }) => resumed = true,
                Some(SessionEvent::SessionLost { .. }) => panic!("the session was lost"),
                Some(SessionEvent::DeadLetter { seq, .. }) => panic!("dead letter {seq:?}"),
                _ => {}
            }
        }
        assert_eq!(got, (10..30).collect::<Vec<u64>>());
        let answer = push(addr, "", r#"{"user":"kai","data":"after"}"#);
        assert_eq!(status(&answer), 202, "{answer}");
        assert_eq!(
            recv_json(&mut kai),
            json!({"type":"message","data":"after"})
        );
        let page = body(&get(addr, "/metrics")).to_string();
        assert_eq!(metric(&page, "sockeye_resumes_total"), 1, "{page}");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A reliable client of `/ws?{query}`, established; it reconnects quickly after a cut.
fn reliable_client(addr: SocketAddr, query: &str) -> ReliableClient {
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(2);
    reconnect.max_delay = Duration::from_millis(50);
    let options = ReliableOptions {
        reconnect,
        ..ReliableOptions::default()
    };
    ReliableClient::connect(&format!("ws://{addr}/ws?{query}"), options).expect("connect")
}

/// Sends a JSON command in a DATA envelope.
fn send_json(client: &mut ReliableClient, value: Value) {
    client
        .send(Bytes::from(value.to_string()), true)
        .expect("send");
}

/// The next JSON message the server delivered (other session events are skipped).
fn recv_json(client: &mut ReliableClient) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no message within 20 s");
        match client.next_event(Some(left)).expect("reliable client") {
            Some(SessionEvent::Delivered {
                payload, is_text, ..
            }) => {
                assert!(is_text, "the server sends JSON text");
                return serde_json::from_slice(&payload).expect("json");
            }
            Some(SessionEvent::DeadLetter { seq, .. }) => panic!("dead letter {seq:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_message_over_the_limit_closes_1009() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.max_message_bytes = 1024;
        config.max_frame_bytes = 1024;
        let server = start_server(config);
        let mut client = JsonClient::connect(server.local_addr(), "user=big");
        let data = "x".repeat(2000);
        client
            .ws
            .send(Message::text(
                json!({"type":"message","room":"r","data":data}).to_string(),
            ))
            .unwrap();
        while let Ok(Some(_)) = client.ws.recv() {}
        assert_eq!(
            client.ws.close_info().map(|c| c.code),
            Some(CloseCode::MESSAGE_TOO_BIG)
        );
    });
}

#[test]
fn a_client_that_stops_answering_pings_is_dropped() {
    bounded(LIMIT, || {
        let mut config = server_config();
        config.ping_interval = Duration::from_millis(200);
        config.pong_timeout = Duration::from_millis(300);
        let server = start_server(config);
        let addr = server.local_addr();
        // Upgrades, then neither reads nor writes: no pong ever comes back.
        let mut silent = TcpStream::connect(addr).unwrap();
        silent
            .write_all(upgrade_request("/ws?user=silent", "").as_bytes())
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen_open = false;
        loop {
            let page = body(&get(addr, "/metrics")).to_string();
            let open = metric(&page, "sockeye_connections_open");
            seen_open |= open == 1;
            if seen_open && open == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never dropped:\n{page}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        drop(silent);
    });
}
