//! [`Stream`]: what a [`WebSocket`](crate::WebSocket) can run over once its handshake is
//! done — a `TcpStream`, a `UnixStream`, a TLS session ([`TlsStream`](crate::TlsStream)
//! with the `tls` feature) or a stream of the application's own.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// A connected byte stream a [`WebSocket`](crate::WebSocket) can be driven over.
///
/// The driver waits with `poll(2)`, so a stream is a [`Read`] + [`Write`] over a file
/// descriptor ([`AsFd`]) whose readiness says when to try again: the driver puts the
/// descriptor in non-blocking mode ([`prepare`](Self::prepare)), calls `read` and `write`
/// until they answer [`io::ErrorKind::WouldBlock`], and only then waits for the
/// descriptor. Timeouts (keepalive, the close handshake, a write the peer does not drain
/// for `Config::pong_timeout`) hold for every stream that keeps this contract.
///
/// A stream that buffers inside (TLS) keeps it when:
/// - `read` returns bytes it already holds before it reads the descriptor again, and
///   answers `WouldBlock` only when the descriptor has nothing either;
/// - `flush` pushes what it buffered to the descriptor and answers `WouldBlock` while
///   some of it is left; the driver calls it after every write and waits for the
///   descriptor to be writable while it fails so.
///
/// `TcpStream` and `UnixStream` implement it; for a stream type of your own, implement
/// it on that type (the defaults fit a socket):
///
/// ```
/// use std::io::{self, Read, Write};
/// use std::os::fd::{AsFd, BorrowedFd};
/// use std::os::unix::net::UnixStream;
///
/// /// A stream that counts what it reads.
/// struct Counting { inner: UnixStream, read: u64 }
///
/// impl Read for Counting {
///     fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
///         let n = self.inner.read(buf)?;
///         self.read += n as u64;
///         Ok(n)
///     }
/// }
/// impl Write for Counting {
///     fn write(&mut self, buf: &[u8]) -> io::Result<usize> { self.inner.write(buf) }
///     fn flush(&mut self) -> io::Result<()> { self.inner.flush() }
/// }
/// impl AsFd for Counting {
///     fn as_fd(&self) -> BorrowedFd<'_> { self.inner.as_fd() }
/// }
/// impl sockeye_std::Stream for Counting {}
/// ```
pub trait Stream: Read + Write + AsFd + Send + 'static {
    /// Readies the stream for the driver: non-blocking mode on its descriptor (the
    /// default). Called once, before the handshake.
    fn prepare(&mut self) -> io::Result<()> {
        rustix::io::ioctl_fionbio(self.as_fd(), true)?;
        Ok(())
    }

    /// Ends one or both directions (`shutdown(2)` on the descriptor by default), as the
    /// driver does after the closing handshake: `Write` first, so the peer sees the end
    /// of the stream, then `Both`. A TLS stream sends its `close_notify` first.
    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => rustix::net::Shutdown::Read,
            Shutdown::Write => rustix::net::Shutdown::Write,
            Shutdown::Both => rustix::net::Shutdown::Both,
        };
        rustix::net::shutdown(self.as_fd(), how)?;
        Ok(())
    }
}

impl Stream for TcpStream {
    /// Non-blocking mode and `TCP_NODELAY`: the core already coalesces small frames, so
    /// Nagle would only add latency.
    fn prepare(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)?;
        self.set_nodelay(true)
    }

    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

impl Stream for UnixStream {
    fn prepare(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)
    }

    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

/// A [`Stream`] that runs over a TCP socket, whose addresses a
/// [`WebSocket`](crate::WebSocket) reports (`peer_addr`, `local_addr`).
pub trait OverTcp {
    /// The TCP socket underneath.
    fn tcp_stream(&self) -> &TcpStream;
}

impl OverTcp for TcpStream {
    fn tcp_stream(&self) -> &TcpStream {
        self
    }
}

impl OverTcp for MaybeTlsStream {
    fn tcp_stream(&self) -> &TcpStream {
        self.tcp()
    }
}

#[cfg(feature = "tls")]
impl OverTcp for crate::tls::TlsStream<TcpStream> {
    fn tcp_stream(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// A stream whose type is decided at run time (`WebSocket<Box<dyn Stream>>`).
impl Stream for Box<dyn Stream> {
    fn prepare(&mut self) -> io::Result<()> {
        (**self).prepare()
    }

    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        (**self).shutdown(how)
    }
}

/// The stream of a client connection opened from a URL: plain TCP for `ws://`, TLS for
/// `wss://` (with the `tls` feature). [`Client::open`](crate::Client::open) and
/// [`ReliableClient`](crate::ReliableClient) connect over it.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// A `ws://` connection.
    Plain(TcpStream),
    /// A `wss://` connection.
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsStream>),
}

impl MaybeTlsStream {
    /// The TCP socket underneath, for addresses and socket options.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for MaybeTlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for MaybeTlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.flush(),
        }
    }
}

impl AsFd for MaybeTlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

impl Stream for MaybeTlsStream {
    fn prepare(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.prepare(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.prepare(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => Stream::shutdown(s, how),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.shutdown(how),
        }
    }
}
