//! Room chat at peak throughput: `--clients` plain-mode clients (default 100) in `--rooms`
//! rooms (default 10) of the `sockeye` server, every client sending room messages with up
//! to `--window` of its own in flight (it sends the next when the server hands one of its
//! own back), for `--seconds` after a second of warm-up, on each runtime. The server is a
//! child process pinned to core 0; the clients share one `async-io` thread, to be run on
//! core 1. A benchmark, not a test: it prints numbers and never fails on speed.
//!
//! Each message carries its sender, a sequence number and its send time, so every member
//! that receives it (the sender included) records the delivery latency. Printed per runtime
//! and window: messages sent/s, deliveries/s, latency p50/p99/max, and how evenly the
//! clients shared the server (fewest, median and most sends per client, and Jain's
//! fairness index: 1.0 when every client sent as many).
//!
//! ```sh
//! cargo build --release -p sockeye -p sockeye-bench
//! taskset -c 1 target/release/room_chat --windows 1,4,16 --seconds 5
//! ```

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use sockeye_bench::server_process::ServerProcess;
use sockeye_bench::ws_frames::{client_text_frame, head_end, server_frames, upgrade_request};

/// What every client shares.
struct Run {
    started: Instant,
    /// All clients have joined: sending may start.
    go: Cell<bool>,
    joined: Cell<usize>,
    /// Latencies are recorded from `measure_from` on, sends counted until `stop_at`.
    measure_from: Cell<Option<Instant>>,
    stop_at: Cell<Option<Instant>>,
    /// Delivery latencies in the measured window, µs.
    latencies: RefCell<Vec<u32>>,
    /// Messages each client sent in the measured window.
    sends: RefCell<Vec<u64>>,
}

impl Run {
    fn measuring(&self, now: Instant) -> bool {
        self.measure_from.get().is_some_and(|from| now >= from)
            && self.stop_at.get().is_some_and(|stop| now < stop)
    }
}

