//! When a client reconnects: exponential backoff with jitter, bounded.
//!
//! A client that lost its connection waits before trying again, longer after each attempt
//! that did not get the session going, so a server that is down or overloaded is not hit
//! by every client at once and in lockstep. The policy is sans-IO like the rest of the
//! core: the caller passes `now`, and the jitter comes from the caller's [`Entropy`].
//!
//! ```text
//!                    handle_disconnected: delay = min(initial · 2^failures, max),
//!                    minus up to jitter_percent of it; failures += 1
//!   +-----------+  ──────────────────────────────────────────────▶  +------------------+
//!   | connected |                                                   | waiting until at |
//!   +-----------+  ◀── connect (handle_attempt) once at has passed ─ +------------------+
//!         │ WELCOME (handle_established): failures = 0                      │ failures > max_attempts
//!                                                                           ▼
//!                                                                    gave up (None)
//! ```
//!
//! `failures` counts connections in a row that ended before the session was established
//! (refused, failed, or dropped before the WELCOME), so the first reconnect after a
//! working connection is quick and a server that keeps refusing is probed less and less.

use core::time::Duration;

use crate::entropy::Entropy;
use crate::time::Instant;

/// How a client spaces its reconnection attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// Delay before the first attempt after a working connection dropped.
    pub initial_delay: Duration,
    /// Longest delay between two attempts; doubling stops here.
    pub max_delay: Duration,
    /// How much of each delay is random: the delay is drawn uniformly from
    /// `[delay · (1 − jitter_percent/100), delay]`. Capped at 100.
    pub jitter_percent: u8,
    /// Give up after this many attempts in a row that did not establish the session;
    /// `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            jitter_percent: 50,
            max_attempts: None,
        }
    }
}

/// The reconnect policy's state: when the next attempt is due.
#[derive(Clone, Debug)]
pub struct Reconnect {
    config: ReconnectConfig,
    /// Attempts in a row that did not establish the session.
    failures: u32,
    /// When the next attempt is due, while waiting.
    at: Option<Instant>,
}

impl Reconnect {
    /// A policy with no attempt scheduled: the caller connects at once the first time.
    pub fn new(config: ReconnectConfig) -> Self {
        Reconnect {
            config,
            failures: 0,
            at: None,
        }
    }

    /// The policy's settings.
    pub fn config(&self) -> &ReconnectConfig {
        &self.config
    }

