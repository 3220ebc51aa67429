//! The one accept loop every server on std sockets runs ([`Server`](crate::Server),
//! [`ReliableServer`](crate::ReliableServer), the `sockeye` binary's threads runtime),
//! so they agree on which `accept` errors end it, how running out of file descriptors is
//! survived, and how a stop wakes it.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// How long the loop pauses after `accept` fails, so it neither spins nor gives up.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The answer to a connection there is no descriptor to serve.
const OUT_OF_DESCRIPTORS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 31\r\nConnection: close\r\n\r\n\
    server out of file descriptors\n";

/// Whether a call failed for want of file descriptors (the process's or the system's).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// Answers a connection there is no descriptor (or thread) to serve: 503, then FIN.
pub fn answer_503(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(OUT_OF_DESCRIPTORS);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Errors after which `accept` will keep failing: the loop ends with them.
pub fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::NotConnected | io::ErrorKind::Unsupported
    )
}

/// A descriptor held in reserve: out of descriptors, an accept loop gives it up for a
/// moment to take the waiting connection and answer it 503, instead of leaving it
/// unanswered in the backlog while `accept` fails in a loop.
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    /// Takes the reserve descriptor.
    pub fn new() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    /// Gives the reserve up, takes one waiting connection with `accept_one` and answers
    /// it 503, then takes the reserve back.
    pub fn refuse_one(&mut self, accept_one: impl FnOnce() -> Option<TcpStream>) {
        drop(self.0.take());
        if let Some(stream) = accept_one() {
            answer_503(stream);
        }
        self.0 = File::open("/dev/null").ok();
    }
}

impl Default for Spare {
    fn default() -> Spare {
        Spare::new()
    }
}

/// Accepts connections until `stop` is set or `on_stream` answers `false`, handing each
/// to `on_stream`. A failed `accept` is reported to `on_error` and retried after
/// [`ACCEPT_BACKOFF`] (out of descriptors, one waiting client is answered 503 first);
/// only an error retrying cannot fix ends the loop, as its `Err`. Wake a loop blocked in
/// `accept` after setting `stop` with [`wake`].
pub fn accept_until(
    listener: &TcpListener,
    stop: &AtomicBool,
    mut on_stream: impl FnMut(TcpStream) -> bool,
    mut on_error: impl FnMut(&io::Error),
) -> io::Result<()> {
    let mut spare = Spare::new();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stop.load(Ordering::Acquire) || !on_stream(stream) {
                    return Ok(());
                }
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                on_error(&e);
                if is_out_of_descriptors(&e) {
                    spare.refuse_one(|| listener.accept().ok().map(|(s, _)| s));
                }
                if stop.load(Ordering::Acquire) {
                    return Ok(()); // that may have been the wake-up
                }
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Wakes an [`accept_until`] blocked on a listener bound to `addr` (a wildcard bind is
/// reached on loopback), so it sees its stop flag.
pub fn wake(addr: SocketAddr) {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_wildcard_listener_is_woken_on_loopback_and_stops() {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let looping = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || accept_until(&listener, &stop, |_| true, |_| {}))
        };
        stop.store(true, Ordering::Release);
        wake(addr);
        assert!(looping.join().unwrap().is_ok());
    }

    #[test]
    fn on_stream_can_end_the_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = thread::spawn(move || TcpStream::connect(addr).map(|_| ()));
        let mut seen = 0;
        let stop = AtomicBool::new(false);
        accept_until(
            &listener,
            &stop,
            |_| {
                seen += 1;
                false
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(seen, 1);
        client.join().unwrap().unwrap();
    }
}
