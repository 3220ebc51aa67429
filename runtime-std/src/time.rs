//! The runtime's clock: one `std::time::Instant` epoch, read with `elapsed()`.
//!
//! The core counts nanoseconds from an origin the caller chooses
//! ([`sockeye_core::Instant`]). This runtime captures a single process-wide epoch the first
//! time a clock is read and converts every later reading with `elapsed()`, so instants from
//! different connections are comparable and never go backwards.

use std::sync::OnceLock;
use std::time::Duration;

use sockeye_core::Instant;

/// The process-wide epoch all [`now`] readings count from.
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// A clock with an explicit epoch: [`Clock::now`] counts nanoseconds from the moment the
/// clock was made. A driver that owns one core machine (or the server layer) makes its
/// own clock and passes it where instants are read, so nothing depends on a process-wide
/// origin. Copies share the epoch, so their readings are comparable.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// The current time as the core's [`Instant`]: nanoseconds since this clock's epoch.
    pub fn now(&self) -> Instant {
        let nanos = self.epoch.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long to block until `deadline`, at least one millisecond (see [`now`]'s
    /// module docs: a zero read timeout is rejected, and a passed deadline still wakes).
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(self.now())
            .max(Duration::from_millis(1))
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// The current time as the core's [`Instant`]: nanoseconds since the runtime's epoch.
pub fn now() -> Instant {
    let nanos = epoch().elapsed().as_nanos();
    Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How long to block until `deadline`, at least one millisecond so a read timeout is never
/// zero (which `set_read_timeout` rejects) and a deadline already passed still wakes us
/// promptly.
pub(crate) fn until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(now())
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_backwards() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        let b = now();
        assert!(b > a);
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
    }

    #[test]
    fn waits_are_at_least_a_millisecond() {
        assert_eq!(until(Instant::ZERO), Duration::from_millis(1));
        assert!(until(now() + Duration::from_secs(5)) > Duration::from_secs(4));
    }
}
