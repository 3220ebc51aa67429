//! permessage-deflate on a JSON chat workload, against the `sockeye` server binary: for
//! each setting (no compression; context takeover both ways; the server's side without
//! it; the client's side without it; neither side keeping context), what crosses the wire
//! and how fast, then what it costs in memory at `--connections` (default 10,000).
//! A benchmark, not a test: it prints numbers and never fails on speed.
//!
//! - **Wire and rate**: `--clients` plain-mode clients (default 40) in rooms of
//!   `--room` (default 8), each sending chat messages (JSON like a chat app's: user, text
//!   from a vocabulary, time, client, reply-to) to its room with one in flight, the next
//!   when its own comes back, for `--seconds` (default 3). The clients are
//!   `sockeye-core` connections driven over blocking sockets by this program, so every
//!   byte read and written is counted exactly (frame headers and masks included, the
//!   handshake not): bytes up per message sent, bytes down per delivery, messages sent/s,
//!   deliveries/s, and each ratio against no compression.
//! - **Memory**: `--connections` connections are opened one after another, each sends one
//!   compressed direct message to itself and reads it back compressed (so the server's
//!   compressor and decompressor are both in use), then the client drops its codec and
//!   keeps only the socket. Reported: the server's RSS growth per connection, and the
//!   codec bytes the server accounts (`sockeye_deflate_memory_bytes`) per connection.
//!
//! - **Fan-out**: `--pushes` (default 20) room messages of about 600 bytes of JSON, pushed
//!   one at a time through `POST /api/push` to a room of `--members` (default 10,000)
//!   plain-mode members (raw clients on one `async-io` thread, inflating what comes
//!   compressed): time from the push to its last delivery, without compression and with
//!   neither side keeping context, where the server compresses each message once for all
//!   members. `--baseline-server PATH` adds the same run against another `sockeye` binary
//!   (one built before the encode-once change: compressed once per member).
//!
//! The server is a child process pinned to core 0 when `taskset` is there; run the
//! benchmark on core 1. Needs a descriptor limit above `--connections` + 100.
//!
//! ```sh
//! cargo build --release -p sockeye -p sockeye-bench
//! taskset -c 1 target/release/deflate_chat --seconds 3 --connections 10000
//! ```

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant as StdInstant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use sockeye_bench::server_process::{pinned, ServerProcess};
use sockeye_bench::ws_frames::{client_text_frame, head_end, server_frames_raw};
use sockeye_core::handshake::{ClientRequest, DeflateConfig};
use sockeye_core::{ClientHandshake, Config, Connection, Event, Instant, Message, SeededEntropy};

/// One way to run compression: the server's flags and the client's offer.
struct Setting {
    name: &'static str,
    server_args: &'static [&'static str],
    offer: Option<DeflateConfig>,
}

fn settings() -> Vec<Setting> {
    let on = DeflateConfig::on();
    let mut server_resets = on.clone();
    server_resets.allow_context_takeover = false;
    let mut client_resets = on.clone();
    client_resets.keep_compressor = false;
    vec![
        Setting {
            name: "off",
            server_args: &[],
            offer: None,
        },
        Setting {
            name: "takeover both",
            server_args: &["--deflate"],
            offer: Some(on.clone()),
        },
        Setting {
            name: "server no-ctx",
            server_args: &["--deflate"],
            offer: Some(server_resets),
        },
        Setting {
            name: "client no-ctx",
            server_args: &["--deflate"],
            offer: Some(client_resets),
        },
        Setting {
            name: "no-ctx both",
            server_args: &["--deflate", "--deflate-no-context-takeover"],
            offer: Some(on),
        },
    ]
}

/// A `sockeye-core` client connection over a blocking socket, counting the bytes it reads
/// and writes after the handshake.
struct Peer {
    stream: TcpStream,
    conn: Connection,
    epoch: StdInstant,
    chunk: Vec<u8>,
    bytes_in: u64,
    bytes_out: u64,
}