    /// The connection ended or an attempt failed: schedules the next attempt and
    /// returns when it is due, or `None` once `max_attempts` attempts in a row failed
    /// (give up). Calling it again while an attempt is already scheduled keeps that one.
    pub fn handle_disconnected(
        &mut self,
        now: Instant,
        entropy: &mut dyn Entropy,
    ) -> Option<Instant> {
        if let Some(at) = self.at {
            return Some(at);
        }
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            return None;
        }
        let delay = self.delay(self.failures, entropy);
        self.failures = self.failures.saturating_add(1);
        let at = now.saturating_add(delay);
        self.at = Some(at);
        Some(at)
    }

    /// The delay before attempt number `failures + 1`: doubled per failure, bounded,
    /// minus a random part.
    fn delay(&self, failures: u32, entropy: &mut dyn Entropy) -> Duration {
        let max = self.config.max_delay;
        let base = self
            .config
            .initial_delay
            .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(max)
            .min(max);
        // At most u64::MAX nanoseconds (584 years), so the products below fit a u128.
        let base = base.as_nanos().min(u128::from(u64::MAX));
        let jitter = u128::from(self.config.jitter_percent.min(100));
        let span = base * jitter / 100;
        let mut bytes = [0u8; 8];
        entropy.fill(&mut bytes);
        let random = u128::from(u64::from_le_bytes(bytes));
        // random / 2^64 is uniform in [0, 1).
        let minus = (span * random) >> 64;
        let nanos = base - minus;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When the next attempt is due, if one is scheduled. A runtime wakes up then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.at
    }

    /// The caller starts an attempt at `now` (at once the first time, or once
    /// [`poll_timeout`](Self::poll_timeout) has passed): clears the schedule.
    pub fn handle_attempt(&mut self, _now: Instant) {
        self.at = None;
    }

    /// The session is established (WELCOME received) at `now`: the next drop reconnects
    /// after `initial_delay` again.
    pub fn handle_established(&mut self, _now: Instant) {
        self.failures = 0;
    }

    /// Attempts in a row that have not established the session.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use alloc::vec::Vec;

    const MS: Duration = Duration::from_millis(1);

    fn config(jitter_percent: u8) -> ReconnectConfig {
        ReconnectConfig {
            initial_delay: 100 * MS,
            max_delay: 1000 * MS,
            jitter_percent,
            max_attempts: None,
        }
    }

    fn delays(r: &mut Reconnect, n: usize, entropy: &mut SeededEntropy) -> Vec<Duration> {
        let mut now = Instant::ZERO;
        (0..n)
            .map(|_| {
                let at = r.handle_disconnected(now, entropy).unwrap();
                let d = at.saturating_duration_since(now);
                r.handle_attempt(now);
                now = at;
                d
            })
            .collect()
    }

    #[test]
    fn without_jitter_doubles_up_to_the_bound() {
        let mut r = Reconnect::new(config(0));
        let got = delays(&mut r, 6, &mut SeededEntropy::new(1));
        let ms: Vec<u128> = got.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_share_and_varies() {
        let mut e = SeededEntropy::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut r = Reconnect::new(config(50));
            let got = delays(&mut r, 5, &mut e);
            for (d, base) in got.iter().zip([100, 200, 400, 800, 1000]) {
                assert!(*d <= base * MS && *d >= base * MS / 2, "{d:?} vs {base}");
            }
            seen.insert(got[0]);
        }
        assert!(seen.len() > 100, "jitter hardly varies: {}", seen.len());
    }

    #[test]
    fn establishing_resets_and_a_scheduled_attempt_is_kept() {
        let mut e = SeededEntropy::new(3);
        let mut r = Reconnect::new(config(0));
        let now = Instant::ZERO;
        assert_eq!(r.poll_timeout(), None);
        let at = r.handle_disconnected(now, &mut e).unwrap();
        assert_eq!(r.handle_disconnected(now + 50 * MS, &mut e), Some(at));
        assert!(now + 99 * MS < at);
        r.handle_attempt(now);
        let at = r.handle_disconnected(at, &mut e).unwrap();
        assert_eq!(at, now + 300 * MS);
        r.handle_attempt(now);
        r.handle_established(now);
        assert_eq!(r.failures(), 0);
        assert_eq!(r.handle_disconnected(at, &mut e), Some(at + 100 * MS));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut e = SeededEntropy::new(3);
        let mut r = Reconnect::new(ReconnectConfig {
            max_attempts: Some(2),
            ..config(0)
        });
        for _ in 0..2 {
            assert!(r.handle_disconnected(Instant::ZERO, &mut e).is_some());
            r.handle_attempt(Instant::ZERO);
        }
        assert_eq!(r.handle_disconnected(Instant::ZERO, &mut e), None);
        r.handle_established(Instant::ZERO);
        assert!(r.handle_disconnected(Instant::ZERO, &mut e).is_some());
    }

    #[test]
    fn huge_settings_saturate_instead_of_overflowing() {
        let mut e = SeededEntropy::new(3);
        let mut r = Reconnect::new(ReconnectConfig {
            initial_delay: Duration::MAX,
            max_delay: Duration::MAX,
            jitter_percent: 255,
            max_attempts: None,
        });
        let now = Instant::from_millis(5);
        for _ in 0..40 {
            let at = r.handle_disconnected(now, &mut e).unwrap();
            assert!(at >= now);
            r.handle_attempt(now);
        }
    }
}
