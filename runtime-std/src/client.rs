//! [`Client`]: connect to a `ws://` URL and perform the client handshake.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};

use sockeye_core::handshake::ClientRequest;
use sockeye_core::{ClientHandshake, Config, Entropy, Instant};

use crate::entropy::OsEntropy;
use crate::error::{Error, Result};
use crate::time::Clock;
use crate::transport::{write_timeout, Input, Transport};
use crate::url::WsUrl;
use crate::websocket::WebSocket;

/// What a client asks for in its handshake besides the URL.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientOptions<'a> {
    /// Subprotocols to offer, most preferred first.
    pub protocols: &'a [&'a str],
    /// The `Origin` header to send, if any.
    pub origin: Option<&'a str>,
    /// Extra header fields, such as `("Authorization", "Bearer …")`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The permessage-deflate policy (RFC 7692) to offer, if any (`None`, the default:
    /// no offer). [`WebSocket::deflate_params`] tells what the server agreed to.
    ///
    /// The field exists with the `deflate` feature only: build the options with
    /// `..ClientOptions::default()` so that code compiles whether or not some crate in
    /// the build enables it.
    #[cfg(feature = "deflate")]
    pub deflate: Option<&'a sockeye_core::handshake::DeflateConfig>,
}

impl ClientOptions<'_> {
    /// The core's client handshake for `url` with these options, as both runtimes start
    /// it: the request head with the subprotocols, origin, headers and (with the
    /// `deflate` feature) the permessage-deflate offer.
    pub fn handshake(
        &self,
        url: &WsUrl,
        config: &Config,
        now: Instant,
        entropy: &mut dyn Entropy,
    ) -> ClientHandshake {
        let host = url.host_header();
        let request = ClientRequest {
            host: &host,
            path: url.resource(),
            protocols: self.protocols,
            origin: self.origin,
            headers: self.headers,
        };
        #[cfg(feature = "deflate")]
        if let Some(policy) = self.deflate {
            return ClientHandshake::with_deflate(config, now, request, entropy, policy);
        }
        ClientHandshake::new(config, now, request, entropy)
    }
}

/// Opens client connections.
///
/// Only `ws://` URLs are supported: this runtime has no TLS, and refuses `wss://` rather
/// than connecting in the clear.
///
/// ```no_run
/// use sockeye_std::{Client, CloseCode, Config, Message};
///
/// let mut ws = Client::connect("ws://127.0.0.1:9001/chat", Config::default())?;
/// ws.send(Message::text("hello"))?;
/// if let Some(reply) = ws.recv()? {
///     println!("{:?}", reply.as_text());
/// }
/// ws.close(CloseCode::NORMAL, "bye")?;
/// while ws.recv()?.is_some() {}
/// # Ok::<(), sockeye_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `url` (`ws://host[:port][/path][?query]`) and completes the handshake.
    /// Connecting and the handshake are each bounded by `config.handshake_timeout`.
    pub fn connect(url: &str, config: Config) -> Result<WebSocket> {
        Client::connect_with(url, config, ClientOptions::default())
    }

    /// Like [`connect`](Self::connect), offering subprotocols, an origin or extra headers.
    /// [`WebSocket::protocol`] tells which subprotocol the server picked.
    pub fn connect_with(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket> {
        Client::connect_on(url, config, options, Clock::new())
    }

    /// [`connect_with`](Self::connect_with) whose connection reads `clock`, so its
    /// deadlines compare with instants its caller (a reliable client) already holds.
    pub(crate) fn connect_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket> {
        let url = WsUrl::parse(url)?;
        let stream = connect_tcp(&url, &config)?;
        handshake(stream, &url, config, options, clock)
    }
}

/// Connects to the first address of `url` that answers within the handshake timeout.
fn connect_tcp(url: &WsUrl, config: &Config) -> Result<TcpStream> {
    let mut last = None;
    for addr in url.socket_addr().to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, config.handshake_timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "host has no address")
    })))
}

/// Performs the client handshake over `stream` and returns the open connection.
fn handshake(
    stream: TcpStream,
    url: &WsUrl,
    config: Config,
    options: ClientOptions<'_>,
    clock: Clock,
) -> Result<WebSocket> {
    let mut transport = Transport::new(stream, write_timeout(&config), clock)?;
    let mut entropy = OsEntropy::new()?;
    let mut handshake = options.handshake(url, &config, clock.now(), &mut entropy);
    while let Some(chunk) = handshake.poll_transmit() {
        transport.queue(chunk);
    }
    transport.flush()?;
    let response = loop {
        let step = match transport.read(handshake.poll_timeout())? {
            Input::Bytes(data) => handshake.handle_bytes(clock.now(), data),
            Input::Eof => handshake.handle_eof(clock.now()).map(|()| None),
            Input::Timeout => handshake.handle_timeout(clock.now()).map(|()| None),
            Input::Woken | Input::Flushed => Ok(None),
        };
        if let Some(response) = step? {
            break response;
        }
    };
    let protocol = response.protocol().map(String::from);
    let close_timeout = config.close_timeout;
    let conn = response.into_connection(clock.now(), config, entropy);
    WebSocket::new(conn, transport, close_timeout, None, protocol)
}
