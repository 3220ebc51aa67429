//! [`Client`]: connect to a `ws://` or `wss://` URL, or take a connected stream, and
//! perform the client handshake, asynchronously.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};

use async_io::{Async, Timer};
use futures_lite::future;
use sockeye_core::Config;
use sockeye_std::{ClientOptions, Clock, Error, OsEntropy, Result, UrlError, WsUrl};

use crate::handshake_io::{self, Input};
use crate::stream::{AsyncStream, MaybeTlsStream};
use crate::websocket::{Parts, WebSocket};

/// Opens client connections, like `sockeye_std::Client` but async.
///
/// [`connect`](Self::connect) opens `ws://` URLs, [`open`](Self::open) `ws://` and
/// `wss://` alike, `connect_tls` (feature `tls`) `wss://` ones; a
/// `wss://` URL is never connected to in the clear. [`WebSocket::client`] runs the
/// handshake over a stream you connected yourself. A host name is resolved on the
/// calling thread (`ToSocketAddrs`); pass an IP address to never block the executor.
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
    /// Connecting and the handshake are each bounded by `config.handshake_timeout`. A
    /// `wss://` URL is refused: see [`open`](Self::open) and
    /// `connect_tls`.
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

    async fn connect_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket> {
        let parsed = WsUrl::parse(url)?;
        if parsed.is_tls() {
            return Err(UrlError::ExpectedWs.into());
        }
        let stream = connect_tcp(&parsed, &config).await?;
        handshake(stream, &parsed, config, options, clock).await
    }

    /// Connects to a `ws://` or a `wss://` URL (the latter with the `tls` feature; without
    /// it a `wss://` URL is refused) and completes the handshake, over plain TCP or TLS
    /// as the scheme says. Connecting, the TLS handshake and the WebSocket handshake are
    /// each bounded by `config.handshake_timeout`.
    pub async fn open(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<MaybeTlsStream>> {
        Client::open_on(url, config, options, Clock::new()).await
    }

    /// [`open`](Self::open) on `clock`, so the connection's deadlines compare with
    /// instants the caller (a reliable client) already holds.
    pub(crate) async fn open_on(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
        clock: Clock,
    ) -> Result<WebSocket<MaybeTlsStream>> {
        let parsed = WsUrl::parse(url)?;
        let tcp = connect_tcp(&parsed, &config).await?;
        let stream = if parsed.is_tls() {
            #[cfg(feature = "tls")]
            {
                MaybeTlsStream::Tls(Box::new(tls_connect(tcp, &parsed, &config, options).await?))
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(UrlError::TlsUnavailable.into());
            }
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        handshake(stream, &parsed, config, options, clock).await
    }

    /// Connects to a `wss://` URL: TCP, then TLS verifying the server's certificate
    /// against `options.tls` (the platform's roots by default) for the URL's host, then
    /// the WebSocket handshake over it, each bounded by `config.handshake_timeout`.
    ///
    /// ```no_run
    /// use sockeye_smol::{Client, ClientOptions, Config, Message};
    ///
    /// async_io::block_on(async {
    ///     let mut ws = Client::connect_tls("wss://example.com/chat", Config::default(),
    ///         ClientOptions::default()).await?;
    ///     ws.send(Message::text("hello")).await?;
    ///     Ok::<(), sockeye_smol::Error>(())
    /// })?;
    /// # Ok::<(), sockeye_smol::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<futures_rustls::client::TlsStream<Async<TcpStream>>>> {
        let parsed = WsUrl::parse(url)?;
        if !parsed.is_tls() {
            return Err(UrlError::ExpectedWss.into());
        }
        let tcp = connect_tcp(&parsed, &config).await?;
        let stream = tls_connect(tcp, &parsed, &config, options).await?;
        handshake(stream, &parsed, config, options, Clock::new()).await
    }
}

/// The client side of a TLS handshake over `tcp` for `url`'s host, bounded by the
/// handshake timeout.
#[cfg(feature = "tls")]
async fn tls_connect(
    tcp: Async<TcpStream>,
    url: &WsUrl,
    config: &Config,
    options: ClientOptions<'_>,
) -> Result<futures_rustls::client::TlsStream<Async<TcpStream>>> {
    let tls = match options.tls {
        Some(tls) => std::sync::Arc::clone(tls),
        None => sockeye_std::tls::platform_client_config()?,
    };
    let name = rustls::pki_types::ServerName::try_from(url.socket_addr().0.to_string())
        .map_err(|_| UrlError::InvalidHost)?;
    let connect = futures_rustls::TlsConnector::from(tls).connect(name, tcp);
    let timeout = async {
        Timer::after(config.handshake_timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the TLS handshake did not complete in time",
        ))
    };
    let stream = future::or(connect, timeout)
        .await
        .inspect_err(|e| log::debug!("TLS handshake with {} failed: {e}", url.host()))?;
    Ok(stream)
}

impl<S: AsyncStream> WebSocket<S> {
    /// Runs the client handshake for `url` over `stream`, a connection you opened
    /// yourself (an `Async<UnixStream>`, a TLS session of your own), and returns the
    /// open WebSocket over it. `url` gives the `Host` header and the path (`ws://` or
    /// `wss://`; nothing is connected to it); the handshake is bounded by
    /// `config.handshake_timeout`.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use async_io::Async;
    /// use sockeye_smol::{ClientOptions, CloseCode, Config, Message, WebSocket};
    ///
    /// async_io::block_on(async {
    ///     let (ours, theirs) = UnixStream::pair()?;
    ///     let (ours, theirs) = (Async::new(ours)?, Async::new(theirs)?);
    ///     let server = async {
    ///         let mut ws = WebSocket::server(theirs, Config::default()).await?;
    ///         while let Some(message) = ws.recv().await? {
    ///             ws.send(message).await?;
    ///         }
    ///         Ok::<(), sockeye_smol::Error>(())
    ///     };
    ///     let client = async {
    ///         let mut ws = WebSocket::client(ours, "ws://localhost/", Config::default(),
    ///             ClientOptions::default()).await?;
    ///         ws.send(Message::text("over a unix socket")).await?;
    ///         assert_eq!(ws.recv().await?, Some(Message::text("over a unix socket")));
    ///         ws.close(CloseCode::NORMAL, "done").await?;
    ///         assert_eq!(ws.recv().await?, None);
    ///         Ok::<(), sockeye_smol::Error>(())
    ///     };
    ///     let (served, talked) = futures_lite::future::zip(server, client).await;
    ///     served.and(talked)
    /// })?;
    /// # Ok::<(), sockeye_smol::Error>(())
    /// ```
    pub async fn client(
        stream: S,
        url: &str,
        config: Config,
        options: ClientOptions<'_>,
    ) -> Result<WebSocket<S>> {
        let url = WsUrl::parse(url)?;
        handshake(stream, &url, config, options, Clock::new()).await
    }
}

/// Connects to the first address of `url` that answers within the handshake timeout.
async fn connect_tcp(url: &WsUrl, config: &Config) -> Result<Async<TcpStream>> {
    let stream = connect_addr(url, config).await?;
    let _ = stream.get_ref().set_nodelay(true);
    Ok(stream)
}

async fn connect_addr(url: &WsUrl, config: &Config) -> Result<Async<TcpStream>> {
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
async fn handshake<S: AsyncStream>(
    mut stream: S,
    url: &WsUrl,
    config: Config,
    options: ClientOptions<'_>,
    clock: Clock,
) -> Result<WebSocket<S>> {
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
        slot: None,
    };
    let conn = response.into_connection(clock.now(), config, entropy);
    Ok(WebSocket::new(conn, stream, parts))
}
