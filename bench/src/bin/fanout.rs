//! Fan-out: how long a push to a room of N connections takes to reach the last member,
//! and how many deliveries per second a burst of pushes makes, on the `sockeye` server
//! (a child process, `target/release/sockeye`, pinned to core 0 with `taskset` when it is
//! there) with each runtime. The members are plain-mode WebSocket clients in this process
//! on one `async-io` thread. A benchmark, not a test: it prints numbers and never fails on
//! speed.
//!
//! A burst is `--burst` pushes sent twice: as one batch request (`POST /api/push` with an
//! array), and as single pushes from `--publishers` threads at once (a backend pushing
//! from several connections). Either way the pushes that reach the server together can
//! leave in one write per member. Beside the server it measures the floor of this machine: the same benchmark binary as
//! the server (`--floor-server`), which answers the upgrades and the joins by hand and
//! then writes one pre-built frame to every member's socket, one `write` each, for a push
//! (and for a burst, all of the burst's frames in one `write` per member), doing nothing
//! else. No server that writes each member's socket can beat it.
//!
//! ```sh
//! cargo build --release -p sockeye
//! taskset -c 1 cargo run --release -p sockeye-bench --bin fanout -- --members 10000
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use sockeye_bench::members::{batch_body, delivered, median, open_room, post, push_body, Seen};
use sockeye_bench::server_process::{pinned, ServerProcess};

const ROOM: &str = r#""room":"big""#;

fn push(addr: SocketAddr, k: usize) -> Instant {
    post(addr, &push_body(ROOM, k))
}

/// Pushes `from..to` in one request (a batch).
fn push_batch(addr: SocketAddr, from: usize, to: usize) -> Instant {
    post(addr, &batch_body(ROOM, from, to))
}

/// The room message a member receives for push `k`, as a server frame.
fn push_frame(k: usize) -> Vec<u8> {
    let payload = format!(r#"{{"type":"message","room":"big","from":"api","data":{k}}}"#);
    let mut out = vec![0x81, payload.len() as u8];
    out.extend_from_slice(payload.as_bytes());
    out
}

/// The floor: accepts `members` upgrades and a control connection on `port`, answers
/// each upgrade and its join by hand, then for each control line `P k` writes push `k`'s
/// frame to every member, and for `B from to` the frames of pushes `from..to` in one
/// write per member; answers `ok` after each.
fn floor_server(port: u16, members: usize) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the floor");
    let mut socks = Vec::with_capacity(members);
    let control = loop {
        let (mut s, _) = listener.accept().expect("accept");
        // A client sends its whole head and then waits for the answer.
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"CONTROL\n") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        if head.starts_with(b"GET") {
            let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec();
            let joined = br#"{"type":"joined","room":"big","members":[],"count":0}"#;
            answer.extend_from_slice(&[0x81, joined.len() as u8]);
            answer.extend_from_slice(joined);
            s.write_all(&answer).expect("answer an upgrade");
            socks.push(s);
        } else if head == b"CONTROL\n" && socks.len() == members {
            break s;
        }
        // Anything else (the probe that connects and closes) is dropped.
    };
    let mut lines = std::io::BufReader::new(control.try_clone().expect("control"));
    let mut control = control;
    // Nothing may follow `CONTROL` before this answer, so the head read above cannot
    // have taken a command.
    control.write_all(b"ok\n").expect("answer the control");
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut lines, &mut line).unwrap_or(0) > 0 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<usize>().ok());
        let frames: Vec<u8> = match (words.first(), number(1), number(2)) {
            (Some(&"P"), Some(k), None) => push_frame(k),
            (Some(&"B"), Some(from), Some(to)) => (from..to).flat_map(push_frame).collect(),
            _ => break,
        };
        for s in &mut socks {
            s.write_all(&frames).expect("write a member");
        }
        control.write_all(b"ok\n").expect("answer the control");
        line.clear();
    }
}

