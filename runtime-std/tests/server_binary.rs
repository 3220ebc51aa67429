//! The `sockeye` binary itself: flags, and a graceful shutdown on SIGTERM / SIGINT (close
//! 1001 to every client, exit 0, within a bounded time).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sockeye_std::{Client, CloseCode, Config, Message};

/// The binary, started on a free port; returns it and its address (read from its log).
fn spawn_server(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockeye");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server logs its address");
    (child, addr)
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
    let start = Instant::now();
    signal(&child, signal_name);
    for ws in &mut clients {
        while let Ok(Some(_)) = ws.recv() {}
        assert_eq!(ws.close_info().map(|c| c.code), Some(CloseCode::GOING_AWAY));
    }
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
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