impl Peer {
    fn connect(addr: SocketAddr, path: &str, offer: Option<&DeflateConfig>, seed: u64) -> Peer {
        let epoch = StdInstant::now();
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let config = Config::default();
        let request = ClientRequest {
            host: "bench",
            path,
            protocols: &[],
            origin: None,
            headers: &[],
        };
        let mut entropy = SeededEntropy::new(seed);
        let mut handshake = match offer {
            Some(offer) => {
                ClientHandshake::with_deflate(&config, Instant::ZERO, request, &mut entropy, offer)
            }
            None => ClientHandshake::new(&config, Instant::ZERO, request, &mut entropy),
        };
        while let Some(head) = handshake.poll_transmit() {
            stream.write_all(&head).expect("write the request");
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let response = loop {
            let n = stream.read(&mut chunk).expect("read the response");
            assert!(n > 0, "the server closed during the handshake");
            let now = Instant::from_nanos(epoch.elapsed().as_nanos() as u64);
            if let Some(response) = handshake.handle_bytes(now, &chunk[..n]).expect("a 101") {
                break response;
            }
        };
        let now = Instant::from_nanos(epoch.elapsed().as_nanos() as u64);
        let conn = response.into_connection(now, config, SeededEntropy::new(seed ^ 0x5eed));
        let mut peer = Peer {
            stream,
            conn,
            epoch,
            chunk,
            bytes_in: 0,
            bytes_out: 0,
        };
        peer.flush();
        peer
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream.write_all(&bytes).expect("write");
            self.bytes_out += bytes.len() as u64;
        }
    }

    fn send(&mut self, text: String) {
        let now = self.now();
        self.conn
            .send(now, Message::text(text))
            .expect("the connection takes the message");
        self.flush();
    }

