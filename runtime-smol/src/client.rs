//! [`Client`]: connect to a `ws://` URL and perform the client handshake, asynchronously.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};

use async_io::{Async, Timer};
use futures_lite::future;
use sockeye_core::Config;
use sockeye_std::{ClientOptions, Clock, Error, OsEntropy, Result, WsUrl};

use crate::handshake_io::{self, Input};
use crate::websocket::{Parts, WebSocket};

/// Opens client connections, like `sockeye_std::Client` but async.
///
/// Only `ws://` URLs are supported (no TLS). A host name is resolved on the calling
/// thread (`ToSocketAddrs`); pass an IP address to never block the executor.
///
/// ```no_run
/// use sockeye_smol::{Client, CloseCode, Config, Message};
///
/// async_io::block_on(async {
///     let mut ws = Client::connect("ws://127.0.0.1:9001/chat", Config::default()).await?;
///     ws.send(Message::text("hello")).await?;
///     if let Some(reply) = ws.recv().await? {
///         println!("{:?}", reply.as_text());
///     }
///     ws.close(CloseCode::NORMAL, "bye").await?;
///     while ws.recv().await?.is_some() {}
///     Ok::<(), sockeye_smol::Error>(())
/// })?;
/// # Ok::<(), sockeye_smol::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `url` (`ws://host[:port][/path][?query]`) and completes the handshake.
    /// Connecting and the handshake are each bounded by `config.handshake_timeout`.
    pub async fn connect(url: &str, config: Config) -> Result<WebSocket> {
        Client::connect_with(url, config, ClientOptions::default()).await
    }

    /// Like [`connect`](Self::connect), offering subprotocols, an origin, extra headers
    /// or (feature `deflate`) permessage-deflate. [`WebSocket::protocol`] tells which
    /// subprotocol the server picked.
    pub async fn connect_with(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket> {
        Client::connect_on(url, config, options, Clock::new()).await
    }

    /// [`connect_with`](Self::connect_with) on `clock`, so the connection's deadlines
    /// compare with instants the caller (a reliable client) already holds.
    pub(crate) async fn connect_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket> {
        let url = WsUrl::parse(url)?;
        let stream = connect_tcp(&url, &config).await?;
        handshake(stream, &url, config, options, clock).await
    }
}

/// Connects to the first address of `url` that answers within the handshake timeout.
async fn connect_tcp(url: &WsUrl, config: &Config) -> Result<Async<TcpStream>> {
    let mut last = None;
    for addr in url.socket_addr().to_socket_addrs()? {
        let connect = Async::<TcpStream>::connect(addr);
        let timeout = async {
            Timer::after(config.handshake_timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        };
        match future::or(connect, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "host has no address")
    })))
}

/// Performs the client handshake over `stream` and returns the open connection.
async fn handshake(
    mut stream: Async<TcpStream>,
    url: &WsUrl,
    config: Config,
    options: ClientOptions<'_>,
    clock: Clock,
) -> Result<WebSocket> {
    let _ = stream.get_ref().set_nodelay(true);
    let mut entropy = OsEntropy::new()?;
    let mut handshake = options.handshake(url, &config, clock.now(), &mut entropy);
    while let Some(chunk) = handshake.poll_transmit() {
        handshake_io::write_all(&mut stream, &chunk, config.handshake_timeout).await?;
    }
    let mut buf = vec![0u8; 4096];
    let response = loop {
        let input =
            handshake_io::read(&mut stream, &mut buf, handshake.poll_timeout(), clock).await?;
        let step = match input {
            Input::Bytes(n) => handshake.handle_bytes(clock.now(), &buf[..n]),
            Input::Eof => handshake.handle_eof(clock.now()).map(|()| None),
            Input::Timeout => handshake.handle_timeout(clock.now()).map(|()| None),
        };
        if let Some(response) = step? {
            break response;
        }
    };
    let protocol = response.protocol().map(String::from);
    let parts = Parts {
        clock,
        max_queue_bytes: config.max_send_queue_bytes,
        write_timeout: config.pong_timeout,
        linger: config.close_timeout,
        path: None,
        protocol,
    };
    let conn = response.into_connection(clock.now(), config, entropy);
    Ok(WebSocket::new(conn, stream, parts))
}
