//! Running out of file descriptors, logged the same way on every runtime: once, not once
//! per refused client (the accept loops answer those 503 with
//! [`sockeye_std::accept::Spare`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// Out of file descriptors, and said so in the log (until descriptors are to be had
/// again).
static STARVED: AtomicBool = AtomicBool::new(false);

/// Logs, once until [`descriptors_again`], that descriptors ran out.
pub(crate) fn out_of_descriptors(e: &std::io::Error) {
    if !STARVED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "out of file descriptors ({e}): new connections are answered 503 until some \
             close (raise `ulimit -n` or lower --max-connections)"
        );
    }
}

/// A connection was set up: descriptors are to be had again.
pub(crate) fn descriptors_again() {
    if STARVED.load(Ordering::Relaxed) && STARVED.swap(false, Ordering::Relaxed) {
        log::info!("file descriptors available again");
    }
}
