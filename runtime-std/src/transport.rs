//! The stream half of the driver: reads bounded by the core's next deadline, and writes
//! of the core's outgoing chunks that survive partial writes.
//!
//! The socket is in non-blocking mode and every wait is a `poll(2)` (through `rustix`),
//! on the socket and, once a [`Sender`](crate::Sender) exists, on the read end of a wake-up
//! pair, so that a read in progress can be interrupted from another thread. A write that
//! cannot proceed waits for the socket to become writable, but never longer than the
//! write timeout after the peer last took a byte: a peer that reads nothing for that long
//! is treated as gone ([`is_write_stall`]), however the bytes are split into writes.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::event::{PollFd, PollFlags, Timespec};
use sockeye_core::time::earliest;
use sockeye_core::{Config, Instant};

use crate::stream::Stream;
use crate::time::Clock;

/// Size of the read buffer: one `read` hands the core at most this many bytes.
pub(crate) const READ_BUF_BYTES: usize = 64 * 1024;

/// Most chunks passed to one `write_vectored` call.
const MAX_IOVECS: usize = 64;

/// How long a write may wait for the peer to read: as long as the core waits for a pong
/// before declaring the peer dead, since a peer that drains nothing is just as dead.
pub(crate) fn write_timeout(config: &Config) -> Duration {
    config.pong_timeout
}

/// The error inside the `io::Error` (kind `TimedOut`) of a write that made no progress
/// for the write timeout.
#[derive(Debug)]
struct WriteStalled(Duration);

impl fmt::Display for WriteStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the peer took no bytes for {:?}", self.0)
    }
}

impl std::error::Error for WriteStalled {}

/// `e` is a transport's write timing out because the peer read nothing for the write
/// timeout.
pub(crate) fn is_write_stall(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<WriteStalled>())
}

/// What one wait for input produced.
pub(crate) enum Input<'a> {
    /// Bytes arrived.
    Bytes(&'a [u8]),
    /// The peer closed its side of the connection.
    Eof,
    /// The deadline passed first.
    Timeout,
    /// Another thread woke the wait (see [`Transport::waker`]).
    Woken,
    /// Everything queued has been written (the caller may want to shut down now).
    Flushed,
}

/// A non-blocking [`Stream`] with a read buffer and a queue of chunks waiting to be
/// written.
pub(crate) struct Transport<S = TcpStream> {
    stream: S,
    read_buf: Box<[u8]>,
    /// Chunks taken from the core and not yet fully written; the front one may be a tail
    /// left by a partial write.
    pending: VecDeque<Bytes>,
    /// The bytes in `pending`.
    pending_bytes: usize,
    /// The clock deadlines given to [`read`](Self::read) count from.
    clock: Clock,
    /// The longest a write may wait with the peer taking nothing.
    write_timeout: Duration,
    /// Since when the socket has refused bytes while some wait, if it does.
    stalled_since: Option<Instant>,
    /// The read end of the wake-up pair, once [`waker`](Self::waker) made it.
    wake: Option<UnixStream>,
    /// Every chunk went to the stream but the stream's own `flush` answered
    /// `WouldBlock` (a TLS session holding ciphertext): bytes still wait.
    unflushed: bool,
}

impl<S: fmt::Debug> fmt::Debug for Transport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("stream", &self.stream)
            .field("pending_bytes", &self.pending_bytes)
            .field("unflushed", &self.unflushed)
            .finish_non_exhaustive()
    }
}

impl<S: Stream> Transport<S> {
    /// Wraps a connected stream: [`Stream::prepare`] (non-blocking mode; for TCP also
    /// `TCP_NODELAY`), and `write_timeout` as the longest a write may wait for the peer
    /// to make room: a peer that reads nothing for that long is treated as gone, so a
    /// blocked write cannot hang a thread forever.
    pub(crate) fn new(mut stream: S, write_timeout: Duration, clock: Clock) -> io::Result<Self> {
        stream.prepare()?;
        Ok(Transport {
            stream,
            read_buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            clock,
            write_timeout: write_timeout.max(Duration::from_millis(1)),
            stalled_since: None,
            wake: None,
            unflushed: false,
        })
    }

    /// The clock this transport's deadlines count from.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// The underlying stream, for addresses and socket options.
    pub(crate) fn stream(&self) -> &S {
        &self.stream
    }

    /// Bytes wait to be written: queued chunks, or ciphertext the stream holds.
    fn has_unwritten(&self) -> bool {
        !self.pending.is_empty() || self.unflushed
    }

