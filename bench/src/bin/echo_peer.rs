//! Echo servers for the `load` benchmark: one binary, one implementation per process,
//! each echoing every text and binary message back, written the way a user of that
//! library would write it. A benchmark helper, not a test.
//!
//! ```sh
//! cargo build --release -p sockeye-bench --bin echo_peer
//! taskset -c 0 target/release/echo_peer --impl sockeye-smol --listen 127.0.0.1:0
//! ```
//!
//! It prints `listening ADDR` on stdout once it accepts connections, and exits when its
//! standard input reaches end of file (so it never outlives the `load` process that
//! started it). Implementations (`--impl`):
//!
//! - `raw`: plain TCP echo on one edge-triggered `mio` loop, reading into one shared
//!   256 KiB buffer (the floor: no WebSocket at all).
//! - `sockeye-smol`: `sockeye_smol::Server`, a task per connection on one
//!   `LocalExecutor` (as `runtime-smol/examples/smol_echo_server.rs`).
//! - `sockeye-std`: `sockeye_std::Server::serve`, a thread per connection (as
//!   `runtime-std/examples/echo_server.rs`).
//! - `sockeye-smol-try-send`: the same with `try_send` in place of `send` (falling back
//!   to `send` when the queue is full), which leaves the write to the next `recv` that
//!   has to wait for the socket. Not the example's code; `load` runs it only when
//!   `--only` names it.
//! - `tokio-tungstenite`: `accept_async`, then `next()` and `send()` per message.
//! - `tokio-tungstenite-fwd`: the same stream split, `read.forward(write)` (batched
//!   writes: the sink is flushed only when no message is ready).
//! - `fastwebsockets`: HTTP upgrade by hand, `FragmentCollector`, `read_frame` then
//!   `write_frame` per message.
//!
//! The tokio ones run on a current-thread runtime. Every server sets `TCP_NODELAY` on
//! its connections (the sockeye runtimes do it themselves).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};

const IMPLS: &[&str] = &[
    "raw",
    "sockeye-smol",
    "sockeye-std",
    "sockeye-smol-try-send",
    "tokio-tungstenite",
    "tokio-tungstenite-fwd",
    "fastwebsockets",
];

fn usage() -> ! {
    eprintln!("usage: echo_peer --impl {} --listen ADDR", IMPLS.join("|"));
    std::process::exit(2);
}

fn announce(addr: SocketAddr) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "listening {addr}");
    let _ = out.flush();
}

/// Exits the process when standard input closes: the parent died or is done with us.
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
}

fn main() {
    let mut imp = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--impl" => imp = Some(args.next().unwrap_or_else(|| usage())),
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let imp = imp.unwrap_or_else(|| usage());
    exit_on_stdin_eof();
    let result = match imp.as_str() {
        "raw" => raw::serve(&listen),
        "sockeye-smol" => smol_echo(&listen),
        "sockeye-std" => std_echo(&listen),
        "sockeye-smol-try-send" => smol_try_send(&listen),
        "tokio-tungstenite" => tokio_peers::serve(&listen, tokio_peers::Kind::TungSend),
        "tokio-tungstenite-fwd" => tokio_peers::serve(&listen, tokio_peers::Kind::TungForward),
        "fastwebsockets" => tokio_peers::serve(&listen, tokio_peers::Kind::Fast),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("echo_peer {imp}: {e}");
        std::process::exit(1);
    }
}

