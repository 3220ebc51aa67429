//! Echo load: messages per second and per-message round-trip latency (p50, p99, max) of
//! each echo server under pipelined load over loopback, and the server's memory per idle
//! upgraded connection. A benchmark, not a test: it prints numbers and ratios and never
//! fails on speed (it does fail on a wrong echo).
//!
//! ```sh
//! cargo build --release -p sockeye-bench --bin load --bin echo_peer
//! target/release/load                                   # every scenario, 3 runs each
//! target/release/load --scenario 100x16x32 --only raw,sockeye-smol --seconds 5 --runs 5
//! ```
//!
//! Each server is an `echo_peer` child process (one implementation per process, a fresh
//! one for every measurement), pinned to core 0 with `taskset` when it is there; this
//! process re-executes itself under `taskset -c 1`, so the generator has the other core.
//! Scenarios run one after the other; within a scenario the `--runs` repetitions are
//! interleaved across the servers (raw, smol, std, ..., raw, smol, ...), and the median
//! of each column is printed.
//!
//! The generator is one thread on an edge-triggered `mio` loop with non-blocking sockets.
//! Each connection's frames (masked binary frames with random keys and payloads that
//! name the connection and the frame) are built once before the run. A connection keeps
//! K messages in flight: it writes K frames, then one more for each echo it gets back
//! (all frames freed by one read go out in one `write`). A message's round trip runs
//! from the moment it is queued to the moment its whole echo has been read. Echo lengths
//! and opcodes are checked for every message, and payloads byte for byte for the first
//! frames of each connection and every 64th after; a wrong or missing echo fails the run.
//! After `--warmup` seconds the counters are reset and the next `--seconds` seconds are
//! measured (or until `--max-msgs` echoes); then no new messages are sent and the ones
//! in flight are drained. The table's `fair` is the number of messages of the connection
//! that completed fewest while measuring, over the mean (1 when all are served alike).
//! The raw TCP echo returns the masked frames as they were sent, which the generator
//! checks as such (a masked frame from any other server fails the run): it is the floor,
//! and shows what the generator itself can drive.
//!
//! Servers (`--only`, by name or short name): `raw`, `sockeye-smol`, `sockeye-std`,
//! `tokio-tungstenite` (`send` per message), `tokio-tungstenite-fwd` (`forward`) and
//! `fastwebsockets` by default; `sockeye-smol-try-send` (short name `ts`: the smol echo
//! with `try_send`) only when named. `echo_peer`'s docs say how each is written. The table's `srv%` and
//! `gen%` columns are the time the server's threads and the generator spent on a CPU
//! while measuring, `srvW%` and `genW%` the time they were runnable but waiting for one
//! (from `/proc/PID/task/*/schedstat`): on a shared machine, high waits mean other load
//! took the cores and the run says less. `rto` counts the TCP retransmission timeouts on
//! the machine meanwhile (`TCPTimeouts` in `/proc/net/netstat`): on loopback each follows
//! a dropped packet (a full backlog when other load starves the softirq work) and stalls
//! a connection for 200 ms or more, so such a measurement is taken again, up to
//! `--retries` (2) times, and `rep` counts the repeats.
//!
//! The `idle10k` scenario opens `--idle-conns` (10,000) upgraded connections one after
//! the other, waits, and reports the server's `VmRSS` growth (from `/proc/PID/status`)
//! per connection, and the growth of the kernel's socket slabs (`TCP`,
//! `sock_inode_cache`, `filp`, `dentry`, `eventpoll_epi` in `/proc/slabinfo`; both ends
//! of every connection, and anything else running on the machine).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use sockeye_bench::server_process::{have_taskset, pinned};

/// Every `echo_peer` implementation, its short name for the ratio columns, and whether
/// it runs without `--only`.
const IMPLS: &[(&str, &str, bool)] = &[
    ("raw", "raw", true),
    ("sockeye-smol", "smol", true),
    ("sockeye-std", "std", true),
    ("sockeye-smol-try-send", "ts", false),
    ("tokio-tungstenite", "tt", true),
    ("tokio-tungstenite-fwd", "ttfwd", true),
    ("fastwebsockets", "fws", true),
];

#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    conns: usize,
    in_flight: usize,
    size: usize,
}

const LOADS: &[Load] = &[
    Load {
        name: "1x1x32",
        conns: 1,
        in_flight: 1,
        size: 32,
    },
    Load {
        name: "100x16x32",
        conns: 100,
        in_flight: 16,
        size: 32,
    },
    Load {
        name: "10x4x64k",
        conns: 10,
        in_flight: 4,
        size: 64 * 1024,
    },
];

const IDLE: &str = "idle10k";

