//! Fan-out: how long a push to a room of N connections takes to reach the last member,
//! and how many deliveries per second a burst of pushes makes, on the `sockeye` server
//! (a child process, `target/release/sockeye`, pinned to core 0 with `taskset` when it is
//! there) with each runtime. The members are plain-mode WebSocket clients in this process
//! on one `async-io` thread. A benchmark, not a test: it prints numbers and never fails on
//! speed.
//!
//! ```sh
//! cargo build --release -p sockeye
//! taskset -c 1 cargo run --release -p sockeye-bench --bin fanout -- --members 10000
//! ```

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// What the members saw: for each push number, how many got it and when the last did.
#[derive(Default)]
struct Seen {
    got: Vec<usize>,
    last: Vec<Option<Instant>>,
}

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("target dir").join("sockeye")
}

fn start_server(runtime: &str, members: usize, port: u16) -> Child {
    let bin = server_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p sockeye",
        bin.display()
    );
    let pinned = Command::new("taskset").arg("-V").output().is_ok();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--runtime",
        runtime,
    ])
    .args(["--max-connections", &(members + 100).to_string()])
    .args(["--log-level", "error"])
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start the server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

/// A masked client text frame (mask key 0: the payload is sent as is).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

/// The push number in a room message, if `payload` is one (`..."data":N}`).
fn push_number(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find("\"data\":")? + 7;
    text[at..].trim_end_matches('}').parse().ok()
}

/// One member: upgrade, join the room, then count every push it receives.
async fn member(addr: SocketAddr, i: usize, seen: Rc<RefCell<Seen>>, joined: Rc<RefCell<usize>>) {
    let mut s = Async::<TcpStream>::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws?user=m{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("upgrade");
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut head_done = false;
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            buf.drain(..end + 4);
            head_done = true;
            // A client sends nothing more before the server's answer (RFC 6455 §4.1).
            s.write_all(&text_frame(br#"{"type":"join","room":"big"}"#))
                .await
                .expect("join");
        }
        let mut at = 0;
        while buf.len() >= at + 2 {
            let (op, len7) = (buf[at] & 0x0f, usize::from(buf[at + 1] & 0x7f));
            let (len, head) = match len7 {
                126 if buf.len() >= at + 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                127 if buf.len() >= at + 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[at + 2..at + 10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (n, 2),
            };
            if buf.len() < at + head + len {
                break;
            }
            let payload = &buf[at + head..at + head + len];
            if op == 1 {
                if payload.starts_with(br#"{"type":"joined""#) {
                    *joined.borrow_mut() += 1;
                } else if let Some(k) = push_number(payload) {
                    let mut seen = seen.borrow_mut();
                    if let Some(count) = seen.got.get_mut(k) {
                        *count += 1;
                        seen.last[k] = Some(Instant::now());
                    }
                }
            }
            at += head + len;
        }
        buf.drain(..at);
    }
}

fn push(addr: SocketAddr, k: usize) -> Instant {
    let body = format!(r#"{{"room":"big","data":{k}}}"#);
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect for a push");
    s.write_all(request.as_bytes()).expect("push");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 202"),
        "push refused: {}",
        String::from_utf8_lossy(&answer)
    );
    started
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Publish-to-last-delivery of single pushes (ms), and deliveries/s of a burst.
fn measure(runtime: &str, members: usize, rounds: usize, burst: usize, port: u16) -> (f64, f64) {
    let mut server = start_server(runtime, members, port);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let total = rounds + burst;
    let seen = Rc::new(RefCell::new(Seen {
        got: vec![0; total],
        last: vec![None; total],
    }));
    let joined = Rc::new(RefCell::new(0usize));
    let ex = LocalExecutor::new();
    let result = async_io::block_on(ex.run(async {
        for i in 0..members {
            ex.spawn(member(addr, i, Rc::clone(&seen), Rc::clone(&joined)))
                .detach();
            if i % 256 == 255 {
                // Let the connections in flight finish before opening more.
                while *joined.borrow() + 512 < i {
                    async_io::Timer::after(Duration::from_millis(1)).await;
                }
            }
        }
        while *joined.borrow() < members {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        // The pushes run on a thread of their own: this one must keep reading.
        let wait_all = |k: usize| {
            let seen = Rc::clone(&seen);
            async move {
                while seen.borrow().got[k] < members {
                    async_io::Timer::after(Duration::from_micros(200)).await;
                }
            }
        };
        let mut latencies = Vec::new();
        for k in 0..rounds {
            let pusher = std::thread::spawn(move || push(addr, k));
            wait_all(k).await;
            let started = pusher.join().expect("pusher");
            let last = seen.borrow().last[k].expect("delivered");
            latencies.push(last.duration_since(started).as_secs_f64() * 1e3);
        }
        let pusher = std::thread::spawn(move || {
            for k in rounds..rounds + burst {
                push(addr, k);
            }
        });
        let started = Instant::now();
        for k in rounds..rounds + burst {
            wait_all(k).await;
        }
        let _ = pusher.join();
        let last = (rounds..rounds + burst)
            .filter_map(|k| seen.borrow().last[k])
            .max()
            .expect("delivered");
        let rate = (members * burst) as f64 / last.duration_since(started).as_secs_f64();
        (median(latencies), rate)
    }));
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let members = flag("--members", 10_000);
    let rounds = flag("--rounds", 9);
    let burst = flag("--burst", 20);
    println!(
        "fan-out to a room of {members} plain connections: median of {rounds} single pushes, \
         then a burst of {burst}"
    );
    println!("| runtime | publish to last delivery (ms) | burst deliveries/s |");
    println!("|---|---|---|");
    for (i, runtime) in ["smol", "threads"].iter().enumerate() {
        if *runtime == "threads" && members > 9_000 {
            // Two descriptors per connection: over the 20,000 limit.
            println!(
                "| threads | (needs {} descriptors; skipped) | |",
                members * 2
            );
            continue;
        }
        let (latency, rate) = measure(runtime, members, rounds, burst, 19_400 + i as u16);
        println!("| {runtime} | {latency:.1} | {rate:.0} |");
    }
}
