//! [`Client`]: connect to a `ws://` or `wss://` URL, or take a connected stream, and
//! perform the client handshake.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};

use sockeye_core::handshake::ClientRequest;
use sockeye_core::{ClientHandshake, Config, Entropy, Instant};

use crate::entropy::OsEntropy;
use crate::error::{Error, Result};
use crate::stream::{MaybeTlsStream, Stream};
use crate::time::Clock;
use crate::transport::{write_timeout, Input, Transport};
use crate::url::{UrlError, WsUrl};
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
    /// The TLS configuration of a `wss://` connection: the roots to verify the server
    /// against, a client certificate, ALPN. `None` (the default): the platform's trust
    /// store ([`tls::platform_client_config`](crate::tls::platform_client_config)); a
    /// store of your own goes through [`tls::client_config`](crate::tls::client_config).
    ///
    /// The field exists with the `tls` feature only (build the options with
    /// `..ClientOptions::default()`).
    #[cfg(feature = "tls")]
    pub tls: Option<&'a std::sync::Arc<rustls::ClientConfig>>,
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
/// [`connect`](Self::connect) opens `ws://` URLs over TCP; [`open`](Self::open) takes
/// `ws://` and `wss://` alike; with the `tls` feature
/// `connect_tls` opens `wss://` ones. A `wss://` URL is never
/// connected to in the clear. [`WebSocket::client`] runs the handshake over a stream you
/// connected yourself (a Unix socket, your own TLS).
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
    /// Connecting and the handshake are each bounded by `config.handshake_timeout`. A
    /// `wss://` URL is refused: see [`open`](Self::open) and
    /// `connect_tls`.
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
    fn connect_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket> {
        let parsed = WsUrl::parse(url)?;
        if parsed.is_tls() {
            return Err(UrlError::ExpectedWs.into());
        }
        let stream = connect_tcp(&parsed, &config)?;
        handshake(stream, &parsed, config, options, clock)
    }

    /// Connects to a `ws://` or a `wss://` URL (the latter with the `tls` feature; without
    /// it a `wss://` URL is refused) and completes the handshake, over plain TCP or TLS
    /// as the scheme says. Connecting, the TLS handshake and the WebSocket handshake are
    /// each bounded by `config.handshake_timeout`.
    pub fn open(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<MaybeTlsStream>> {
        Client::open_on(url, config, options, Clock::new())
    }

    /// [`open`](Self::open) whose connection reads `clock`, so its deadlines compare with
    /// instants its caller (a reliable client) already holds.
    pub(crate) fn open_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket<MaybeTlsStream>> {
        let parsed = WsUrl::parse(url)?;
        let tcp = connect_tcp(&parsed, &config)?;
        let stream = if parsed.is_tls() {
            #[cfg(feature = "tls")]
            {
                MaybeTlsStream::Tls(Box::new(tls_connect(
                    tcp, &parsed, &config, options, clock,
                )?))
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(UrlError::TlsUnavailable.into());
            }
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        handshake(stream, &parsed, config, options, clock)
    }

    /// Connects to a `wss://` URL: TCP, then TLS verifying the server's certificate
    /// against `options.tls` (the platform's roots by default) for the URL's host, then
    /// the WebSocket handshake over it, each bounded by `config.handshake_timeout`.
    ///
    /// ```no_run
    /// use sockeye_std::{Client, ClientOptions, Config, Message};
    ///
    /// let mut ws = Client::connect_tls("wss://example.com/chat", Config::default(),
    ///     ClientOptions::default())?;
    /// ws.send(Message::text("hello"))?;
    /// # Ok::<(), sockeye_std::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<crate::tls::TlsStream>> {
        let parsed = WsUrl::parse(url)?;
        if !parsed.is_tls() {
            return Err(UrlError::ExpectedWss.into());
        }
        let clock = Clock::new();
        let tcp = connect_tcp(&parsed, &config)?;
        let stream = tls_connect(tcp, &parsed, &config, options, clock)?;
        handshake(stream, &parsed, config, options, clock)
    }
}

/// The client side of a TLS handshake over `tcp` for `url`'s host.
#[cfg(feature = "tls")]
fn tls_connect(
    tcp: TcpStream,
    url: &WsUrl,
    config: &Config,
    options: ClientOptions<'_>,
    clock: Clock,
) -> Result<crate::tls::TlsStream> {
    let tls = match options.tls {
        Some(tls) => std::sync::Arc::clone(tls),
        None => crate::tls::platform_client_config()?,
    };
    let name = rustls::pki_types::ServerName::try_from(url.socket_addr().0.to_string())
        .map_err(|_| UrlError::InvalidHost)?;
    let conn = rustls::ClientConnection::new(tls, name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let deadline = clock.now() + config.handshake_timeout;
    Ok(crate::tls::TlsStream::handshake(
        conn.into(),
        tcp,
        clock,
        deadline,
    )?)
}

impl<S: Stream> WebSocket<S> {
    /// Runs the client handshake for `url` over `stream`, a connection you opened
    /// yourself (a `UnixStream`, a TLS session of your own, a proxy tunnel), and returns
    /// the open WebSocket over it. `url` gives the `Host` header and the path (`ws://`
    /// or `wss://`; nothing is connected to it). The stream is put in non-blocking mode;
    /// the handshake is bounded by `config.handshake_timeout`.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::thread;
    /// use sockeye_std::{ClientOptions, CloseCode, Config, Message, WebSocket};
    ///
    /// let (ours, theirs) = UnixStream::pair()?;
    /// let server = thread::spawn(move || -> sockeye_std::Result<()> {
    ///     let mut ws = WebSocket::server(theirs, Config::default())?;
    ///     while let Some(message) = ws.recv()? {
    ///         ws.send(message)?;
    ///     }
    ///     Ok(())
    /// });
    /// let mut ws = WebSocket::client(ours, "ws://localhost/echo", Config::default(),
    ///     ClientOptions::default())?;
    /// ws.send(Message::text("over a unix socket"))?;
    /// assert_eq!(ws.recv()?, Some(Message::text("over a unix socket")));
    /// ws.close(CloseCode::NORMAL, "done")?;
    /// assert_eq!(ws.recv()?, None);
    /// server.join().unwrap()?;
    /// # Ok::<(), sockeye_std::Error>(())
    /// ```
    pub fn client(
        stream: S,
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<S>> {
        let url = WsUrl::parse(url)?;
        handshake(stream, &url, config, options, Clock::new())
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
fn handshake<S: Stream>(
    stream: S,
    url: &WsUrl,
    config: Config,
    options: ClientOptions<'_>,
    clock: Clock,
) -> Result<WebSocket<S>> {
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