/// The `data` of a chat message: `"client seq sent_ns"`.
fn parse_data(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let at = text.find(r#""data":""#)? + 8;
    let data = &text[at..text[at..].find('"')? + at];
    let mut words = data.split(' ');
    Some((
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
    ))
}

async fn client(addr: SocketAddr, me: usize, room: String, window: usize, run: Rc<Run>) {
    let mut s = Async::<TcpStream>::connect(addr).await.expect("connect");
    s.write_all(upgrade_request(&format!("/ws?user=c{me}")).as_bytes())
        .await
        .expect("upgrade");
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut upgraded = false;
    let mut joined = false;
    let mut sending = false;
    let mut in_flight = 0usize;
    let mut seq = 0u64;
    let mut out: Vec<u8> = Vec::new();
    loop {
        let read = async { s.read(&mut chunk).await.ok() };
        let n = if sending {
            read.await
        } else {
            // Until it sends, a client also wakes to see whether it may start.
            let go = async {
                while !run.go.get() {
                    Timer::after(Duration::from_millis(5)).await;
                }
                Some(usize::MAX)
            };
            futures_lite::future::or(read, go).await
        };
        let n = match n {
            Some(0) | None => return,
            Some(usize::MAX) => 0,
            Some(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            let Some(end) = head_end(&buf) else { continue };
            buf.drain(..end);
            upgraded = true;
            let join = format!(r#"{{"type":"join","room":"{room}"}}"#);
            s.write_all(&client_text_frame(join.as_bytes()))
                .await
                .expect("join");
        }
        let now = Instant::now();
        let used = server_frames(&buf, |op, payload| {
            if op != 1 {
                return;
            }
            if !joined && payload.starts_with(br#"{"type":"joined""#) {
                joined = true;
                run.joined.set(run.joined.get() + 1);
            } else if let Some((from, _, sent)) = parse_data(payload) {
                if run.measuring(now) {
                    let latency =
                        (now.duration_since(run.started).as_nanos() as u64).saturating_sub(sent);
                    run.latencies.borrow_mut().push((latency / 1_000) as u32);
                }
                if from == me {
                    in_flight -= 1;
                }
            }
        });
        buf.drain(..used);
        if run.go.get() && run.stop_at.get().is_none_or(|stop| now < stop) {
            sending = true;
            while in_flight < window {
                let sent = Instant::now().duration_since(run.started).as_nanos();
                let text =
                    format!(r#"{{"type":"message","room":"{room}","data":"{me} {seq} {sent}"}}"#);
                out.extend_from_slice(&client_text_frame(text.as_bytes()));
                seq += 1;
                in_flight += 1;
                if run.measuring(now) {
                    run.sends.borrow_mut()[me] += 1;
                }
            }
            if !out.is_empty() {
                s.write_all(&out).await.expect("send");
                out.clear();
            }
        }
    }
}

struct Row {
    sent_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    fewest: u64,
    median: u64,
    most: u64,
    jain: f64,
}

fn measure(runtime: &str, args: &Args, window: usize, port: u16) -> Row {
    let server = ServerProcess::start(
        runtime,
        port,
        &["--max-connections".into(), (args.clients + 100).to_string()],
    );
    let addr = server.addr();
    let run = Rc::new(Run {
        started: Instant::now(),
        go: Cell::new(false),
        joined: Cell::new(0),
        measure_from: Cell::new(None),
        stop_at: Cell::new(None),
        latencies: RefCell::new(Vec::new()),
        sends: RefCell::new(vec![0; args.clients]),
    });
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        for i in 0..args.clients {
            let room = format!("r{}", i % args.rooms);
            ex.spawn(client(addr, i, room, window, Rc::clone(&run)))
                .detach();
        }
        while run.joined.get() < args.clients {
            Timer::after(Duration::from_millis(5)).await;
        }
        let from = Instant::now() + Duration::from_secs(1);
        run.measure_from.set(Some(from));
        run.stop_at
            .set(Some(from + Duration::from_secs_f64(args.seconds)));
        run.go.set(true);
        Timer::at(from + Duration::from_secs_f64(args.seconds)).await;
        // Deliveries still in flight at the stop are left out, not waited for.
    }));
    drop(server);
    let seconds = args.seconds;
    let mut latencies = run.latencies.take();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1e3)
    };
    let mut sends = run.sends.take();
    sends.sort_unstable();
    let total: u64 = sends.iter().sum();
    let squares: f64 = sends.iter().map(|&x| (x as f64).powi(2)).sum();
    Row {
        sent_per_s: total as f64 / seconds,
        delivered_per_s: latencies.len() as f64 / seconds,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: latencies.last().map_or(0.0, |&us| f64::from(us) / 1e3),
        fewest: sends.first().copied().unwrap_or(0),
        median: sends.get(sends.len() / 2).copied().unwrap_or(0),
        most: sends.last().copied().unwrap_or(0),
        jain: (total as f64).powi(2) / (sends.len() as f64 * squares).max(1.0),
    }
}

struct Args {
    clients: usize,
    rooms: usize,
    windows: Vec<usize>,
    seconds: f64,
    runtimes: Vec<String>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let number =
        |name: &str, default: usize| value(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let list = |name: &str, default: &str| -> Vec<String> {
        value(name)
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let args = Args {
        clients: number("--clients", 100),
        rooms: number("--rooms", 10),
        windows: list("--windows", "1,4,16")
            .iter()
            .map(|w| w.parse().expect("--windows 1,4,16"))
            .collect(),
        seconds: value("--seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5.0),
        runtimes: list("--runtimes", "smol,threads"),
    };
    println!(
        "room chat: {} clients in {} rooms, {} s measured after 1 s of warm-up; latency is \
         send to each member's receipt (the sender's own copy included)",
        args.clients, args.rooms, args.seconds
    );
    println!(
        "| runtime | window | sent/s | delivered/s | p50 ms | p99 ms | max ms | sends per \
         client (fewest / median / most) | Jain |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut port = 19_500;
    for runtime in &args.runtimes {
        for &window in &args.windows {
            port += 1;
            let r = measure(runtime, &args, window, port);
            println!(
                "| {runtime} | {window} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {} / {} / {} | {:.3} |",
                r.sent_per_s,
                r.delivered_per_s,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.fewest,
                r.median,
                r.most,
                r.jain
            );
        }
    }
}