    /// Makes this transport's wake-up pair and returns its write end: a byte written
    /// to it ends the current or next [`read`](Self::read) with [`Input::Woken`]. Called
    /// once per transport (a second call replaces the pair).
    pub(crate) fn waker(&mut self) -> io::Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        self.wake = Some(ours);
        Ok(theirs)
    }

    /// Waits until bytes arrive, the peer closes, `deadline` passes, or another thread
    /// wakes the wait, writing what is queued as the socket takes it. Fails with a write
    /// stall ([`is_write_stall`]) when queued bytes wait for the write timeout with the
    /// peer taking none.
    pub(crate) fn read(&mut self, deadline: Option<Instant>) -> io::Result<Input<'_>> {
        loop {
            if self.has_unwritten() {
                self.write_some()?;
                if !self.has_unwritten() {
                    return Ok(Input::Flushed);
                }
            }
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => return Ok(Input::Bytes(&self.read_buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let stall = self.stall_deadline();
            let woken = self.wait(true, earliest(deadline, stall))?;
            if woken {
                return Ok(Input::Woken);
            }
            let now = self.clock.now();
            if stall.is_some_and(|d| now >= d) {
                // A last try: the peer may have read just now.
                self.write_some()?;
                if !self.has_unwritten() {
                    return Ok(Input::Flushed);
                }
                if self.stall_deadline().is_some_and(|d| now >= d) {
                    return Err(self.stall_error());
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Input::Timeout);
            }
        }
    }

    /// Queues a chunk from the core's `poll_transmit` for [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.pending_bytes += chunk.len();
            self.pending.push_back(chunk);
        }
    }

    /// How many bytes wait to be written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Nothing waits to be written.
    pub(crate) fn is_flushed(&self) -> bool {
        !self.has_unwritten()
    }

    /// Writes every queued chunk, blocking until the kernel has taken them all, or
    /// failing with a write stall ([`is_write_stall`]) once the peer has taken nothing
    /// for the write timeout. After a partial write the unwritten tail stays at the
    /// front of the queue.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        loop {
            self.write_some()?;
            let Some(stall) = self.stall_deadline() else {
                return Ok(());
            };
            if self.clock.now() >= stall {
                return Err(self.stall_error());
            }
            self.wait(false, Some(stall))?;
        }
    }

    /// Writes what the socket takes now, without waiting; notes when it stops taking.
    pub(crate) fn write_some(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&self.pending) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert_with(|| self.clock.now());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        // A stream that buffers (TLS) writes the rest of what it took; a socket's flush
        // does nothing.
        loop {
            match self.stream.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unflushed = true;
                    self.stalled_since.get_or_insert_with(|| self.clock.now());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.unflushed = false;
        self.stalled_since = None;
        Ok(())
    }

    /// When a write waiting now fails: the write timeout after the socket last refused
    /// bytes with the peer taking none since; `None` while nothing waits.
    fn stall_deadline(&self) -> Option<Instant> {
        if !self.has_unwritten() {
            return None;
        }
        self.stalled_since.map(|since| since + self.write_timeout)
    }

    fn stall_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, WriteStalled(self.write_timeout))
    }

    /// Waits (`poll(2)`) until the socket is readable (if `read`), writable (while bytes
    /// wait), the wake-up pair has a byte (if `read`; drained here), or `deadline`
    /// passes. Returns whether it was woken. Spurious returns are fine: callers retry.
    fn wait(&mut self, read: bool, deadline: Option<Instant>) -> io::Result<bool> {
        let mut flags = PollFlags::empty();
        if read {
            flags |= PollFlags::IN;
        }
        if self.has_unwritten() {
            flags |= PollFlags::OUT;
        }
        let timeout = deadline.map(|d| {
            Timespec::try_from(self.clock.until(d)).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let woken = match self.wake.as_ref().filter(|_| read) {
            Some(wake) => {
                let mut fds = [
                    PollFd::new(&self.stream, flags),
                    PollFd::new(wake, PollFlags::IN),
                ];
                poll(&mut fds, timeout.as_ref())?;
                !fds[1].revents().is_empty()
            }
            None => {
                poll(&mut [PollFd::new(&self.stream, flags)], timeout.as_ref())?;
                false
            }
        };
        if woken {
            if let Some(mut wake) = self.wake.as_ref() {
                let mut sink = [0u8; 64];
                while matches!(wake.read(&mut sink), Ok(n) if n > 0) {}
            }
        }
        Ok(woken)
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, n: usize) {
        self.pending_bytes -= n;
        drop_written(&mut self.pending, n);
    }

    /// Ends the connection politely: sends FIN, then reads and discards until the peer
    /// closes too or `linger` passes, so unread bytes in our receive buffer do not turn
    /// into a reset that could destroy the close frame we just sent.
    pub(crate) fn shutdown(&mut self, linger: Duration) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.unflushed = false;
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = self.clock.now() + linger;
        while self.clock.now() < deadline {
            match self.read(Some(deadline)) {
                Ok(Input::Bytes(_) | Input::Woken | Input::Flushed) => continue,
                Ok(Input::Eof | Input::Timeout) | Err(_) => break,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Blocks until `stream` (non-blocking, as a [`Transport`] leaves it) is readable or has
/// hung up, for a thread that reads a clone of a transport's stream.
pub(crate) fn wait_readable(stream: &TcpStream) -> io::Result<()> {
    poll(&mut [PollFd::new(stream, PollFlags::IN)], None)
}

/// `poll(2)`; an interrupted wait counts as a spurious wake-up.
fn poll(fds: &mut [PollFd<'_>], timeout: Option<&Timespec>) -> io::Result<()> {
    match rustix::event::poll(fds, timeout) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Drops `n` bytes that a vectored write took from the front of a queue of chunks
/// (whole chunks, then the start of a partial one).
pub(crate) fn drop_written(pending: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let front = pending.front_mut().expect("wrote more than was queued");
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        pending.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (Transport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (
            Transport::new(client, Duration::from_secs(5), Clock::new()).unwrap(),
            server,
        )
    }

    #[test]
    fn flush_writes_every_chunk_in_order_and_partial_tails() {
        let (mut t, mut peer) = pair();
        t.queue(Bytes::from_static(b"hello "));
        t.queue(Bytes::new());
        t.queue(Bytes::from_static(b"world"));
        t.consume(3);
        t.flush().unwrap();
        assert!(t.is_flushed());
        let mut got = [0u8; 8];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"lo world");
    }

    #[test]
    fn read_reports_bytes_timeout_and_eof() {
        let (mut t, mut peer) = pair();
        let soon = t.clock.now() + Duration::from_millis(5);
        assert!(matches!(t.read(Some(soon)).unwrap(), Input::Timeout));
        peer.write_all(b"abc").unwrap();
        assert!(matches!(t.read(None).unwrap(), Input::Bytes(b"abc")));
        drop(peer);
        assert!(matches!(t.read(None).unwrap(), Input::Eof));
    }
}
