//! Running out of file descriptors, the same way on every runtime: a descriptor held in
//! reserve lets an accept loop take the waiting connection and answer it 503 instead of
//! leaving it unanswered in the backlog while `accept` fails in a loop, and the log says
//! so once, not once per refused client.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::log::log_at;

/// Out of file descriptors, and said so in the log (until descriptors are to be had
/// again).
static STARVED: AtomicBool = AtomicBool::new(false);

/// The answer to a connection the server has no descriptor to serve (the layer never
/// sees it).
const OUT_OF_DESCRIPTORS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 31\r\nConnection: close\r\n\r\n\
    server out of file descriptors\n";

/// Whether a call failed for want of file descriptors (the process's or the system's).
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// Logs, once until [`descriptors_again`], that descriptors ran out.
pub(crate) fn out_of_descriptors(e: &std::io::Error) {
    if !STARVED.swap(true, Ordering::Relaxed) {
        log_at!(
            Warn,
            "out of file descriptors ({e}): new connections are answered 503 until some \
             close (raise `ulimit -n` or lower --max-connections)"
        );
    }
}

/// A connection was set up: descriptors are to be had again.
pub(crate) fn descriptors_again() {
    if STARVED.load(Ordering::Relaxed) && STARVED.swap(false, Ordering::Relaxed) {
        log_at!(Info, "file descriptors available again");
    }
}

/// Answers a connection the server has no descriptor to serve with: 503, FIN.
pub(crate) fn answer_503(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(OUT_OF_DESCRIPTORS);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The descriptor an accept loop holds in reserve.
pub(crate) struct Spare(Option<File>);

impl Spare {
    pub(crate) fn new() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    /// `accept` failed with `e` for want of descriptors: logs it, gives the reserve up
    /// for a moment to take one waiting connection with `accept_one` and answer it 503,
    /// then takes the reserve back.
    pub(crate) fn refuse_one(
        &mut self,
        e: &std::io::Error,
        accept_one: impl FnOnce() -> Option<TcpStream>,
    ) {
        out_of_descriptors(e);
        drop(self.0.take());
        if let Some(stream) = accept_one() {
            answer_503(stream);
        }
        self.0 = File::open("/dev/null").ok();
    }
}
