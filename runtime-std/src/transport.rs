//! The socket half of the driver: blocking reads bounded by the core's next deadline, and
//! writes of the core's outgoing chunks that survive partial writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::{Buf, Bytes};
use sockeye_core::{Config, Instant};

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

/// What one blocking read produced.
pub(crate) enum Input<'a> {
    /// Bytes arrived.
    Bytes(&'a [u8]),
    /// The peer closed its side of the connection.
    Eof,
    /// The deadline passed first.
    Timeout,
}

/// A `TcpStream` with a read buffer and a queue of chunks waiting to be written.
#[derive(Debug)]
pub(crate) struct Transport {
    stream: TcpStream,
    read_buf: Box<[u8]>,
    /// The read timeout last set on the socket, to skip redundant system calls.
    read_timeout: Option<Duration>,
    /// Chunks taken from the core and not yet fully written; the front one may be a tail
    /// left by a partial write.
    pending: VecDeque<Bytes>,
    /// The clock deadlines given to [`read`](Self::read) count from.
    clock: Clock,
}

impl Transport {
    /// Wraps a connected stream: blocking mode, `TCP_NODELAY` on (the core already
    /// coalesces small frames, so Nagle would only add latency), and `write_timeout` as
    /// the longest a write may wait for the peer to make room: a peer that reads nothing
    /// for that long is treated as gone, so a blocked write cannot hang a thread forever.
    pub(crate) fn new(
        stream: TcpStream,
        write_timeout: Duration,
        clock: Clock,
    ) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(Some(write_timeout.max(Duration::from_millis(1))))?;
        Ok(Transport {
            stream,
            read_buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            read_timeout: None,
            pending: VecDeque::new(),
            clock,
        })
    }

    /// The clock this transport's deadlines count from.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// The underlying stream, for addresses and socket options.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Blocks until bytes arrive, the peer closes, or `deadline` passes.
    pub(crate) fn read(&mut self, deadline: Option<Instant>) -> io::Result<Input<'_>> {
        let timeout = deadline.map(|d| self.clock.until(d));
        if timeout != self.read_timeout {
            self.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        loop {
            match self.stream.read(&mut self.read_buf) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => return Ok(Input::Bytes(&self.read_buf[..n])),
                // Unix reports an expired read timeout as WouldBlock, Windows as TimedOut.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Input::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues a chunk from the core's `poll_transmit` for [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.pending.push_back(chunk);
        }
    }

    /// Nothing waits to be written.
    pub(crate) fn is_flushed(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes every queued chunk, blocking until the kernel has taken them all. After a
    /// partial write the unwritten tail stays at the front of the queue.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&self.pending) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            let written = match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        Ok(())
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, n: usize) {
        drop_written(&mut self.pending, n);
    }

    /// Ends the connection politely: sends FIN, then reads and discards until the peer
    /// closes too or `linger` passes, so unread bytes in our receive buffer do not turn
    /// into a reset that could destroy the close frame we just sent.
    pub(crate) fn shutdown(&mut self, linger: Duration) {
        self.pending.clear();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = self.clock.now() + linger;
        while self.clock.now() < deadline {
            match self.read(Some(deadline)) {
                Ok(Input::Bytes(_)) => continue,
                Ok(Input::Eof | Input::Timeout) | Err(_) => break,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
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
