//! The `sockeye` binary itself: flags, and a graceful shutdown on SIGTERM / SIGINT (close
//! 1001 to every client, exit 0, within a bounded time).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sockeye_std::{Client, CloseCode, Config, Message, WebSocket};

/// The binary, started on a free port; returns it and its address (read from its log).
fn spawn_server(extra: &[&str]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sockeye"));
    command.args(["--listen", "127.0.0.1:0"]).args(extra);
    spawn_command(command)
}

/// The binary under a file-size limit of `kib` KiB (`ulimit -f`, with SIGXFSZ ignored):
/// a write past it fails with `EFBIG`, as a write to a full disk fails with `ENOSPC`.
fn spawn_server_with_file_limit(kib: u32, extra: &[&str]) -> (Child, String) {
    let mut command = Command::new("bash");
    command
        .args([
            "-c",
            &format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""),
        ])
        .arg(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    spawn_command(command)
}

fn spawn_command(command: Command) -> (Child, String) {
    let (child, addr, _) = spawn_logged(command);
    (child, addr)
}

/// Like [`spawn_command`], also keeping every line the server logs.
fn spawn_logged(mut command: Command) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockeye");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server logs its address");
    (child, addr, log)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sockeye did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn shutdown_closes_1001_and_exits_0(signal_name: &str) {
    let (mut child, addr) = spawn_server(&[]);
    let mut clients: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("ws://{addr}/ws?user=u{i}");
            let mut ws = Client::connect(&url, Config::default()).expect("connect");
            assert!(matches!(ws.recv().unwrap(), Some(Message::Text(_))));
            ws
        })
        .collect();
    signal(&child, signal_name);
    for ws in &mut clients {
        while let Ok(Some(_)) = ws.recv() {}
        assert_eq!(ws.close_info().map(|c| c.code), Some(CloseCode::GOING_AWAY));
    }
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    shutdown_closes_1001_and_exits_0("TERM");
}

#[test]
fn sigint_does_the_same() {
    shutdown_closes_1001_and_exits_0("INT");
}

#[test]
fn bad_flags_exit_2_with_a_message_and_help_lists_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--max-connections", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-connections"));
    let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .env("SOCKEYE_PING_INTERVAL", "never")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "SOCKEYE_LISTEN",
        "--secret",
        "--api-key",
        "--journal",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
}

/// `POST /api/push` on a fresh connection; the status code, or `None` if the server is
/// gone.
fn push(addr: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Pushes `0..` were answered 202 `acked` times before a SIGKILL: every one of them
/// arrived once, in order, and at most one more (a push in flight at the kill may have
/// been journaled without its 202 reaching us).
fn assert_every_acked_push_once(got: &[u64], acked: u64) {
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, expected, "lost, out of order or duplicated");
    assert!(
        got.len() as u64 == acked || got.len() as u64 == acked + 1,
        "{} delivered, {acked} acknowledged",
        got.len()
    );
}

/// Connects as kim (plain mode) and reads her welcome.
fn connect_kim(addr: &str) -> WebSocket {
    let url = format!("ws://{addr}/ws?user=kim");
    let mut ws = Client::connect(&url, Config::default()).expect("connect kim");
    assert!(
        matches!(ws.recv().unwrap(), Some(Message::Text(_))),
        "welcome"
    );
    ws
}