/// Who makes the pushes: the server's push API, as one batch request or as single
/// pushes from `threads` threads at once, or the floor's control connection.
enum Publisher {
    Api { addr: SocketAddr, threads: usize },
    Batch(SocketAddr),
    Floor(TcpStream),
}

impl Publisher {
    /// Starts pushes `from..to` on threads of their own (the caller must keep reading);
    /// the handle answers when they were started.
    fn start(&self, from: usize, to: usize) -> std::thread::JoinHandle<Instant> {
        match self {
            Publisher::Api { addr, threads } => {
                let (addr, threads) = (*addr, (*threads).min(to - from).max(1));
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let pushers: Vec<_> = (0..threads)
                        .map(|t| {
                            std::thread::spawn(move || {
                                for k in (from + t..to).step_by(threads) {
                                    push(addr, k);
                                }
                            })
                        })
                        .collect();
                    for pusher in pushers {
                        pusher.join().expect("pusher");
                    }
                    started
                })
            }
            Publisher::Batch(addr) => {
                let addr = *addr;
                std::thread::spawn(move || {
                    if to == from + 1 {
                        push(addr, from)
                    } else {
                        push_batch(addr, from, to)
                    }
                })
            }
            Publisher::Floor(control) => {
                let mut control = control.try_clone().expect("control");
                std::thread::spawn(move || {
                    let line = if to == from + 1 {
                        format!("P {from}\n")
                    } else {
                        format!("B {from} {to}\n")
                    };
                    let started = Instant::now();
                    control.write_all(line.as_bytes()).expect("control");
                    let mut ok = [0u8; 3];
                    control.read_exact(&mut ok).expect("control answer");
                    started
                })
            }
        }
    }
}

/// What to measure against: the `sockeye` server on a runtime, or the floor.
#[derive(Clone, Copy)]
enum Target<'a> {
    Sockeye(&'a str),
    Floor,
}

fn start_floor(members: usize, port: u16) -> ServerProcess {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = pinned(&exe, "0");
    cmd.args(["--floor-server", &port.to_string(), &members.to_string()]);
    let child = cmd.spawn().expect("start the floor");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    ServerProcess::adopt(child, addr)
}

/// What one target measured.
struct Measured {
    /// Median publish-to-last-delivery of single pushes, ms.
    latency: f64,
    /// Deliveries/s of a burst sent as one batch (the floor: one write per member).
    batch_rate: f64,
    /// Deliveries/s of a burst of single pushes from several publishers at once.
    concurrent_rate: Option<f64>,
}

