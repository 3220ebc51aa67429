//! The runtime's clock: a `std::time::Instant` epoch, read with `elapsed()`.
//!
//! The core counts nanoseconds from an origin the caller chooses
//! ([`sockeye_core::Instant`]). Each connection, client or registry here holds a
//! [`Clock`] made when it was, and every instant it hands the core or accepts from the
//! application (a deadline for [`WebSocket::recv_event_until`](crate::WebSocket::recv_event_until),
//! from [`WebSocket::now`](crate::WebSocket::now)) counts from that clock's epoch: no
//! process-wide static. Readings never go backwards (`std::time::Instant` is monotonic).

use std::time::Duration;

use sockeye_core::Instant;

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

    /// `at` as a `std::time::Instant`, for timers that take one (an async runtime's
    /// `Timer::at`). Saturates far in the future rather than overflowing.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        let far = self.epoch + Duration::from_secs(100 * 365 * 24 * 3600);
        self.epoch
            .checked_add(Duration::from_nanos(at.as_nanos()))
            .map_or(far, |t| t.min(far))
    }

    /// How long to block until `deadline`, at least one millisecond (a zero read
    /// timeout is rejected, and a deadline already passed must still wake promptly).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_backwards_and_copies_agree() {
        let clock = Clock::new();
        let copy = clock;
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = copy.now();
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(2));
    }

    #[test]
    fn instants_convert_to_std_and_saturate() {
        let clock = Clock::new();
        let at = clock.now() + Duration::from_millis(5);
        let std_at = clock.to_std(at);
        assert_eq!(
            std_at.duration_since(clock.epoch),
            Duration::from_nanos(at.as_nanos())
        );
        assert!(clock.to_std(Instant::MAX) > std_at);
    }

    #[test]
    fn waits_are_at_least_a_millisecond() {
        let clock = Clock::new();
        assert_eq!(clock.until(Instant::ZERO), Duration::from_millis(1));
        assert!(clock.until(clock.now() + Duration::from_secs(5)) > Duration::from_secs(4));
    }
}