    /// The next text message, reading the socket as needed.
    fn recv(&mut self) -> Bytes {
        loop {
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Message(Message::Text(text)) => return text,
                    Event::Closed(close) => panic!("the server closed: {close:?}"),
                    _ => {}
                }
            }
            self.flush();
            let n = self.stream.read(&mut self.chunk).expect("read");
            assert!(n > 0, "the server closed the connection");
            self.bytes_in += n as u64;
            let now = self.now();
            self.conn.handle_bytes(now, &self.chunk[..n]);
            self.flush();
        }
    }

    /// The next message whose `"type"` is `kind`.
    fn recv_type(&mut self, kind: &str) -> Bytes {
        let want = format!(r#""type":"{kind}""#);
        loop {
            let text = self.recv();
            if contains(&text, want.as_bytes()) {
                return text;
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Chat messages as a chat app sends them: a JSON object with the user, some words from
/// a vocabulary, the time, the client, and sometimes a reply-to id.
struct Chat {
    state: u64,
}

const WORDS: &[&str] = &[
    "hey", "the", "meeting", "is", "at", "three", "can", "you", "send", "me", "build", "deploy",
    "looks", "good", "thanks", "lunch", "today", "tomorrow", "review", "please", "merged",
    "broken", "fixed", "coffee", "anyone", "for", "ok", "sure", "in", "five", "minutes", "on",
    "my", "way", "server", "logs", "ticket", "release", "notes", "done",
];

impl Chat {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// The `data` object of message `seq` from `user`.
    fn data(&mut self, user: usize, seq: u64) -> String {
        let n = 4 + self.next() % 14;
        let text = (0..n)
            .map(|_| WORDS[(self.next() % WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ");
        let reply = match self.next() % 3 {
            0 => format!(r#","reply_to":"m{}""#, self.next() % 100_000),
            _ => String::new(),
        };
        format!(
            r#"{{"id":"c{user}-{seq}","user":"c{user}","text":"{text}","sent_at":{},"client":"web/2.3.1 (chromium)"{reply}}}"#,
            1_764_806_400_000u64 + seq * 731 + self.next() % 500
        )
    }
}

/// What one setting's chat run measured.
struct Rate {
    sent: u64,
    delivered: u64,
    up: u64,
    down: u64,
    seconds: f64,
    agreed: String,
}

fn chat_run(addr: SocketAddr, setting: &Setting, clients: usize, room: usize, secs: f64) -> Rate {
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|me| {
            let offer = setting.offer.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut peer =
                    Peer::connect(addr, &format!("/ws?user=c{me}"), offer.as_ref(), me as u64);
                let agreed = format!("{:?}", peer.conn.deflate_params());
                peer.recv_type("welcome");
                peer.send(format!(r#"{{"type":"join","room":"r{}"}}"#, me / room));
                peer.recv_type("joined");
                start.wait();
                let (up0, down0) = (peer.bytes_out, peer.bytes_in);
                let begun = StdInstant::now();
                let until = begun + Duration::from_secs_f64(secs);
                let mut chat = Chat {
                    state: 0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1),
                };
                let mine = format!(r#""from":"c{me}""#);
                let (mut sent, mut delivered) = (0u64, 0u64);
                while StdInstant::now() < until {
                    let data = chat.data(me, sent);
                    peer.send(format!(
                        r#"{{"type":"message","room":"r{}","data":{data}}}"#,
                        me / room
                    ));
                    sent += 1;
                    loop {
                        let got = peer.recv_type("message");
                        delivered += 1;
                        if contains(&got, mine.as_bytes()) {
                            break;
                        }
                    }
                }
                let seconds = begun.elapsed().as_secs_f64();
                // Counted up to here: what arrives after is the others' last messages.
                let (up, down) = (peer.bytes_out - up0, peer.bytes_in - down0);
                (sent, delivered, up, down, seconds, agreed, peer)
            })
        })
        .collect();
    start.wait();
    let mut rate = Rate {
        sent: 0,
        delivered: 0,
        up: 0,
        down: 0,
        seconds: 0.0,
        agreed: String::new(),
    };
    // Every client is kept connected until all have stopped, so no room shrinks early.
    let mut peers = Vec::new();
    for t in threads {
        let (sent, delivered, up, down, seconds, agreed, peer) = t.join().expect("a client");
        rate.sent += sent;
        rate.delivered += delivered;
        rate.up += up;
        rate.down += down;
        rate.seconds = rate.seconds.max(seconds);
        rate.agreed = agreed;
        peers.push(peer);
    }
    rate
}

/// The server's resident set, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// One metric of the server's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page.lines()
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
        .unwrap_or(0)
}

/// Server memory with `n` connections that each sent and got one compressed message.
struct Footprint {
    rss_per_conn: f64,
    codec_per_conn: f64,
    deflated: u64,
}

fn memory_run(server: &ServerProcess, setting: &Setting, n: usize) -> Footprint {
    let addr = server.addr();
    let idle = rss_kib(server.pid());
    let mut chat = Chat { state: 0x2545_f491 };
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let mut peer = Peer::connect(
            addr,
            &format!("/ws?user=m{i}"),
            setting.offer.as_ref(),
            i as u64,
        );
        peer.recv_type("welcome");
        let data = chat.data(i, 0);
        peer.send(format!(r#"{{"type":"message","to":"m{i}","data":{data}}}"#));
        peer.recv_type("message");
        // The client's codec goes; the server keeps the connection as it is.
        sockets.push(peer.stream);
    }
    let loaded = rss_kib(server.pid());
    let codec = metric(addr, "sockeye_deflate_memory_bytes");
    let deflated = metric(addr, "sockeye_deflate_connections");
    drop(sockets);
    Footprint {
        rss_per_conn: (loaded.saturating_sub(idle) * 1024) as f64 / n as f64,
        codec_per_conn: codec as f64 / n as f64,
        deflated,
    }
}

/// What the fan-out's members saw: per push, how many got it and when the last did.
struct Seen {
    got: Vec<usize>,
    last: Vec<Option<StdInstant>>,
    joined: usize,
}

/// The push number `"k":N` in a room message.
fn push_number(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find(r#""k":"#)? + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One fan-out member: upgrade (offering permessage-deflate if `deflate`), join the room,
/// count every push, inflating compressed ones (no context is kept: each message is a
/// stream of its own).
async fn member(addr: SocketAddr, i: usize, deflate: bool, seen: Rc<RefCell<Seen>>) {
    let mut s = Async::<TcpStream>::connect(addr).await.expect("connect");
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET /ws?user=f{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("upgrade");
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut head_done = false;
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = head_end(&buf) else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert_eq!(head.contains("permessage-deflate"), deflate, "{head}");
            buf.drain(..end);
            head_done = true;
            s.write_all(&client_text_frame(br#"{"type":"join","room":"big"}"#))
                .await
                .expect("join");
        }
        let used = server_frames_raw(&buf, |b0, payload| {
            if b0 & 0x0f != 1 {
                return;
            }
            let inflated;
            let text = if b0 & 0x40 != 0 {
                let mut stream = payload.to_vec();
                // The tail the sender removed, then an empty final block.
                stream.extend_from_slice(&[0, 0, 0xff, 0xff, 0x03, 0x00]);
                inflated = miniz_oxide::inflate::decompress_to_vec(&stream).expect("inflate");
                &inflated[..]
            } else {
                payload
            };
            let mut seen = seen.borrow_mut();
            if text.starts_with(br#"{"type":"joined""#) {
                seen.joined += 1;
            } else if let Some(k) = push_number(text) {
                if let Some(count) = seen.got.get_mut(k) {
                    *count += 1;
                    seen.last[k] = Some(StdInstant::now());
                }
            }
        });
        buf.drain(..used);
    }
}

/// Pushes room message `k` (about 600 bytes of JSON) and returns when it was sent.
fn push(addr: SocketAddr, k: usize, chat: &mut Chat) -> StdInstant {
    let text: Vec<String> = (0..4).map(|j| chat.data(k, j as u64)).collect();
    let body = format!(
        r#"{{"room":"big","data":{{"k":{k},"thread":[{}]}}}}"#,
        text.join(",")
    );
    sockeye_bench::members::post(addr, &body)
}

/// Milliseconds from each push to its last delivery, for `pushes` pushes to `members`.
fn fanout_run(addr: SocketAddr, members: usize, pushes: usize, deflate: bool) -> Vec<f64> {
    let seen = Rc::new(RefCell::new(Seen {
        got: vec![0; pushes],
        last: vec![None; pushes],
        joined: 0,
    }));
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        for i in 0..members {
            ex.spawn(member(addr, i, deflate, Rc::clone(&seen)))
                .detach();
            if i % 256 == 255 {
                while seen.borrow().joined + 512 < i {
                    Timer::after(Duration::from_millis(1)).await;
                }
            }
        }
        while seen.borrow().joined < members {
            Timer::after(Duration::from_millis(5)).await;
        }
        let mut latencies = Vec::new();
        for k in 0..pushes {
            let pusher = std::thread::spawn(move || {
                push(
                    addr,
                    k,
                    &mut Chat {
                        state: k as u64 + 7,
                    },
                )
            });
            while seen.borrow().got[k] < members {
                Timer::after(Duration::from_micros(200)).await;
            }
            let started = pusher.join().expect("pusher");
            let last = seen.borrow().last[k].expect("delivered");
            latencies.push(last.duration_since(started).as_secs_f64() * 1e3);
        }
        latencies
    }))
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = arg(&args, "--clients", "40").parse().expect("--clients");
    let room: usize = arg(&args, "--room", "8").parse().expect("--room");
    let secs: f64 = arg(&args, "--seconds", "3").parse().expect("--seconds");
    let connections: usize = arg(&args, "--connections", "10000")
        .parse()
        .expect("--connections");
    let runtime = arg(&args, "--runtime", "smol");
    let members: usize = arg(&args, "--members", "10000").parse().expect("--members");
    let pushes: usize = arg(&args, "--pushes", "20").parse().expect("--pushes");
    let baseline = args
        .iter()
        .position(|a| a == "--baseline-server")
        .and_then(|i| args.get(i + 1).cloned());
    let port: u16 = arg(&args, "--port", "9431").parse().expect("--port");
    let limits = [
        "--max-connections".to_string(),
        (connections.max(clients).max(members) + 100).to_string(),
        "--log-level".to_string(),
        "error".to_string(),
    ];

    println!(
        "permessage-deflate, JSON chat: {clients} clients in rooms of {room}, one message in \
         flight each, {secs} s per setting; server --runtime {runtime}"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8}  agreed",
        "setting", "sent/s", "deliv/s", "up B/msg", "dn B/dlv", "up x", "dn x"
    );
    let mut base: Option<(f64, f64)> = None;
    let mut rows = Vec::new();
    for setting in settings() {
        let mut server_args: Vec<String> = limits.to_vec();
        server_args.extend(setting.server_args.iter().map(|s| s.to_string()));
        let server = ServerProcess::start(&runtime, port, &server_args);
        let rate = chat_run(server.addr(), &setting, clients, room, secs);
        drop(server);
        let up = rate.up as f64 / rate.sent as f64;
        let down = rate.down as f64 / rate.delivered as f64;
        let (up0, down0) = *base.get_or_insert((up, down));
        println!(
            "{:<14} {:>10.0} {:>10.0} {:>9.1} {:>9.1} {:>8.2} {:>8.2}  {}",
            setting.name,
            rate.sent as f64 / rate.seconds,
            rate.delivered as f64 / rate.seconds,
            up,
            down,
            up / up0,
            down / down0,
            rate.agreed
        );
        rows.push((setting.name, rate.sent as f64 / rate.seconds));
    }
    if let Some(&(_, off)) = rows.first() {
        let ratios: Vec<String> = rows
            .iter()
            .skip(1)
            .map(|(name, r)| format!("{name} {:.2}x", r / off))
            .collect();
        println!("messages/s against off: {}", ratios.join(", "));
    }

    println!();
    println!(
        "fan-out: {pushes} pushes of ~600 B JSON, one at a time, to a room of {members}; \
         ms from the push to its last delivery"
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>12}",
        "server", "p50", "min", "max", "deliv/s p50"
    );
    let no_ctx = ["--deflate", "--deflate-no-context-takeover"].map(String::from);
    let mut runs: Vec<(String, Option<String>, Vec<String>, bool)> = vec![
        ("off".into(), None, Vec::new(), false),
        (
            "no-ctx both, compressed once".into(),
            None,
            no_ctx.to_vec(),
            true,
        ),
    ];
    if let Some(bin) = &baseline {
        runs.push((
            "no-ctx both, once per member (base)".into(),
            Some(bin.clone()),
            no_ctx.to_vec(),
            true,
        ));
    }
    for (name, bin, extra, deflate) in runs {
        let mut server_args: Vec<String> = limits.to_vec();
        server_args.extend(extra);
        let server = match bin {
            None => ServerProcess::start(&runtime, port, &server_args),
            Some(bin) => {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
                let mut cmd = pinned(std::path::Path::new(&bin), "0");
                cmd.args(["--listen", &addr.to_string(), "--runtime", &runtime])
                    .args(&server_args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit());
                ServerProcess::adopt(cmd.spawn().expect("start the baseline server"), addr)
            }
        };
        let mut ms = fanout_run(server.addr(), members, pushes, deflate);
        drop(server);
        ms.sort_by(f64::total_cmp);
        let p50 = ms[ms.len() / 2];
        println!(
            "{:<34} {:>8.1} {:>8.1} {:>8.1} {:>12.0}",
            name,
            p50,
            ms[0],
            ms[ms.len() - 1],
            members as f64 / (p50 / 1e3)
        );
    }

    println!();
    println!(
        "server memory at {connections} connections, each after one compressed message each way"
    );
    println!(
        "{:<14} {:>14} {:>16} {:>10}",
        "setting", "RSS B/conn", "codec B/conn", "deflated"
    );
    for setting in settings() {
        let mut server_args: Vec<String> = limits.to_vec();
        server_args.extend(setting.server_args.iter().map(|s| s.to_string()));
        let server = ServerProcess::start(&runtime, port, &server_args);
        let footprint = memory_run(&server, &setting, connections);
        drop(server);
        println!(
            "{:<14} {:>14.0} {:>16.0} {:>10}",
            setting.name, footprint.rss_per_conn, footprint.codec_per_conn, footprint.deflated
        );
    }
}