/// Publish-to-last-delivery of single pushes (ms), and deliveries/s of bursts.
fn measure(target: Target<'_>, args: &Args, port: u16) -> Measured {
    let Args {
        members,
        rounds,
        burst,
        publishers,
    } = *args;
    let server = match target {
        Target::Sockeye(runtime) => ServerProcess::start(
            runtime,
            port,
            &["--max-connections".into(), (members + 100).to_string()],
        ),
        Target::Floor => start_floor(members, port),
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let total = rounds + 2 * burst;
    let seen = Seen::shared(total);
    let ex = LocalExecutor::new();
    let result = async_io::block_on(ex.run(async {
        open_room(&ex, addr, "m", members, "big", &seen).await;
        let publisher = match target {
            Target::Sockeye(_) => Publisher::Batch(addr),
            Target::Floor => {
                let mut control = TcpStream::connect(addr).expect("control");
                control.write_all(b"CONTROL\n").expect("control");
                let mut ok = [0u8; 3];
                control.read_exact(&mut ok).expect("the floor's answer");
                Publisher::Floor(control)
            }
        };
        let wait_all = |k: usize| {
            let seen = Rc::clone(&seen);
            async move {
                assert!(
                    delivered(&seen, k, members, Duration::from_secs(60)).await,
                    "push {k} reached {} of {members} members",
                    seen.borrow().got(k)
                );
            }
        };
        let mut latencies = Vec::new();
        for k in 0..rounds {
            let pusher = publisher.start(k, k + 1);
            wait_all(k).await;
            let started = pusher.join().expect("pusher");
            let last = seen.borrow().last(k).expect("delivered");
            latencies.push(last.duration_since(started).as_secs_f64() * 1e3);
        }
        let rate = |publisher: &Publisher, from: usize| {
            let pusher = publisher.start(from, from + burst);
            let wait_all = &wait_all;
            let seen = &seen;
            async move {
                for k in from..from + burst {
                    wait_all(k).await;
                }
                let started = pusher.join().expect("pusher");
                let last = (from..from + burst)
                    .filter_map(|k| seen.borrow().last(k))
                    .max()
                    .expect("delivered");
                (members * burst) as f64 / last.duration_since(started).as_secs_f64()
            }
        };
        let batch_rate = rate(&publisher, rounds).await;
        let concurrent_rate = match target {
            Target::Sockeye(_) => {
                let publisher = Publisher::Api {
                    addr,
                    threads: publishers,
                };
                Some(rate(&publisher, rounds + burst).await)
            }
            Target::Floor => None,
        };
        Measured {
            latency: median(latencies),
            batch_rate,
            concurrent_rate,
        }
    }));
    drop(server);
    result
}

/// `--only floor,smol,threads`: the targets to measure (all by default).
fn args_only(args: &[String]) -> Option<Vec<String>> {
    let i = args.iter().position(|a| a == "--only")?;
    Some(args.get(i + 1)?.split(',').map(str::to_string).collect())
}

#[derive(Clone, Copy)]
struct Args {
    members: usize,
    rounds: usize,
    burst: usize,
    publishers: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-server") {
        let number = |j: usize| args.get(i + j).and_then(|v| v.parse::<usize>().ok());
        let (Some(port), Some(members)) =
            (number(1).and_then(|p| u16::try_from(p).ok()), number(2))
        else {
            panic!("--floor-server PORT MEMBERS");
        };
        floor_server(port, members);
        return;
    }
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let args = Args {
        members: flag("--members", 10_000),
        rounds: flag("--rounds", 9),
        burst: flag("--burst", 20),
        publishers: flag("--publishers", 4),
    };
    println!(
        "fan-out to a room of {} plain connections: median of {} single pushes, then a \
         burst of {} from {} publishers at once",
        args.members, args.rounds, args.burst, args.publishers
    );
    println!(
        "| server | publish to last delivery (ms) | burst as one batch (deliveries/s) | \
         burst from {} publishers (deliveries/s) |",
        args.publishers
    );
    println!("|---|---|---|---|");
    let targets = [
        Target::Floor,
        Target::Sockeye("smol"),
        Target::Sockeye("threads"),
    ];
    let only = args_only(&std::env::args().collect::<Vec<_>>());
    for (i, target) in targets.into_iter().enumerate() {
        let key = match target {
            Target::Floor => "floor",
            Target::Sockeye(runtime) => runtime,
        };
        if only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|o| o == key))
        {
            continue;
        }
        let name = match target {
            Target::Floor => "floor (one write per member)".to_string(),
            Target::Sockeye(runtime) => format!("sockeye --runtime {runtime}"),
        };
        if matches!(target, Target::Sockeye("threads")) && args.members > 5_000 {
            // Two descriptors and two threads per connection: near 9,000 it runs out of
            // memory for thread stacks, and of descriptors past 10,000.
            println!(
                "| {name} | (two threads and two descriptors per connection: skipped above 5,000; {} members) | | |",
                args.members * 2
            );
            continue;
        }
        let m = measure(target, &args, 19_400 + i as u16);
        let concurrent = m
            .concurrent_rate
            .map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
        println!(
            "| {name} | {:.1} | {:.0} | {concurrent} |",
            m.latency, m.batch_rate
        );
    }
}
