//! Reliable (`sockeye.v1`) messaging against plain WebSocket messages over loopback, with
//! `sockeye-std` on both ends, and the time a cut session takes to resume and replay.
//!
//! ```text
//! cargo run --release -p sockeye-bench --bin reliable -- --bench [--runs 7]
//! ```
//!
//! Without `--bench` it makes a quick smoke pass (a few hundred messages, one run):
//! the numbers then mean nothing. See `bench/README.md` for what is measured.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockeye_std::{
    Client, Config, Error, Message, ReconnectConfig, ReliableClient, ReliableOptions,
    ReliableServer, Server, SessionConfig, SessionEvent,
};

/// Unacknowledged messages replayed after the cut.
const REPLAYED: usize = 1000;

struct Options {
    runs: usize,
    /// Messages per throughput run, by size.
    messages: [(usize, usize); 2],
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let mut runs = if smoke { 1 } else { 7 };
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--runs needs a number");
    }
    let messages = if smoke {
        [(32, 500), (1024, 500)]
    } else {
        [(32, 200_000), (1024, 100_000)]
    };
    Options {
        runs: runs.max(1),
        messages,
        smoke,
    }
}

fn main() {
    if profile_one() {
        return;
    }
    let options = options();
    println!(
        "sockeye reliable benchmark: sockeye-std client -> sockeye-std server over 127.0.0.1, \
         wall clock, median of {} runs{}",
        options.runs,
        if options.smoke {
            " (smoke pass: numbers mean nothing; pass --bench)"
        } else {
            ""
        }
    );
    println!("\nTHROUGHPUT (client sends, server application receives every message)");
    println!(
        "  {:>6} {:>9}  {:>12} {:>12}  {:>9}  {:>16}",
        "size", "messages", "plain msg/s", "rel. msg/s", "rel/plain", "paired (min-max)"
    );
    for (size, count) in options.messages {
        let mut plain = Vec::new();
        let mut reliable = Vec::new();
        let mut paired = Vec::new();
        for _ in 0..options.runs {
            // Alternate so that load changes hit both alike.
            let p = count as f64 / plain_run(size, count).as_secs_f64();
            let r = count as f64 / reliable_run(size, count).as_secs_f64();
            plain.push(p);
            reliable.push(r);
            paired.push(100.0 * r / p);
        }
        let (p, r) = (median(&mut plain), median(&mut reliable));
        let pm = median(&mut paired);
        println!(
            "  {:>4} B {:>9}  {:>12.0} {:>12.0}  {:>8.1}%  {:>5.1}% ({:.0}-{:.0})",
            size,
            count,
            p,
            r,
            100.0 * r / p,
            pm,
            paired[0],
            paired[paired.len() - 1]
        );
    }
    println!(
        "  rel/plain: ratio of the medians; paired: median of each run's reliable/plain ratio"
    );

    println!("\nRESUME (cut with {REPLAYED} unacknowledged messages -> reconnected, resumed, all replayed and acknowledged; reconnect delay 0)");
    let mut resumed = Vec::new();
    let mut delivered = Vec::new();
    for _ in 0..options.runs {
        let (to_acked, to_delivered) = resume_run();
        resumed.push(to_acked.as_secs_f64() * 1e3);
        delivered.push(to_delivered.as_secs_f64() * 1e3);
    }
    println!(
        "  cut -> server delivered all {REPLAYED}: median {:.2} ms",
        median(&mut delivered)
    );
    println!(
        "  cut -> client saw all {REPLAYED} acknowledged: median {:.2} ms (target < 20 ms)",
        median(&mut resumed)
    );
}

