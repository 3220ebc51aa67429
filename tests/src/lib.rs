//! Helpers shared by the workspace integration tests: real peers as child processes that
//! die with the test, time bounds, and a std echo server that takes commands.
//!
//! Python peers live in `tests/peers/`; their dependencies are installed by
//! `tests/peers/install.sh` into a venv (`$SOCKEYE_PEERS_VENV`, else
//! `~/.cache/sockeye-peers`). Set `SOCKEYE_PYTHON` to use another interpreter that already
//! has `websockets`. The Node `ws` peers (`tests/peers/*.mjs`) load `ws` from
//! `clients/js/node_modules`, which [`node`] installs with `npm ci` when it is missing;
//! `SOCKEYE_NODE` names another `node` than the one on the `PATH`.

pub mod browser;
pub mod proxy;
pub mod redis;
pub mod server;
pub mod switch_proxy;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockeye_std::{
    CloseCode, Config, DeflateConfig, Message, MessageKind, Server, ServerHandle, WebSocket,
};

/// How long a Python peer may live before it exits by itself (its `PEER_TIMEOUT`).
pub const PEER_LIFETIME_SECS: u64 = 60;

/// The folder holding the peer scripts.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The Python interpreter for the peers: `$SOCKEYE_PYTHON`, else the venv that
/// `peers/install.sh` creates (running it the first time; it is quick once installed).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(python) = std::env::var_os("SOCKEYE_PYTHON") {
                return PathBuf::from(python);
            }
            let output = Command::new("bash")
                .arg(peers_dir().join("install.sh"))
                .stdin(Stdio::null())
                .output()
                .expect("cannot run tests/peers/install.sh (needs bash and python3)");
            assert!(
                output.status.success(),
                "tests/peers/install.sh failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
            PathBuf::from(path)
        })
        .clone()
}

/// The Node interpreter for the `ws` peers: `$SOCKEYE_NODE`, else `node` on the `PATH`.
/// The first call in a process runs `npm ci` in `clients/js` when `ws` is not installed
/// there yet (quick, from the committed lock file).
pub fn node() -> PathBuf {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
        if !js.join("node_modules/ws/package.json").exists() {
            let output = Command::new("npm")
                .args(["ci", "--silent", "--no-audit", "--no-fund"])
                .current_dir(&js)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run npm ci in clients/js (needs Node and npm)");
            assert!(
                output.status.success(),
                "npm ci in clients/js failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::env::var_os("SOCKEYE_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
    })
    .clone()
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, for the TLS tests.
#[derive(Debug)]
pub struct TestCert {
    /// The certificate, PEM, in a file of its own (a peer's CA file).
    pub cert_pem: PathBuf,
    /// Its private key, PEM.
    pub key_pem: PathBuf,
    /// A server configuration serving it.
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// A client configuration trusting exactly it.
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl TestCert {
    /// Makes one (rcgen) and writes its PEM files into a fresh directory named by `name`.
    pub fn new(name: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("sockeye-cert-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("rcgen");
        let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_pem, cert.pem()).expect("write cert.pem");
        std::fs::write(&key_pem, key_pair.serialize_pem()).expect("write key.pem");
        let server = sockeye_std::tls::server_config_from_pem(&cert_pem, &key_pem)
            .expect("a server config from the PEM files");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("a root");
        TestCert {
            cert_pem,
            key_pem,
            server,
            client: sockeye_std::tls::client_config(roots),
        }
    }
}

/// A child process that is killed when dropped, with its output read on threads so it
/// can never block on a full pipe.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Peer {
    /// Starts `python peers/<script> <args…>`.
    pub fn python(script: &str, args: &[&str]) -> Peer {
        let mut command = Command::new(python());
        command
            .arg(peers_dir().join(script))
            .args(args)
            .env("PEER_TIMEOUT", PEER_LIFETIME_SECS.to_string());
        Peer::spawn(command)
    }

    /// Starts `node peers/<script> <args…>` (see [`node`]).
    pub fn node(script: &str, args: &[&str]) -> Peer {
        let mut command = Command::new(node());
        command
            .arg(peers_dir().join(script))
            .args(args)
            .env("PEER_TIMEOUT", PEER_LIFETIME_SECS.to_string());
        Peer::spawn(command)
    }

    /// Starts `command` with piped stdout and stderr.
    pub fn spawn(mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr) = mpsc::channel();
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = err_pipe.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Peer {
            child,
            lines,
            stderr,
        }
    }

    /// The next line of stdout, waiting at most `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Kills the process and returns every stdout line it printed that was not read yet
    /// (all of them: the pipe is read to its end).
    pub fn kill_and_rest(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.iter().collect()
    }

    /// Waits at most `timeout` for the process to exit; returns its status, every stdout
    /// line not yet read, and its stderr. Panics (killing it) if it does not exit in time.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let stderr = self.stderr.recv_timeout(Duration::from_secs(1));
                panic!(
                    "peer did not exit within {timeout:?}; stderr:\n{}",
                    stderr.unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The process is gone, so its stdout reaches EOF and the reader thread ends:
        // this collects every line it printed, however late the reader is.
        let lines = self.lines.iter().collect::<Vec<_>>();
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default();
        (status, lines, stderr)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `body` on its own thread and panics if it takes longer than `limit`, so a test
/// that would hang fails instead. Panics inside `body` propagate.
pub fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body sent nothing yet returned"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test took longer than {limit:?}"),
    }
}