/// Connects as kim and reads her mailbox: the numbers in the `data` of each message, up
/// to an `"end"` pushed once she is connected.
fn kims_mailbox(addr: &str) -> Vec<u64> {
    let mut ws = connect_kim(addr);
    assert_eq!(push(addr, r#"{"user":"kim","data":"end"}"#), Some(202));
    let mut got = Vec::new();
    loop {
        let Some(Message::Text(text)) = ws.recv().unwrap() else {
            panic!("connection ended early");
        };
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        if value["data"] == "end" {
            return got;
        }
        got.push(value["data"].as_u64().expect("a number"));
    }
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_mailbox_message() {
    let dir = std::env::temp_dir().join(format!("sockeye-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let _ = std::fs::remove_file(&journal);
    let journal_arg = journal.to_str().unwrap().to_string();
    let args = ["--journal", &journal_arg, "--mailbox-size", "50000"];
    let (mut child, addr) = spawn_server(&args);
    // Push to offline kim until the server dies under SIGKILL, counting the 202s; the
    // kill comes once 500 were answered, while the pusher keeps going (mid-stream by
    // construction, whatever the machine's speed).
    const BEFORE_KILL: u64 = 500;
    let (answered, kill_now) = mpsc::channel();
    let pusher = {
        let addr = addr.clone();
        thread::spawn(move || {
            let mut acked = 0u64;
            while let Some(202) = push(&addr, &format!(r#"{{"user":"kim","data":{acked}}}"#)) {
                acked += 1;
                if acked == BEFORE_KILL {
                    let _ = answered.send(());
                }
                assert!(acked < 40_000, "the server outlived its SIGKILL");
            }
            acked
        })
    };
    kill_now
        .recv_timeout(Duration::from_secs(60))
        .expect("500 pushes answered");
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let acked = pusher.join().unwrap();
    assert!(acked >= BEFORE_KILL);
    println!("{acked} pushes acknowledged before SIGKILL");
    let (mut child, addr) = spawn_server(&args);
    let got = kims_mailbox(&addr);
    signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    assert_every_acked_push_once(&got, acked);
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_message_to_a_reliable_session() {
    use sockeye_std::{ReconnectConfig, ReliableClient, ReliableOptions, SessionEvent};
    let dir = std::env::temp_dir().join(format!("sockeye-kill-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let _ = std::fs::remove_file(&journal);
    let journal_arg = journal.to_str().unwrap().to_string();
    let (mut child, addr) = spawn_server(&["--journal", &journal_arg]);
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(5);
    reconnect.max_delay = Duration::from_millis(50);
    let options = ReliableOptions {
        reconnect,
        ..ReliableOptions::default()
    };
    let mut kim =
        ReliableClient::connect(&format!("ws://{addr}/ws?user=kim"), options).expect("connect");
    // Pushes to kim, online, until the server dies under SIGKILL, counting the 202s where
    // the test can see them.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pusher = {
        let addr = addr.clone();
        let answered = std::sync::Arc::clone(&answered);
        thread::spawn(move || {
            let mut acked = 0u64;
            while let Some(202) = push(&addr, &format!(r#"{{"user":"kim","data":{acked}}}"#)) {
                acked += 1;
                answered.store(acked, std::sync::atomic::Ordering::SeqCst);
                assert!(acked < 100_000, "the server outlived its SIGKILL");
            }
            acked
        })
    };
    let answered_now = || answered.load(std::sync::atomic::Ordering::SeqCst);
    let mut got = Vec::new();
    let drive = |kim: &mut ReliableClient, got: &mut Vec<u64>| {
        match kim.next_event(Some(Duration::from_millis(20))).unwrap() {
            Some(SessionEvent::Delivered { payload, .. }) => {
                let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                match value["data"].as_u64() {
                    Some(n) => got.push(n),
                    None => return value["data"] == "end",
                }
            }
            Some(SessionEvent::SessionLost { .. }) => panic!("the session was lost"),
            _ => {}
        }
        false
    };
    // Kim reads until she has 100 messages, then stops; the kill comes once 500 more
    // pushes were answered, so messages the server acknowledged are still
    // unacknowledged by kim when it dies, whatever the machine's speed.
    let guard = Instant::now() + Duration::from_secs(60);
    while got.len() < 100 {
        assert!(Instant::now() < guard, "kim got {} messages", got.len());
        drive(&mut kim, &mut got);
    }
    let target = answered_now() + 500;
    while answered_now() < target {
        assert!(Instant::now() < guard, "pushes stopped being answered");
        thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let acked = pusher.join().unwrap();
    assert!(acked >= target);
    println!(
        "{acked} pushes acknowledged before SIGKILL, {} delivered",
        got.len()
    );
    let (mut child, _) = spawn_server(&["--journal", &journal_arg, "--listen", &addr]);
    // One more push after the restart: it comes after every message resent from the
    // journal (one sender, in order), so once kim has it, a duplicate would have shown.
    assert_eq!(push(&addr, r#"{"user":"kim","data":"end"}"#), Some(202));
    let guard = Instant::now() + Duration::from_secs(60);
    while !drive(&mut kim, &mut got) {
        assert!(Instant::now() < guard, "kim got {} of {acked}", got.len());
    }
    signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    assert_every_acked_push_once(&got, acked);
}

#[test]
fn sigkill_mid_stream_loses_no_command_the_server_acknowledged_to_a_publishing_client() {
    use bytes::Bytes;
    use sockeye_std::{Error, ReconnectConfig, ReliableClient, ReliableOptions, SessionEvent};
    let dir = std::env::temp_dir().join(format!("sockeye-kill-pub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let _ = std::fs::remove_file(&journal);
    let journal_arg = journal.to_str().unwrap().to_string();
    let args = [
        "--journal",
        &journal_arg,
        "--mailbox-size",
        "100000",
        "--mailbox-sender-messages",
        "100000",
        "--mailbox-sender-bytes",
        "1024MiB",
    ];
    let (mut child, addr) = spawn_server(&args);
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(5);
    reconnect.max_delay = Duration::from_millis(50);
    let options = ReliableOptions {
        reconnect,
        ..ReliableOptions::default()
    };
    let mut pat =
        ReliableClient::connect(&format!("ws://{addr}/ws?user=pat"), options).expect("connect");
    let mut acked = 0u64;
    // Counts acks; anything given up fails the test.
    fn count(acked: &mut u64, event: Option<SessionEvent>) {
        match event {
            Some(SessionEvent::Acked { .. }) => *acked += 1,
            Some(SessionEvent::DeadLetter { seq, reason, .. }) => {
                panic!("command {seq:?} given up: {reason:?}")
            }
            Some(SessionEvent::SessionLost { .. }) => panic!("the session was lost"),
            _ => {}
        }
    }
    // Pat sends direct messages to offline kim (so into her journaled mailbox) as fast
    // as the window allows; the SIGKILL comes once 1,000 were acknowledged, with her
    // window full of commands in flight, whatever the machine's speed.
    let mut sent = 0u64;
    let guard = Instant::now() + Duration::from_secs(60);
    while acked < 1_000 {
        assert!(Instant::now() < guard, "{acked} commands acknowledged");
        let command = format!(r#"{{"type":"message","to":"kim","data":{sent}}}"#);
        match pat.send(Bytes::from(command), true) {
            Ok(_) => sent += 1,
            Err(Error::Reliable(e)) if e.is_full() => {
                count(
                    &mut acked,
                    pat.next_event(Some(Duration::from_millis(5))).unwrap(),
                );
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    // Acks that arrived before the kill, still queued in the client.
    let drain_until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < drain_until {
        count(
            &mut acked,
            pat.next_event(Some(Duration::from_millis(10))).unwrap(),
        );
    }
    let acked_at_kill = acked;
    assert!(
        acked_at_kill > 0,
        "no command was acknowledged before the kill"
    );
    println!("{sent} commands sent, {acked_at_kill} acknowledged before SIGKILL");
    // The server comes back on its journal and port; pat resumes and resends what the
    // server had not acknowledged.
    let (mut child, _) = spawn_server(&[&args[..], &["--listen", &addr]].concat());
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < sent && Instant::now() < deadline {
        count(
            &mut acked,
            pat.next_event(Some(Duration::from_millis(20))).unwrap(),
        );
    }
    assert_eq!(acked, sent, "every command acknowledged after the restart");
    // Kim connects: her mailbox holds every command's message once, in order.
    let got = kims_mailbox(&addr);
    signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    let expected: Vec<u64> = (0..sent).collect();
    if got != expected {
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|n| !got.contains(n))
            .collect();
        let first_bad = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{} delivered of {sent}: missing {missing:?}, first out of place at {first_bad:?}",
            got.len()
        );
    }
}

/// Connects as kim and reads `count` messages, the number first in each one's `data`.
fn read_kims_mail(addr: &str, count: u64) -> Vec<u64> {
    let mut ws = connect_kim(addr);
    (0..count)
        .map(|_| {
            let Some(Message::Text(text)) = ws.recv().unwrap() else {
                panic!("connection ended early");
            };
            let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
            value["data"][0].as_u64().expect("a number")
        })
        .collect()
}

#[test]
fn a_push_the_journal_cannot_record_is_answered_503_never_202() {
    let dir = std::env::temp_dir().join(format!("sockeye-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal");
    let _ = std::fs::remove_file(&journal);
    let journal_arg = journal.to_str().unwrap().to_string();
    let args = ["--journal", &journal_arg];
    // 8 KiB of journal: about 30 pushes of this size fit, then every commit fails.
    let (mut child, addr) = spawn_server_with_file_limit(8, &args);
    let pad = "x".repeat(200);
    let body = |n: u64| format!(r#"{{"user":"kim","data":[{n},"{pad}"]}}"#);
    let mut acked = 0u64;
    let mut statuses = Vec::new();
    for n in 0..100 {
        let status = push(&addr, &body(n)).expect("the server answers");
        if status == 202 {
            assert_eq!(n, acked, "a 202 after a failed commit: {statuses:?}");
            acked += 1;
        }
        statuses.push(status);
    }
    assert!(acked > 0 && acked < 100, "{acked} acknowledged");
    assert!(
        statuses[acked as usize..].iter().all(|&s| s == 503),
        "{statuses:?}"
    );
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    // Restarted on the same full disk (the limit now below the journal's size, so not
    // even a compaction fits): it starts, and kim gets exactly the acknowledged pushes.
    let (mut child, addr) = spawn_server_with_file_limit(1, &args);
    let got = read_kims_mail(&addr, acked);
    assert_eq!(got, (0..acked).collect::<Vec<_>>());
    assert_eq!(
        push(&addr, &body(1000)),
        Some(503),
        "the disk is still full"
    );
    signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_descriptors_new_connections_get_503_and_one_log_line() {
    // 40 descriptors: a plain connection holds two (its socket and the writer's clone),
    // so the server runs out after about 15 clients.
    let mut command = Command::new("bash");
    command
        .args(["-c", "ulimit -n 40; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--listen", "127.0.0.1:0"]);
    let (mut child, addr, log) = spawn_logged(command);
    let url = format!("ws://{addr}/ws?user=many");
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match Client::connect(&url, Config::default()) {
            Ok(mut ws) => {
                assert!(matches!(ws.recv().unwrap(), Some(Message::Text(_))));
                open.push(ws);
            }
            Err(sockeye_std::Error::Handshake(sockeye_core::HandshakeError::UnexpectedStatus(
                503,
            ))) => refused += 1,
            Err(other) => panic!("a refusal must be an answer, not {other:?}"),
        }
    }
    assert!(
        refused > 0 && !open.is_empty(),
        "{} open, {refused} refused",
        open.len()
    );
    signal(&child, "TERM");
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    let log = log.lock().unwrap();
    let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    let (warnings, recoveries) = (count("out of file descriptors"), count("available again"));
    // Logged once per time it runs out (between two, a connection was set up), not once
    // per refused client.
    assert!(warnings >= 1 && warnings <= recoveries + 1, "{log:#?}");
    assert!(
        warnings < refused,
        "{warnings} warnings for {refused} refusals"
    );
}