/// `--profile plain|reliable SIZE COUNT`: one throughput run of one mode and nothing
/// else, for `strace -c -f`, `perf stat` or callgrind, so that the counts of the two
/// modes can be compared per message.
fn profile_one() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(i) = args.iter().position(|a| a == "--profile") else {
        return false;
    };
    let mode = args.get(i + 1).map(String::as_str);
    let size: usize = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1024);
    let count: usize = args
        .get(i + 3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let took = match mode {
        Some("plain") => plain_run(size, count),
        Some("reliable") => reliable_run(size, count),
        _ => panic!("--profile plain|reliable [SIZE] [COUNT]"),
    };
    println!(
        "{} {size} B x {count}: {:.0} msg/s",
        mode.unwrap_or_default(),
        count as f64 / took.as_secs_f64()
    );
    true
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

/// Plain binary messages: `count` of `size` bytes, timed until the server's handler has
/// received the last one.
fn plain_run(size: usize, count: usize) -> Duration {
    let (done_tx, done_rx) = mpsc::channel();
    let done_tx = Mutex::new(done_tx);
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(move |mut ws| {
            let mut got = 0;
            while let Ok(Some(_)) = ws.recv() {
                got += 1;
                if got == count {
                    let _ = done_tx.lock().unwrap().send(Instant::now());
                }
            }
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let mut ws = Client::connect(&url, Config::default()).unwrap();
    let data = payload(size);
    let start = Instant::now();
    for _ in 0..count {
        ws.send(Message::binary(data.clone())).unwrap();
    }
    let end = done_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    end - start
}

/// Reliable messages: the same, through `ReliableClient::send` (waiting on
/// backpressure) to a `ReliableServer` whose application takes `Delivered` events.
fn reliable_run(size: usize, count: usize) -> Duration {
    let server =
        ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let registry = server.registry();
    let _handle = server.spawn().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut got = 0;
        let mut events = Vec::with_capacity(1024);
        while registry.next_events(Some(Duration::from_secs(120)), 1024, &mut events) > 0 {
            for (_, event) in events.drain(..) {
                if matches!(event, SessionEvent::Delivered { .. }) {
                    got += 1;
                    if got == count {
                        let _ = done_tx.send(Instant::now());
                        return;
                    }
                }
            }
        }
    });
    let url = format!("ws://{addr}/");
    let mut client = ReliableClient::connect(&url, ReliableOptions::default()).unwrap();
    let data = payload(size);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count {
        match client.send(data.clone(), false) {
            Ok(_) => sent += 1,
            Err(Error::Reliable(e)) if e.is_full() => {
                let _ = client.next_event(Some(Duration::from_millis(1))).unwrap();
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    let end = loop {
        if let Ok(end) = done_rx.try_recv() {
            break end;
        }
        // Keep reading acks, as an application would.
        let _ = client.next_event(Some(Duration::from_millis(1))).unwrap();
    };
    end - start
}

/// A proxy that can hold back what the client sends and cut every connection.
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    holding: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            holding: Arc::new(AtomicBool::new(false)),
            sockets: Arc::new(Mutex::new(Vec::new())),
        };
        let p = proxy.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(upstream).unwrap();
                for s in [&client, &server] {
                    s.set_nodelay(true).unwrap();
                    p.sockets.lock().unwrap().push(s.try_clone().unwrap());
                }
                let holding = Arc::clone(&p.holding);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(c2, s2, Some(holding)));
                thread::spawn(move || pump(server, client, None));
            }
        });
        proxy
    }

    fn cut(&self) {
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, holding: Option<Arc<AtomicBool>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while holding.as_ref().is_some_and(|h| h.load(Ordering::Acquire)) {
            thread::sleep(Duration::from_micros(200));
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `REPLAYED` messages that the proxy holds back, cuts, and times the way back:
/// returns (cut -> client saw all acked, cut -> server application had all delivered).
fn resume_run() -> (Duration, Duration) {
    let server =
        ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default()).unwrap();
    let registry = server.registry();
    let proxy = Proxy::start(server.local_addr().unwrap());
    let _handle = server.spawn().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut got = 0;
        while let Some((_, event)) = registry.next_event(Some(Duration::from_secs(60))) {
            if matches!(event, SessionEvent::Delivered { .. }) {
                got += 1;
                if got == REPLAYED {
                    let _ = done_tx.send(Instant::now());
                    return;
                }
            }
        }
    });
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::ZERO;
    reconnect.jitter_percent = 0;
    let options = ReliableOptions {
        reconnect,
        ..ReliableOptions::default()
    };
    let url = format!("ws://{}/", proxy.addr);
    let mut client = ReliableClient::connect(&url, options).unwrap();
    proxy.holding.store(true, Ordering::Release);
    for i in 0..REPLAYED {
        client.send(Bytes::from(format!("{i:>31}")), true).unwrap();
    }
    assert_eq!(client.unacked_messages(), REPLAYED);
    let start = Instant::now();
    proxy.cut();
    proxy.holding.store(false, Ordering::Release);
    assert!(client.wait_acked(Some(Duration::from_secs(30))).unwrap());
    let acked = start.elapsed();
    let delivered = done_rx.recv_timeout(Duration::from_secs(30)).unwrap() - start;
    assert!(client.connections() >= 2, "the cut was not noticed");
    (acked, delivered)
}
