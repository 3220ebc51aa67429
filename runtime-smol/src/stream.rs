//! [`AsyncStream`]: what a [`WebSocket`](crate::WebSocket) can run over once its
//! handshake is done — `Async<TcpStream>`, `Async<UnixStream>`, a futures-rustls session
//! (feature `tls`) or a stream of the application's own.

use std::any::Any;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};

/// A connected async byte stream a [`WebSocket`](crate::WebSocket) can be driven over:
/// any [`AsyncRead`] + [`AsyncWrite`] + [`Unpin`].
///
/// The driver reads with `poll_read` (handing the bytes to the core in the same poll, so
/// no buffer is held between reads), writes with `poll_write_vectored` and then
/// `poll_flush` (a stream that buffers, such as TLS, writes what it holds there), and
/// bounds every write by `Config::pong_timeout` with a timer: timeouts hold for any
/// stream. To end the connection it calls `poll_close` (a TLS stream sends its
/// `close_notify`), then [`shutdown_write`](Self::shutdown_write).
///
/// For a type of your own, `impl sockeye_smol::AsyncStream for MyStream {}` and, if it
/// runs over a socket, send FIN in `shutdown_write` (`Async<TcpStream>`'s `poll_close`
/// does not).
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Ends our writing direction after `poll_close`: `shutdown(2)` with `Write` on a
    /// socket, so the peer sees the end of the stream. The default does nothing.
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads like `poll_read`, for a read that follows one which did not fill its buffer.
///
/// A socket that answered a read with fewer bytes than asked is most likely empty now,
/// and reading it again would only fail with `WouldBlock`: twice, with async-io, since
/// its first readiness check still reports the event the last read consumed. On a plain
/// socket this waits for readiness before reading instead. async-io arms readiness
/// level-triggered, so bytes that arrived meanwhile are reported at once: nothing can be
/// missed, and at worst a read waits for the reactor's next turn. Other streams (TLS
/// keeps decrypted bytes of its own, which no socket event announces) read as usual.
pub(crate) fn poll_read_after_short<S: AsyncStream>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let ready = match socket_readable(stream, cx) {
        Some(ready) => ready,
        None => Poll::Ready(Ok(())),
    };
    match ready {
        Poll::Ready(Ok(())) => Pin::new(stream).poll_read(cx, buf),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Readiness of `stream` when it is a plain socket of async-io's (`None` otherwise).
fn socket_readable<S: AsyncStream>(
    stream: &mut S,
    cx: &mut Context<'_>,
) -> Option<Poll<io::Result<()>>> {
    let any = stream as &mut dyn Any;
    if let Some(s) = any.downcast_ref::<Async<TcpStream>>() {
        return Some(fresh_readable(s, cx));
    }
    if let Some(s) = any.downcast_ref::<Async<UnixStream>>() {
        return Some(fresh_readable(s, cx));
    }
    match any.downcast_ref::<MaybeTlsStream>() {
        Some(MaybeTlsStream::Plain(s)) => Some(fresh_readable(s, cx)),
        _ => None,
    }
}

/// Waits for readiness the last read has not already consumed: async-io's first answer
/// may be the event that led to that read, so a `Ready` is asked again, which registers
/// interest anew (and reports at once a socket that has bytes).
fn fresh_readable<T>(s: &Async<T>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match s.poll_readable(cx) {
        Poll::Ready(Ok(())) => s.poll_readable(cx),
        other => other,
    }
}

impl AsyncStream for Async<TcpStream> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.get_ref().shutdown(Shutdown::Write)
    }
}

impl AsyncStream for Async<UnixStream> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.get_ref().shutdown(Shutdown::Write)
    }
}

#[cfg(feature = "tls")]
impl<S: AsyncStream> AsyncStream for futures_rustls::client::TlsStream<S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.get_mut().0.shutdown_write()
    }
}

#[cfg(feature = "tls")]
impl<S: AsyncStream> AsyncStream for futures_rustls::server::TlsStream<S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.get_mut().0.shutdown_write()
    }
}

/// The stream of a client connection opened from a URL: plain TCP for `ws://`, TLS for
/// `wss://` (with the `tls` feature). [`Client::open`](crate::Client::open) and
/// [`ReliableClient`](crate::ReliableClient) connect over it.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// A `ws://` connection.
    Plain(Async<TcpStream>),
    /// A `wss://` connection.
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
}

impl MaybeTlsStream {
    /// The TCP socket underneath, for addresses and socket options.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s.get_ref(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.get_ref().0.get_ref(),
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_close(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

impl AsyncStream for MaybeTlsStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.shutdown_write(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.shutdown_write(),
        }
    }
}