/// `Config::default()` with short timeouts, so a misbehaving peer fails a test quickly.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(5);
    config.close_timeout = Duration::from_secs(3);
    config.pong_timeout = Duration::from_secs(5);
    config
}

/// A std echo server on `127.0.0.1` with an ephemeral port. Like `peers/echo_server.py`,
/// it echoes every message except these text commands:
///   `close:CODE:REASON`  close with CODE and REASON;
///   `fragments:A|B|C`    answer with one text message sent as the fragments A, B, C;
///   `ping:PAYLOAD`       send a ping with PAYLOAD (its pong is the core's business);
///   `deflate?`           answer with the permessage-deflate agreement, `{:?}` of
///                        `WebSocket::deflate_params` (`None` when none).
pub fn spawn_std_echo_server(config: Config) -> ServerHandle {
    spawn_std_deflate_echo_server(config, DeflateConfig::OFF)
}

/// [`spawn_std_echo_server`] answering permessage-deflate offers by `policy`.
pub fn spawn_std_deflate_echo_server(config: Config, policy: DeflateConfig) -> ServerHandle {
    Server::bind("127.0.0.1:0", config)
        .expect("bind 127.0.0.1:0")
        .deflate(policy)
        .spawn(serve_echo)
        .expect("spawn the accept loop")
}

fn serve_echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv() {
        let result = match message.as_text() {
            Some(cmd) if cmd.starts_with("close:") => {
                let mut parts = cmd.splitn(3, ':').skip(1);
                let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1000);
                let reason = parts.next().unwrap_or("");
                ws.close(CloseCode::new(code), reason)
            }
            Some(cmd) if cmd.starts_with("fragments:") => {
                let parts: Vec<String> = cmd["fragments:".len()..]
                    .split('|')
                    .map(String::from)
                    .collect();
                let last = parts.len() - 1;
                parts.into_iter().enumerate().try_for_each(|(i, part)| {
                    ws.send_fragment(MessageKind::Text, Bytes::from(part), i == last)
                })
            }
            Some(cmd) if cmd.starts_with("ping:") => {
                ws.ping(Bytes::copy_from_slice(&cmd.as_bytes()["ping:".len()..]))
            }
            Some("deflate?") => ws.send(Message::text(format!("{:?}", ws.deflate_params()))),
            _ => ws.send(message),
        };
        if result.is_err() {
            break;
        }
    }
}

