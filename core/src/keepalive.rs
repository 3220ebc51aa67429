//! Keepalive timing: when to ping, when to give up on a silent peer, and round-trip time.
//!
//! "Idle" means nothing received: any byte from the peer proves it alive. After
//! `ping_interval` of silence we send a ping whose payload identifies it; if nothing at all
//! arrives within `pong_timeout` after that, the peer is declared dead. A pong that echoes
//! our payload gives a round-trip time sample.

use core::time::Duration;

use crate::time::Instant;

/// What the keepalive timer asks the connection to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send a ping with this payload.
    SendPing([u8; 8]),
    /// Nothing arrived within the timeout after a ping: the peer is gone.
    PeerDead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OutstandingPing {
    sent_at: Instant,
    payload: [u8; 8],
}

/// The ping schedule, pong deadline and RTT estimate of one connection.
#[derive(Clone, Debug)]
pub struct Keepalive {
    interval: Option<Duration>,
    timeout: Duration,
    last_received: Instant,
    ping: Option<OutstandingPing>,
    rtt: Option<Duration>,
}

impl Keepalive {
    /// A keepalive that pings after `interval` of silence (`None`: never) and gives up
    /// `timeout` after a ping that nothing followed.
    pub fn new(interval: Option<Duration>, timeout: Duration, now: Instant) -> Self {
        Keepalive {
            interval,
            timeout,
            last_received: now,
            ping: None,
            rtt: None,
        }
    }

    /// Call whenever bytes arrive from the peer.
    pub fn handle_receive(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
    }

    /// Call with every pong payload; returns the round-trip time if it answers our ping.
    pub fn handle_pong(&mut self, now: Instant, payload: &[u8]) -> Option<Duration> {
        let ping = self.ping.filter(|p| p.payload[..] == *payload)?;
        self.ping = None;
        let rtt = now.saturating_duration_since(ping.sent_at);
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// The latest round-trip time measured, if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    fn awaiting_answer(&self) -> Option<OutstandingPing> {
        self.ping.filter(|p| self.last_received <= p.sent_at)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let interval = self.interval?;
        Some(match self.awaiting_answer() {
            Some(ping) => ping.sent_at + self.timeout,
            None => self.last_received + interval,
        })
    }

    /// Acts on the timer. Early or repeated calls return `None` and change nothing.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepaliveAction> {
        if now < self.poll_timeout()? {
            return None;
        }
        if self.awaiting_answer().is_some() {
            return Some(KeepaliveAction::PeerDead);
        }
        let payload = now.as_nanos().to_be_bytes();
        self.ping = Some(OutstandingPing {
            sent_at: now,
            payload,
        });
        Some(KeepaliveAction::SendPing(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn pings_after_idle_interval_then_declares_dead() {
        let mut k = Keepalive::new(Some(10 * SEC), 5 * SEC, at(0));
        assert_eq!(k.poll_timeout(), Some(at(10)));
        assert_eq!(k.handle_timeout(at(9)), None, "early call is a no-op");
        let Some(KeepaliveAction::SendPing(_)) = k.handle_timeout(at(10)) else {
            panic!()
        };
        assert_eq!(k.poll_timeout(), Some(at(15)));
        assert_eq!(k.handle_timeout(at(15)), Some(KeepaliveAction::PeerDead));
    }

    #[test]
    fn any_bytes_postpone_the_ping_and_cancel_the_deadline() {
        let mut k = Keepalive::new(Some(10 * SEC), 5 * SEC, at(0));
        k.handle_receive(at(7));
        assert_eq!(k.poll_timeout(), Some(at(17)));
        let Some(KeepaliveAction::SendPing(_)) = k.handle_timeout(at(17)) else {
            panic!()
        };
        k.handle_receive(at(18));
        assert_eq!(k.poll_timeout(), Some(at(28)));
    }

    #[test]
    fn matching_pong_measures_rtt() {
        let mut k = Keepalive::new(Some(10 * SEC), 5 * SEC, at(0));
        let Some(KeepaliveAction::SendPing(p)) = k.handle_timeout(at(10)) else {
            panic!()
        };
        assert_eq!(k.handle_pong(at(11), b"other"), None);
        assert_eq!(k.handle_pong(at(12), &p), Some(2 * SEC));
        assert_eq!(k.rtt(), Some(2 * SEC));
    }

    #[test]
    fn disabled_keepalive_never_wakes() {
        let mut k = Keepalive::new(None, 5 * SEC, at(0));
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(k.handle_timeout(at(1000)), None);
    }
}
