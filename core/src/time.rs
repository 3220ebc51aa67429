//! The core's own monotonic clock reading.
//!
//! `std::time::Instant` does not exist in `no_std`, so the core counts nanoseconds from an
//! origin the caller chooses (a runtime captures one epoch at start; the simulation starts
//! at [`Instant::ZERO`]). The core never reads a clock: it only compares instants it is given.

use core::ops::Add;
use core::time::Duration;

/// A point in monotonic time, in nanoseconds since an origin chosen by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

/// The earlier of two optional deadlines (`None`: no deadline): what a driver sleeps
/// until when it waits on two machines at once.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition: an instant never wraps around.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

/// Remembers the latest instant seen, so a clock that steps backwards cannot move the core
/// back in time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    latest: Instant,
}

impl Clock {
    pub(crate) fn new(now: Instant) -> Self {
        Clock { latest: now }
    }

    /// Takes `now` from the caller and returns the latest instant seen so far.
    pub(crate) fn observe(&mut self, now: Instant) -> Instant {
        if now > self.latest {
            self.latest = now;
        }
        self.latest
    }

    /// The latest instant seen, for work done outside a call that carries `now`.
    pub(crate) fn latest(&self) -> Instant {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::from_nanos(5) + Duration::from_nanos(7),
            Instant::from_nanos(12)
        );
    }

    #[test]
    fn clock_never_goes_backwards() {
        let mut clock = Clock::new(Instant::from_nanos(10));
        assert_eq!(
            clock.observe(Instant::from_nanos(5)),
            Instant::from_nanos(10)
        );
        assert_eq!(
            clock.observe(Instant::from_nanos(20)),
            Instant::from_nanos(20)
        );
    }
}
