//! An in-memory socket every implementation is driven over: it reads a fixed wire buffer
//! over and over (an endless stream of the same frames) and appends whatever is written to
//! a preallocated `Vec` that starts over when full, as a socket's send buffer would drain.
//!
//! It never blocks and never returns `Pending`, so an async call on it finishes in a
//! single poll ([`block_on`]) and no runtime takes part in the measurement.

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads `input` cyclically; collects writes in `output`, clearing it when it would grow
/// past its capacity (so a batch's output stays intact for checking, and never reallocates).
#[derive(Debug)]
pub struct MemStream {
    input: Arc<[u8]>,
    pos: usize,
    output: Vec<u8>,
    output_limit: usize,
}

impl MemStream {
    /// A stream that reads `input` forever and keeps up to `output_limit` written bytes.
    pub fn new(input: Arc<[u8]>, output_limit: usize) -> Self {
        MemStream {
            input,
            pos: 0,
            output: Vec::with_capacity(output_limit),
            output_limit,
        }
    }

    /// What was written since the output last started over.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Forgets what was written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    fn read_into(&mut self, dst: &mut [u8]) -> usize {
        if self.input.is_empty() {
            return 0;
        }
        let n = dst.len().min(self.input.len() - self.pos);
        dst[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.advance(n);
        n
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.input.len() {
            self.pos = 0;
        }
    }

    fn sink(&mut self, bytes: &[u8]) {
        if self.output.len() + bytes.len() > self.output_limit {
            self.output.clear();
        }
        self.output.extend_from_slice(bytes);
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_into(buf))
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink(buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut n = 0;
        for b in bufs {
            self.sink(b);
            n += b.len();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // `put_slice` copies into the unfilled part without zeroing it first, as a real
        // socket read into spare capacity would.
        let this = self.get_mut();
        let n = buf.remaining().min(this.input.len() - this.pos);
        buf.put_slice(&this.input[this.pos..this.pos + n]);
        this.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Write::write(self.get_mut(), buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Write::write_vectored(self.get_mut(), bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs a future that cannot wait (everything it awaits is a [`MemStream`]) to completion.
///
/// # Panics
///
/// If the future returns `Pending`, which would mean it awaits something else.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("an in-memory future returned Pending"),
    }
}