fn smol_echo(listen: &str) -> io::Result<()> {
    use async_executor::LocalExecutor;
    use sockeye_smol::{Config, Server};
    use std::rc::Rc;

    let server = Server::bind(listen, Config::default()).map_err(io::Error::other)?;
    announce(server.local_addr()?);
    let ex = Rc::new(LocalExecutor::new());
    async_io::block_on(ex.run(async {
        loop {
            let incoming = server.accept().await.map_err(io::Error::other)?;
            ex.spawn(async move {
                let Ok(mut ws) = incoming.upgrade().await else {
                    return;
                };
                while let Ok(Some(message)) = ws.recv().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    }))
}

/// Not in `load`'s default set: the smol echo with `try_send` (queue, don't wait for
/// the write), so the next `recv` returns the next message already read before the
/// echoes go out, in one write. Its numbers show what `send`'s write per message costs.
fn smol_try_send(listen: &str) -> io::Result<()> {
    use async_executor::LocalExecutor;
    use sockeye_smol::{Config, Error, Server};
    use std::rc::Rc;

    let server = Server::bind(listen, Config::default()).map_err(io::Error::other)?;
    announce(server.local_addr()?);
    let ex = Rc::new(LocalExecutor::new());
    async_io::block_on(ex.run(async {
        loop {
            let incoming = server.accept().await.map_err(io::Error::other)?;
            ex.spawn(async move {
                let Ok(mut ws) = incoming.upgrade().await else {
                    return;
                };
                while let Ok(Some(message)) = ws.recv().await {
                    match ws.try_send(message) {
                        Ok(()) => {}
                        Err(Error::Full(m)) => {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            })
            .detach();
        }
    }))
}

fn std_echo(listen: &str) -> io::Result<()> {
    use sockeye_std::{Config, Server};

    let server = Server::bind(listen, Config::default()).map_err(io::Error::other)?;
    announce(server.local_addr()?);
    server
        .serve(|mut ws| {
            while let Ok(Some(message)) = ws.recv() {
                if ws.send(message).is_err() {
                    break;
                }
            }
        })
        .map_err(io::Error::other)
}

/// Plain TCP echo: whatever a connection sends comes back, on one edge-triggered
/// `mio` loop with one 256 KiB buffer for all connections.
mod raw {
    use super::*;
    use mio::net::{TcpListener as MioListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};

    const LISTENER: Token = Token(usize::MAX);

    struct Conn {
        stream: TcpStream,
        /// Bytes read but not yet written back; the connection reads no more until
        /// they are out (empty, and unallocated, while the echo keeps up).
        pending: Vec<u8>,
    }

    /// Writes `data` until done or the socket is full; returns how much went out, or
    /// `None` when the connection is over.
    fn write_some(stream: &mut TcpStream, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            match stream.write(&data[at..]) {
                Ok(0) => return None,
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(at)
    }

    /// Echoes until the socket would block, reading into the loop's one buffer;
    /// `false` when the connection is over.
    fn pump(c: &mut Conn, buf: &mut [u8]) -> bool {
        if !c.pending.is_empty() {
            let Some(n) = write_some(&mut c.stream, &c.pending) else {
                return false;
            };
            c.pending.drain(..n);
            if !c.pending.is_empty() {
                return true;
            }
            c.pending = Vec::new();
        }
        loop {
            let got = match c.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let Some(n) = write_some(&mut c.stream, &buf[..got]) else {
                return false;
            };
            if n < got {
                c.pending.extend_from_slice(&buf[n..got]);
                return true;
            }
            // A short read emptied the socket; new bytes raise a new edge.
            if got < buf.len() {
                return true;
            }
        }
    }

    pub(super) fn serve(listen: &str) -> io::Result<()> {
        let std_listener = TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        announce(std_listener.local_addr()?);
        let mut listener = MioListener::from_std(std_listener);
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    loop {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let _ = stream.set_nodelay(true);
                                let slot = free.pop().unwrap_or_else(|| {
                                    conns.push(None);
                                    conns.len() - 1
                                });
                                poll.registry().register(
                                    &mut stream,
                                    Token(slot),
                                    Interest::READABLE | Interest::WRITABLE,
                                )?;
                                conns[slot] = Some(Conn {
                                    stream,
                                    pending: Vec::new(),
                                });
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            // Out of descriptors and the like: drop this event, retry later.
                            Err(_) => break,
                        }
                    }
                    continue;
                }
                let slot = ev.token().0;
                let alive = match conns.get_mut(slot) {
                    Some(Some(c)) => pump(c, &mut buf),
                    _ => continue,
                };
                if !alive {
                    if let Some(mut c) = conns[slot].take() {
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                    free.push(slot);
                }
            }
        }
    }
}

/// The tokio-based peers, each on a current-thread runtime.
mod tokio_peers {
    use super::*;
    use futures_util::{future, SinkExt, StreamExt, TryStreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[derive(Clone, Copy)]
    pub(super) enum Kind {
        TungSend,
        TungForward,
        Fast,
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    pub(super) fn serve(listen: &str, kind: Kind) -> io::Result<()> {
        let std_listener = TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            announce(addr);
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = match kind {
                        Kind::TungSend => tung_send(stream).await,
                        Kind::TungForward => tung_forward(stream).await,
                        Kind::Fast => fast(stream).await,
                    };
                });
            }
        })
    }

    async fn tung_send(stream: TcpStream) -> Result<(), BoxError> {
        let mut ws = tokio_tungstenite::accept_async(stream).await?;
        while let Some(message) = ws.next().await {
            let message = message?;
            if message.is_text() || message.is_binary() {
                ws.send(message).await?;
            }
        }
        Ok(())
    }

    async fn tung_forward(stream: TcpStream) -> Result<(), BoxError> {
        let ws = tokio_tungstenite::accept_async(stream).await?;
        let (write, read) = ws.split();
        read.try_filter(|m| future::ready(m.is_text() || m.is_binary()))
            .forward(write)
            .await?;
        Ok(())
    }

    /// Reads the upgrade request and answers 101 by hand (RFC 6455 section 4.2.2).
    async fn upgrade_by_hand(stream: &mut TcpStream) -> Result<(), BoxError> {
        use base64::Engine as _;
        use sha1::{Digest, Sha1};

        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("eof during the handshake".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > 8192 {
                return Err("handshake too long".into());
            }
        };
        if end != buf.len() {
            return Err("bytes after the upgrade request".into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&buf)?;
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .ok_or("no Sec-WebSocket-Key")?
            .value;
        let mut sha = Sha1::new();
        sha.update(key);
        sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).await?;
        Ok(())
    }

    async fn fast(mut stream: TcpStream) -> Result<(), BoxError> {
        use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};

        upgrade_by_hand(&mut stream).await?;
        let mut ws = WebSocket::after_handshake(stream, Role::Server);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        let mut ws = FragmentCollector::new(ws);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
    }
}