/// Payloads of the first frames of each connection and every this many after are
/// compared byte for byte.
const VERIFY_EVERY: u64 = 64;

struct Args {
    only: Vec<&'static str>,
    scenarios: Vec<String>,
    seconds: f64,
    warmup: f64,
    runs: usize,
    max_msgs: u64,
    retries: usize,
    idle_conns: usize,
    peer_bin: Option<PathBuf>,
    no_pin: bool,
}

fn usage() -> ! {
    let impls: Vec<&str> = IMPLS.iter().map(|i| i.0).collect();
    let scenarios: Vec<&str> = LOADS.iter().map(|l| l.name).chain([IDLE]).collect();
    eprintln!(
        "usage: load [--only IMPL,..] [--scenario NAME,..] [--seconds S] [--warmup S] \
         [--runs N] [--max-msgs N] [--retries N] [--idle-conns N] [--peer-bin PATH] [--no-pin]\n  \
         impls: {}\n  scenarios: {}",
        impls.join(", "),
        scenarios.join(", ")
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        only: IMPLS.iter().filter(|i| i.2).map(|i| i.0).collect(),
        scenarios: LOADS
            .iter()
            .map(|l| l.name.to_string())
            .chain([IDLE.to_string()])
            .collect(),
        seconds: 3.0,
        warmup: 1.0,
        runs: 3,
        max_msgs: u64::MAX,
        retries: 2,
        idle_conns: 10_000,
        peer_bin: None,
        no_pin: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--only" => {
                let v = value();
                a.only = v
                    .split(',')
                    .map(|name| {
                        IMPLS
                            .iter()
                            .find(|i| i.0 == name || i.1 == name)
                            .map(|i| i.0)
                            .unwrap_or_else(|| usage())
                    })
                    .collect();
                // Keep the table's order whatever order the flag gave.
                a.only.sort_by_key(|n| IMPLS.iter().position(|i| i.0 == *n));
                a.only.dedup();
            }
            "--scenario" => {
                let v = value();
                a.scenarios = v.split(',').map(str::to_string).collect();
                for s in &a.scenarios {
                    if s != IDLE && !LOADS.iter().any(|l| l.name == s) {
                        usage();
                    }
                }
            }
            "--seconds" => a.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = value().parse().unwrap_or_else(|_| usage()),
            "--runs" => a.runs = value().parse().unwrap_or_else(|_| usage()),
            "--max-msgs" => a.max_msgs = value().parse().unwrap_or_else(|_| usage()),
            "--retries" => a.retries = value().parse().unwrap_or_else(|_| usage()),
            "--idle-conns" => a.idle_conns = value().parse().unwrap_or_else(|_| usage()),
            "--peer-bin" => a.peer_bin = Some(PathBuf::from(value())),
            "--no-pin" => a.no_pin = true,
            _ => usage(),
        }
    }
    if a.runs == 0 || a.seconds <= 0.0 || a.warmup < 0.0 || a.only.is_empty() {
        usage();
    }
    a
}

