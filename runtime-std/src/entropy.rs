//! Randomness from the operating system, for masking keys and `Sec-WebSocket-Key`.
//!
//! RFC 6455 §5.3 requires masking keys the peer (and anything between) cannot predict.
//! [`OsEntropy`] reads the kernel's CSPRNG through `/dev/urandom` in buffered blocks of
//! 512 bytes: every byte handed to the core comes straight from the kernel, none is
//! stretched by a user-space generator, and a connection costs one `read` per 128 masked
//! frames. This needs no dependency; its price is that it works only where `/dev/urandom`
//! exists (Linux, the BSDs, macOS). Bytes are wiped from the buffer once handed out.

use std::fs::File;
use std::io::{self, Read};
use std::sync::OnceLock;

use sockeye_core::Entropy;

/// Bytes read from the kernel at a time.
const BLOCK_BYTES: usize = 512;

/// The process's one handle to `/dev/urandom`, opened on first use.
fn urandom() -> io::Result<&'static File> {
    static URANDOM: OnceLock<Result<File, io::ErrorKind>> = OnceLock::new();
    URANDOM
        .get_or_init(|| File::open("/dev/urandom").map_err(|e| e.kind()))
        .as_ref()
        .map_err(|kind| io::Error::new(*kind, "cannot open /dev/urandom"))
}

/// An [`Entropy`] source backed by the kernel's CSPRNG (`/dev/urandom`), buffered.
pub struct OsEntropy {
    file: &'static File,
    buf: Box<[u8; BLOCK_BYTES]>,
    /// Bytes of `buf` already handed out (and wiped).
    used: usize,
}

impl std::fmt::Debug for OsEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsEntropy").finish_non_exhaustive()
    }
}

impl OsEntropy {
    /// A new source. Fails only if `/dev/urandom` cannot be opened.
    pub fn new() -> io::Result<Self> {
        Ok(OsEntropy {
            file: urandom()?,
            buf: Box::new([0; BLOCK_BYTES]),
            used: BLOCK_BYTES,
        })
    }

    fn refill(&mut self) {
        let mut file = self.file;
        // Reads from /dev/urandom cannot fail or come up short once it is open (urandom(4));
        // a failure here means the kernel is broken, and masking with guessable keys would
        // be worse than stopping.
        file.read_exact(&mut self.buf[..])
            .expect("reading /dev/urandom failed");
        self.used = 0;
    }
}

impl Entropy for OsEntropy {
    fn fill(&mut self, mut dest: &mut [u8]) {
        while !dest.is_empty() {
            if self.used == BLOCK_BYTES {
                self.refill();
            }
            let n = dest.len().min(BLOCK_BYTES - self.used);
            let src = &mut self.buf[self.used..self.used + n];
            dest[..n].copy_from_slice(src);
            src.fill(0);
            self.used += n;
            dest = &mut dest[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_any_length_with_fresh_bytes() {
        let mut e = OsEntropy::new().unwrap();
        let mut a = [0u8; 4];
        let mut b = vec![0u8; 3 * BLOCK_BYTES + 7];
        e.fill(&mut a);
        e.fill(&mut b);
        assert!(b.chunks(16).all(|c| c.iter().any(|&x| x != 0)));
        let mut c = [0u8; 16];
        let mut d = [0u8; 16];
        e.fill(&mut c);
        e.fill(&mut d);
        assert_ne!(c, d);
    }
}