/// A message of `len` bytes whose content depends on `seed`, text if `text`.
pub fn payload(len: usize, seed: u8, text: bool) -> Message {
    if text {
        let s: String = (0..len)
            .map(|i| char::from(b'a' + (i as u8).wrapping_add(seed) % 26))
            .collect();
        Message::text(s)
    } else {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        Message::binary(data)
    }
}

/// Sends `message` and asserts the next message received is the same, without printing
/// megabytes of payload on failure.
pub fn echo<S: sockeye_std::Stream>(ws: &mut WebSocket<S>, message: Message) {
    ws.send(message.clone()).expect("send");
    let got = ws.recv().expect("recv");
    assert!(
        got.as_ref() == Some(&message),
        "echo of a {:?} message of {} bytes came back as {:?} of {:?} bytes",
        message.kind(),
        message.payload().len(),
        got.as_ref().map(Message::kind),
        got.as_ref().map(|m| m.payload().len()),
    );
}

/// A TCP proxy on `127.0.0.1` that forwards to `upstream` and cuts the connection it
/// is carrying once the bytes it forwarded (both directions together, over every
/// connection) reach each of the given offsets: both sockets are shut down, possibly in
/// the middle of a frame, so both ends see the connection die with bytes in flight
/// lost. New connections are accepted and forwarded as before.
#[derive(Debug)]
pub struct CuttingProxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Debug, Default)]
struct ProxyState {
    forwarded: u64,
    /// Offsets still to cut at, ascending.
    cuts: std::collections::VecDeque<u64>,
    cuts_done: usize,
    connections: usize,
    /// Sockets of the connections forwarded so far; a cut shuts down all of them.
    sockets: Vec<std::net::TcpStream>,
}

impl CuttingProxy {
    /// Starts forwarding to `upstream`, cutting at the byte offsets `cuts` (any order).
    pub fn start(upstream: std::net::SocketAddr, cuts: Vec<u64>) -> CuttingProxy {
        use std::net::TcpListener;
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut cuts = cuts;
        cuts.sort_unstable();
        let state = Arc::new(Mutex::new(ProxyState {
            cuts: cuts.into(),
            ..ProxyState::default()
        }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.sockets.retain(|sock| sock.peer_addr().is_ok());
                    s.sockets.push(client.try_clone().unwrap());
                    s.sockets.push(server.try_clone().unwrap());
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let shared = Arc::clone(&shared);
                    thread::spawn(move || pump(from, to, &shared));
                }
            }
        });
        CuttingProxy { addr, state }
    }

    /// Where clients connect.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Cuts made so far.
    pub fn cuts_done(&self) -> usize {
        self.state.lock().unwrap().cuts_done
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.state.lock().unwrap().forwarded
    }
}

/// Copies `from` → `to`, cutting every connection when the shared count reaches the
/// next cut offset.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    state: &std::sync::Mutex<ProxyState>,
) {
    use std::io::Write;
    use std::net::Shutdown;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut s = state.lock().unwrap();
        let (keep, cut) = match s.cuts.front() {
            Some(&at) if s.forwarded + n as u64 >= at => {
                ((at - s.forwarded.min(at)) as usize, true)
            }
            _ => (n, false),
        };
        // Write under the lock so a cut cannot interleave with a write in the other direction.
        if to.write_all(&buf[..keep]).is_err() {
            break;
        }
        s.forwarded += keep as u64;
        if cut {
            s.cuts.pop_front();
            s.cuts_done += 1;
            for sock in s.sockets.drain(..) {
                let _ = sock.shutdown(Shutdown::Both);
            }
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Seeded randomness for tests: `SOCKEYE_SEED` if set, else a fresh seed from the
/// clock. The test prints it so a failure can be replayed.
pub fn test_seed() -> u64 {
    std::env::var("SOCKEYE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