/// Re-runs this program under `taskset -c 1` (once), so the generator gets core 1.
fn pin_self() {
    const MARK: &str = "SOCKEYE_LOAD_PINNED";
    if std::env::var_os(MARK).is_some() || !have_taskset() {
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = pinned(&exe, "1")
        .args(args)
        .env(MARK, "1")
        .status()
        .expect("run under taskset");
    std::process::exit(status.code().unwrap_or(1));
}

// ---------------------------------------------------------------------------------------
// The server processes.

/// A running `echo_peer`; killed (and reaped) on drop.
struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Peer {
    fn start(bin: &PathBuf, imp: &str, pin: bool) -> Result<Peer, String> {
        let mut cmd = if pin {
            pinned(bin, "0")
        } else {
            Command::new(bin)
        };
        cmd.args(["--impl", imp, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let addr = match read {
            Ok(_) => line
                .trim()
                .strip_prefix("listening ")
                .and_then(|a| a.parse().ok()),
            Err(_) => None,
        };
        let mut peer = Peer {
            child,
            addr: "127.0.0.1:9".parse().expect("address"),
        };
        match addr {
            Some(addr) => {
                peer.addr = addr;
                Ok(peer)
            }
            None => Err(format!("{imp} did not start (said {line:?})")),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time on a CPU and time runnable but waiting for one, in nanoseconds, summed over a
/// process's threads (`/proc/PID/task/*/schedstat`).
fn sched_ns(pid: u32) -> (u64, u64) {
    let (mut run, mut wait) = (0, 0);
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let mut f = text
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            run += f.next().unwrap_or(0);
            wait += f.next().unwrap_or(0);
        }
    }
    (run, wait)
}

/// Retransmission timeouts on the machine so far (`TCPTimeouts` in `/proc/net/netstat`).
/// On loopback a timeout follows a dropped packet (the per-CPU backlog overflows when
/// other load starves the softirq work) and stalls that connection for the 200 ms
/// minimum RTO or more. (Plain retransmits are mostly tail-loss probes, spurious and
/// cheap, so they are not counted.)
fn tcp_timeouts() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (ext.next(), ext.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "TCPTimeouts")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// TCP sockets in use on the machine (`/proc/net/sockstat`).
fn tcp_sockets_in_use() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut f = line.split_whitespace();
    f.find(|w| *w == "inuse")?;
    f.next()?.parse().ok()
}

/// Waits (up to 5 s) until the machine's count of TCP sockets stops falling, so the
/// sockets of the run before are freed before the slabs are read.
fn wait_for_sockets_to_settle() {
    let until = Instant::now() + Duration::from_secs(5);
    let mut last = tcp_sockets_in_use();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        let now = tcp_sockets_in_use();
        if now >= last {
            return;
        }
        last = now;
    }
}

/// Bytes in the kernel's slabs that every TCP connection end takes.
fn socket_slab_bytes() -> Option<u64> {
    const CACHES: &[&str] = &["TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi"];
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let mut total = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        if !CACHES.contains(&name) {
            continue;
        }
        let active: u64 = f.next()?.parse().ok()?;
        let _num = f.next()?;
        let objsize: u64 = f.next()?.parse().ok()?;
        total += active * objsize;
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------
// Client side: handshake and frames.

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Connects and, unless `raw`, upgrades with a hand-written request (checks 101 and the
/// accept key). The stream is left blocking with no timeouts.
fn connect(addr: SocketAddr, raw: bool) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    if raw {
        return Ok(s);
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("eof during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if p + 4 != buf.len() {
                return Err("bytes after the 101 response".into());
            }
            break;
        }
        if buf.len() > 8192 {
            return Err("handshake response too long".into());
        }
    }
    let text = String::from_utf8_lossy(&buf);
    if !text.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            text.lines().next().unwrap_or("")
        ));
    }
    let accepted = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == ACCEPT
        })
    });
    if !accepted {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(s)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A connection's frames, built once: `count` masked binary frames back to back.
struct Batch {
    /// The frames as sent.
    wire: Vec<u8>,
    /// The payloads, unmasked, back to back.
    plain: Vec<u8>,
    frame_len: usize,
    header_len: usize,
    size: usize,
    count: usize,
    raw: bool,
}

/// `raw`: the echo comes back as sent (masked), from the TCP echo; a WebSocket server
/// must send unmasked frames.
fn build_batch(conn: usize, count: usize, size: usize, raw: bool) -> Batch {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((conn as u64 + 1) << 20));
    let mut header = vec![0x82u8];
    if size < 126 {
        header.push(0x80 | size as u8);
    } else if size < 65_536 {
        header.push(0x80 | 126);
        header.extend_from_slice(&(size as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&(size as u64).to_be_bytes());
    }
    let header_len = header.len() + 4;
    let frame_len = header_len + size;
    let mut wire = Vec::with_capacity(frame_len * count);
    let mut plain = Vec::with_capacity(size * count);
    for idx in 0..count {
        let start = plain.len();
        while plain.len() < start + size {
            let word = rng.next().to_le_bytes();
            let take = (start + size - plain.len()).min(8);
            plain.extend_from_slice(&word[..take]);
        }
        // The payload names its connection and frame, so cross-talk shows.
        let stamp = [(conn as u32).to_le_bytes(), (idx as u32).to_le_bytes()].concat();
        let n = stamp.len().min(size);
        plain[start..start + n].copy_from_slice(&stamp[..n]);
        let key = loop {
            let k = (rng.next() as u32).to_le_bytes();
            if k != [0; 4] {
                break k;
            }
        };
        wire.extend_from_slice(&header);
        wire.extend_from_slice(&key);
        wire.extend(
            plain[start..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        );
    }
    Batch {
        wire,
        plain,
        frame_len,
        header_len,
        size,
        count,
        raw,
    }
}

/// The echo reader of one connection: parses frames as bytes come, in any split.
#[derive(Default)]
struct Rx {
    header: [u8; 14],
    header_len: usize,
    in_payload: bool,
    left: u64,
    masked: bool,
    control: u8,
    fin: bool,
    /// Payload bytes of the current message seen so far (across fragments).
    msg_off: usize,
    /// Messages echoed in full so far.
    echoed: u64,
    verified: u64,
}

fn header_need(h: &[u8]) -> usize {
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if h[1] & 0x80 != 0 { 4 } else { 0 }
}

impl Rx {
    fn verifying(&self, batch: &Batch) -> bool {
        self.echoed < 2 * batch.count as u64 || self.echoed % VERIFY_EVERY == 0
    }

    /// Feeds echoed bytes; returns how many messages they completed.
    fn feed(&mut self, mut data: &[u8], batch: &Batch) -> Result<usize, String> {
        let mut done = 0;
        while !data.is_empty() {
            if !self.in_payload {
                self.header[self.header_len] = data[0];
                self.header_len += 1;
                data = &data[1..];
                if self.header_len < 2 || self.header_len < header_need(&self.header) {
                    continue;
                }
                let h = &self.header[..self.header_len];
                let opcode = h[0] & 0x0f;
                self.fin = h[0] & 0x80 != 0;
                self.masked = h[1] & 0x80 != 0;
                if self.masked != batch.raw {
                    return Err(if batch.raw {
                        "the TCP echo changed the frames".into()
                    } else {
                        "the server sent a masked frame".into()
                    });
                }
                self.left = match h[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                    127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                    n => u64::from(n),
                };
                self.header_len = 0;
                self.control = 0;
                match opcode {
                    0x8 => return Err("the server sent a close frame".into()),
                    0x9 | 0xa => self.control = opcode,
                    0x2 if self.msg_off == 0 => {}
                    0x0 if self.msg_off > 0 => {}
                    _ => return Err(format!("unexpected frame, opcode {opcode:#x}")),
                }
                if self.control == 0 && self.msg_off as u64 + self.left > batch.size as u64 {
                    return Err(format!("echo longer than the {} B sent", batch.size));
                }
                self.in_payload = true;
            } else {
                let n = (self.left.min(data.len() as u64)) as usize;
                if self.control == 0 {
                    if self.verifying(batch) {
                        let idx = (self.echoed % batch.count as u64) as usize;
                        let expected = if self.masked {
                            // The raw echo: the frame exactly as it was sent.
                            let at = idx * batch.frame_len + batch.header_len + self.msg_off;
                            &batch.wire[at..at + n]
                        } else {
                            let at = idx * batch.size + self.msg_off;
                            &batch.plain[at..at + n]
                        };
                        if expected != &data[..n] {
                            return Err(format!(
                                "echo {} differs from the message sent",
                                self.echoed
                            ));
                        }
                    }
                    self.msg_off += n;
                }
                self.left -= n as u64;
                data = &data[n..];
            }
            if self.in_payload && self.left == 0 {
                self.in_payload = false;
                if self.control == 0 && self.fin {
                    if self.msg_off != batch.size {
                        return Err(format!("echo of {} B, {} B sent", self.msg_off, batch.size));
                    }
                    if self.verifying(batch) {
                        self.verified += 1;
                    }
                    self.msg_off = 0;
                    self.echoed += 1;
                    done += 1;
                }
            }
        }
        Ok(done)
    }
}

struct Conn {
    stream: mio::net::TcpStream,
    batch: Batch,
    /// Next byte of `batch.wire` to write, and bytes queued but not yet written.
    wpos: usize,
    wleft: usize,
    /// When each message in flight was queued, oldest first.
    sent: VecDeque<Instant>,
    rx: Rx,
}

impl Conn {
    fn queue(&mut self, n: usize, now: Instant) {
        self.wleft += n * self.batch.frame_len;
        for _ in 0..n {
            self.sent.push_back(now);
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let len = self.batch.wire.len();
        while self.wleft > 0 {
            let n = self.wleft.min(len - self.wpos);
            match self
                .stream
                .write(&self.batch.wire[self.wpos..self.wpos + n])
            {
                Ok(0) => return Err("write returned 0".into()),
                Ok(w) => {
                    self.wpos = (self.wpos + w) % len;
                    self.wleft -= w;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads what is there; returns the messages completed.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let mut done = 0;
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    done += self.rx.feed(&buf[..n], &self.batch)?;
                    // A short read emptied the socket; new bytes raise a new edge.
                    if n < buf.len() {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// Latencies in nanoseconds, log-linear buckets (64 per power of two: within 1.6 %).
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    const SUB: u32 = 6;

    fn new() -> Histogram {
        Histogram {
            counts: vec![0; (65 - Self::SUB as usize) << Self::SUB],
            total: 0,
            max: 0,
        }
    }

    fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }

    fn index(v: u64) -> usize {
        if v < 1 << Self::SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let sub = (v >> (e - Self::SUB)) & ((1 << Self::SUB) - 1);
        (((e - Self::SUB + 1) as usize) << Self::SUB) + sub as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let (group, sub) = (i >> Self::SUB, (i & ((1 << Self::SUB) - 1)) as u64);
        if group == 0 {
            return sub;
        }
        let shift = group as u32 - 1;
        (((1 << Self::SUB) + sub) << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, v: u64, n: u64) {
        self.counts[Self::index(v)] += n;
        self.total += n;
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        let target = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

struct LoadResult {
    msgs_per_s: f64,
    /// The messages of the connection that completed fewest, over the mean.
    fairness: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Shares of one core while measuring: the server on a CPU and waiting for one,
    /// and the same for the generator.
    server_cpu: f64,
    server_wait: f64,
    gen_cpu: f64,
    gen_wait: f64,
    /// Retransmission timeouts machine-wide while measuring.
    timeouts: u64,
}

struct RunConfig {
    warmup: Duration,
    seconds: Duration,
    max_msgs: u64,
}

fn run_load(peer: &Peer, raw: bool, load: Load, rc: &RunConfig) -> Result<LoadResult, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(load.conns);
    let batch_len = (2 * load.in_flight).max(4);
    for i in 0..load.conns {
        let s = connect(peer.addr, raw)?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        conns.push(Conn {
            stream,
            batch: build_batch(i, batch_len, load.size, raw),
            wpos: 0,
            wleft: 0,
            sent: VecDeque::with_capacity(load.in_flight),
            rx: Rx::default(),
        });
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut hist = Histogram::new();
    let started = Instant::now();
    for c in &mut conns {
        c.queue(load.in_flight, started);
        c.flush()?;
    }
    let measure_at = started + rc.warmup;
    let end_at = measure_at + rc.seconds;
    let mut measuring = false;
    let mut count = 0u64;
    let mut t0 = started;
    let (mut srv0, mut gen0) = ((0, 0), (0, 0));
    let mut rto0 = 0;
    let mut echoed0: Vec<u64> = vec![0; conns.len()];
    let self_pid = std::process::id();
    let t1 = loop {
        let now = Instant::now();
        if !measuring && now >= measure_at {
            measuring = true;
            hist.clear();
            count = 0;
            t0 = now;
            rto0 = tcp_timeouts();
            srv0 = sched_ns(peer.pid());
            gen0 = sched_ns(self_pid);
            for (e, c) in echoed0.iter_mut().zip(&conns) {
                *e = c.rx.echoed;
            }
        }
        if measuring && (now >= end_at || count >= rc.max_msgs) {
            break now;
        }
        let timeout = if measuring {
            end_at - now
        } else {
            measure_at - now
        };
        step(
            &mut poll,
            &mut events,
            &mut conns,
            &mut buf,
            Some(timeout),
            |done, sent_at, now| {
                if measuring {
                    count += done as u64;
                    for t in sent_at {
                        hist.record(now.duration_since(t).as_nanos() as u64, 1);
                    }
                }
                true
            },
        )?;
    };
    let srv1 = sched_ns(peer.pid());
    let gen1 = sched_ns(self_pid);
    let timeouts = tcp_timeouts().saturating_sub(rto0);
    // Messages each connection completed while measuring: the slowest against the mean.
    let per_conn: Vec<u64> = conns
        .iter()
        .zip(&echoed0)
        .map(|(c, e)| c.rx.echoed - e)
        .collect();
    let mean = per_conn.iter().sum::<u64>() as f64 / per_conn.len() as f64;
    let fairness = per_conn.iter().min().map_or(0.0, |m| *m as f64 / mean);
    // Stop sending; drain what is in flight.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while conns.iter().any(|c| !c.sent.is_empty()) {
        let now = Instant::now();
        if now >= drain_until {
            let missing: usize = conns.iter().map(|c| c.sent.len()).sum();
            return Err(format!("{missing} echoes never came back"));
        }
        step(
            &mut poll,
            &mut events,
            &mut conns,
            &mut buf,
            Some(drain_until - now),
            |_, _, _| false,
        )?;
    }
    let verified: u64 = conns.iter().map(|c| c.rx.verified).sum();
    if verified == 0 {
        return Err("no echo was verified".into());
    }
    let secs = (t1 - t0).as_secs_f64();
    let share = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9 / secs;
    Ok(LoadResult {
        msgs_per_s: count as f64 / secs,
        fairness,
        p50: Duration::from_nanos(hist.quantile(0.50)),
        p99: Duration::from_nanos(hist.quantile(0.99)),
        max: Duration::from_nanos(hist.max),
        server_cpu: share(srv0.0, srv1.0),
        server_wait: share(srv0.1, srv1.1),
        gen_cpu: share(gen0.0, gen1.0),
        gen_wait: share(gen0.1, gen1.1),
        timeouts,
    })
}

/// One poll: reads echoes, hands each connection's completions (with their send times)
/// to `on_done`, which says whether to send as many new messages; then writes.
fn step(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Conn],
    buf: &mut [u8],
    timeout: Option<Duration>,
    mut on_done: impl FnMut(usize, std::collections::vec_deque::Drain<'_, Instant>, Instant) -> bool,
) -> Result<(), String> {
    match poll.poll(events, timeout) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(format!("poll: {e}")),
    }
    for ev in events.iter() {
        let c = &mut conns[ev.token().0];
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            let done = c.read(buf)?;
            if done > 0 {
                let now = Instant::now();
                if done > c.sent.len() {
                    return Err("more echoes than messages sent".into());
                }
                let again = on_done(done, c.sent.drain(..done), now);
                if again {
                    c.queue(done, now);
                }
            }
        }
        if c.wleft > 0 {
            c.flush()?;
        }
    }
    Ok(())
}

struct IdleResult {
    per_conn: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    kernel_per_conn: Option<f64>,
    opened_in: Duration,
}

fn run_idle(peer: &Peer, raw: bool, n: usize) -> Result<IdleResult, String> {
    wait_for_sockets_to_settle();
    let pid = peer.pid();
    let before = vm_rss_kib(pid).ok_or("no VmRSS")?;
    let slab_before = socket_slab_bytes();
    let opening = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = connect(peer.addr, raw).map_err(|e| format!("connection {i}: {e}"))?;
        if raw {
            // Wait until the server has accepted it: one byte there and back.
            s.write_all(b"x").map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).map_err(|e| e.to_string())?;
        }
        conns.push(s);
    }
    let opened_in = opening.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss_kib(pid).ok_or("no VmRSS")?;
    let slab_after = socket_slab_bytes();
    // Check that a sample of the idle connections still echoes.
    let batch = build_batch(0, 1, 32, raw);
    for s in conns.iter_mut().step_by((n / 10).max(1)) {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(&batch.wire).map_err(|e| e.to_string())?;
        let mut rx = Rx::default();
        let mut chunk = [0u8; 256];
        while rx.echoed == 0 {
            let got = s.read(&mut chunk).map_err(|e| format!("idle echo: {e}"))?;
            if got == 0 {
                return Err("an idle connection was closed".into());
            }
            // The oldest connections have been idle since `opening`: a server's keepalive
            // may have pinged them, and closed them for the pong this client never sent.
            rx.feed(&chunk[..got], &batch).map_err(|e| {
                format!(
                    "idle echo: {e} ({:.1} s after the first connection, opened in {:.1} s)",
                    opening.elapsed().as_secs_f64(),
                    opened_in.as_secs_f64()
                )
            })?;
        }
    }
    let kernel_per_conn = match (slab_before, slab_after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    };
    Ok(IdleResult {
        per_conn: (after as f64 - before as f64) * 1024.0 / n as f64,
        rss_before_kib: before,
        rss_after_kib: after,
        kernel_per_conn,
        opened_in,
    })
}

// ---------------------------------------------------------------------------------------
// Reporting.

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn short(imp: &str) -> &'static str {
    IMPLS
        .iter()
        .find(|i| i.0 == imp)
        .map(|i| i.1)
        .unwrap_or("?")
}

fn fmt_latency(secs: f64) -> String {
    if secs.is_nan() {
        "-".into()
    } else if secs < 1e-3 {
        format!("{:.1} us", secs * 1e6)
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}

fn ratio_header(impls: &[&'static str]) -> String {
    impls
        .iter()
        .map(|i| format!("{:>8}", format!("/{}", short(i))))
        .collect()
}

fn ratios(value: f64, refs: &[f64]) -> String {
    refs.iter()
        .map(|r| {
            let q = value / r;
            if !q.is_finite() {
                format!("{:>8}", "-")
            } else if q >= 100.0 {
                format!("{q:>8.0}")
            } else {
                format!("{q:>8.2}")
            }
        })
        .collect()
}

fn main() {
    let args = parse_args();
    if !args.no_pin {
        pin_self();
    }
    let pin = !args.no_pin && have_taskset();
    let bin = args.peer_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("own path")
            .with_file_name("echo_peer")
    });
    if !bin.exists() {
        eprintln!(
            "{} missing: cargo build --release -p sockeye-bench --bin echo_peer",
            bin.display()
        );
        std::process::exit(2);
    }
    let rc = RunConfig {
        warmup: Duration::from_secs_f64(args.warmup),
        seconds: Duration::from_secs_f64(args.seconds),
        max_msgs: args.max_msgs,
    };
    println!(
        "sockeye echo load: servers {}, generator {}; median of {} runs{}",
        if pin {
            "pinned to core 0 (taskset -c 0)"
        } else {
            "unpinned"
        },
        if pin {
            "one thread pinned to core 1"
        } else {
            "one thread, unpinned"
        },
        args.runs,
        if args.scenarios.iter().any(|s| s != IDLE) {
            format!(
                " of {} s each after {} s of warm-up",
                args.seconds, args.warmup
            )
        } else {
            String::new()
        }
    );
    let mut failed = false;
    for scenario in &args.scenarios {
        if scenario == IDLE {
            failed |= idle_scenario(&args, &bin, pin);
            continue;
        }
        let load = *LOADS.iter().find(|l| l.name == scenario).expect("checked");
        let mut results: Vec<Vec<LoadResult>> = args.only.iter().map(|_| Vec::new()).collect();
        let mut errors: Vec<Option<String>> = args.only.iter().map(|_| None).collect();
        let mut repeats: Vec<usize> = args.only.iter().map(|_| 0).collect();
        for run in 0..args.runs {
            for (k, imp) in args.only.iter().enumerate() {
                if errors[k].is_some() {
                    continue;
                }
                // A measurement during which a retransmission timer fired on the machine
                // (a loopback drop: some connection stalled for 200 ms or more) is taken
                // again, up to
                // `--retries` times; the last one is kept whatever it saw.
                let mut tries = 0;
                let outcome = loop {
                    let outcome = Peer::start(&bin, imp, pin)
                        .and_then(|peer| run_load(&peer, *imp == "raw", load, &rc));
                    match &outcome {
                        Ok(r) if r.timeouts > 0 && tries < args.retries => {
                            eprintln!(
                                "  {scenario} run {} {imp}: {} TCP retransmission timeouts on the machine, \
                                 measuring again",
                                run + 1,
                                r.timeouts
                            );
                            tries += 1;
                            repeats[k] += 1;
                        }
                        _ => break outcome,
                    }
                };
                match outcome {
                    Ok(r) => {
                        eprintln!(
                            "  {scenario} run {}/{} {imp}: {:.0} msgs/s, p50 {}, p99 {}, \
                             max {}, slowest connection {:.2} of the mean, server cpu {:.0}% \
                             (waiting {:.0}%), generator cpu {:.0}% (waiting {:.0}%), {} TCP \
                             retransmission timeouts on the machine",
                            run + 1,
                            args.runs,
                            r.msgs_per_s,
                            fmt_latency(r.p50.as_secs_f64()),
                            fmt_latency(r.p99.as_secs_f64()),
                            fmt_latency(r.max.as_secs_f64()),
                            r.fairness,
                            r.server_cpu * 100.0,
                            r.server_wait * 100.0,
                            r.gen_cpu * 100.0,
                            r.gen_wait * 100.0,
                            r.timeouts
                        );
                        results[k].push(r);
                    }
                    Err(e) => {
                        eprintln!("  {scenario} run {} {imp}: FAILED: {e}", run + 1);
                        errors[k] = Some(e);
                        failed = true;
                    }
                }
            }
        }
        let med = |k: usize, f: &dyn Fn(&LoadResult) -> f64| {
            if errors[k].is_some() {
                f64::NAN
            } else {
                median(results[k].iter().map(f).collect())
            }
        };
        let rates: Vec<f64> = (0..args.only.len())
            .map(|k| med(k, &|r| r.msgs_per_s))
            .collect();
        println!();
        println!(
            "SCENARIO {}: {} connection(s) x {} in flight x {} binary",
            load.name,
            load.conns,
            load.in_flight,
            if load.size >= 1024 {
                format!("{} KiB", load.size / 1024)
            } else {
                format!("{} B", load.size)
            }
        );
        println!(
            "  {:<22} {:>10} {:>10} {:>10} {:>10} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>4}{}",
            "implementation",
            "msgs/s",
            "p50",
            "p99",
            "max",
            "fair",
            "srv%",
            "srvW%",
            "gen%",
            "genW%",
            "rto",
            "rep",
            ratio_header(&args.only)
        );
        for (k, imp) in args.only.iter().enumerate() {
            if let Some(e) = &errors[k] {
                println!("  {imp:<22} FAILED: {e}");
                continue;
            }
            println!(
                "  {:<22} {:>10.0} {:>10} {:>10} {:>10} {:>5.2} {:>5.0} {:>5.0} {:>5.0} {:>5.0} {:>5.0} {:>4}{}",
                imp,
                rates[k],
                fmt_latency(med(k, &|r| r.p50.as_secs_f64())),
                fmt_latency(med(k, &|r| r.p99.as_secs_f64())),
                fmt_latency(med(k, &|r| r.max.as_secs_f64())),
                med(k, &|r| r.fairness),
                med(k, &|r| r.server_cpu) * 100.0,
                med(k, &|r| r.server_wait) * 100.0,
                med(k, &|r| r.gen_cpu) * 100.0,
                med(k, &|r| r.gen_wait) * 100.0,
                med(k, &|r| r.timeouts as f64),
                repeats[k],
                ratios(rates[k], &rates)
            );
        }
        println!(
            "  /X: this row's msgs/s divided by X's (higher is better); fair: messages of the \
             connection that completed fewest, over the mean (1 = all alike); srv%, gen%: time the \
             server's threads and the generator spent on a CPU while measuring, srvW%, genW%: \
             time they were runnable but waiting for one (100 = one core's worth); rto: TCP \
             retransmission timeouts on the whole machine while measuring (on loopback: drops, \
             each a stall of 200 ms or more); rep: measurements taken again for them"
        );
    }
    if failed {
        std::process::exit(1);
    }
}

/// The idle-memory scenario; returns whether anything failed.
fn idle_scenario(args: &Args, bin: &PathBuf, pin: bool) -> bool {
    let n = args.idle_conns;
    let mut results: Vec<Vec<IdleResult>> = args.only.iter().map(|_| Vec::new()).collect();
    let mut errors: Vec<Option<String>> = args.only.iter().map(|_| None).collect();
    let mut failed = false;
    for run in 0..args.runs {
        for (k, imp) in args.only.iter().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            let outcome =
                Peer::start(bin, imp, pin).and_then(|peer| run_idle(&peer, *imp == "raw", n));
            match outcome {
                Ok(r) => {
                    eprintln!(
                        "  {IDLE} run {}/{} {imp}: {:.0} B per connection (VmRSS {} -> {} KiB), \
                         kernel slabs {} B per connection, opened in {:.1} s",
                        run + 1,
                        args.runs,
                        r.per_conn,
                        r.rss_before_kib,
                        r.rss_after_kib,
                        r.kernel_per_conn
                            .map_or("n/a".to_string(), |v| format!("{v:.0}")),
                        r.opened_in.as_secs_f64()
                    );
                    results[k].push(r);
                }
                Err(e) => {
                    eprintln!("  {IDLE} run {} {imp}: FAILED: {e}", run + 1);
                    errors[k] = Some(e);
                    failed = true;
                }
            }
        }
    }
    let med = |k: usize, f: &dyn Fn(&IdleResult) -> f64| {
        if errors[k].is_some() {
            f64::NAN
        } else {
            median(results[k].iter().map(f).collect())
        }
    };
    let per: Vec<f64> = (0..args.only.len())
        .map(|k| med(k, &|r| r.per_conn))
        .collect();
    // Raw TCP keeps next to nothing per connection: a ratio to it would mean nothing.
    let refs: Vec<(&'static str, f64)> = args
        .only
        .iter()
        .zip(&per)
        .filter(|(imp, _)| **imp != "raw")
        .map(|(imp, v)| (*imp, *v))
        .collect();
    let ref_names: Vec<&'static str> = refs.iter().map(|r| r.0).collect();
    let ref_values: Vec<f64> = refs.iter().map(|r| r.1).collect();
    println!();
    println!("SCENARIO {IDLE}: {n} idle upgraded connections, server memory");
    println!(
        "  {:<22} {:>10} {:>11} {:>11} {:>12}{}",
        "implementation",
        "B/conn",
        "RSS before",
        "RSS after",
        "kernel B/c",
        ratio_header(&ref_names)
    );
    for (k, imp) in args.only.iter().enumerate() {
        if let Some(e) = &errors[k] {
            println!("  {imp:<22} FAILED: {e}");
            continue;
        }
        let kernel = med(k, &|r| r.kernel_per_conn.unwrap_or(f64::NAN));
        println!(
            "  {:<22} {:>10.0} {:>7.1} MiB {:>7.1} MiB {:>12}{}",
            imp,
            per[k],
            med(k, &|r| r.rss_before_kib as f64) / 1024.0,
            med(k, &|r| r.rss_after_kib as f64) / 1024.0,
            if kernel.is_nan() {
                "n/a".to_string()
            } else {
                format!("{kernel:.0}")
            },
            if *imp == "raw" {
                ratios(f64::NAN, &ref_values)
            } else {
                ratios(per[k], &ref_values)
            }
        );
    }
    println!(
        "  B/conn: growth of the server's VmRSS per connection; kernel B/c: growth of the \
         socket slabs per connection, both ends (client and server), machine-wide; /X: this \
         row's B/conn divided by X's (lower is better)"
    );
    failed
}
