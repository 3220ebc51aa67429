//! The sender's half of reliable delivery: every message is kept as `Bytes` until the
//! peer acknowledges it, resent when its retransmission timer fires, and given back to the
//! application as a dead letter when it cannot be delivered — never dropped silently.
//!
//! Verbs: [`push`](SendWindow::push), [`ack`](SendWindow::ack),
//! [`handle_timeout`](SendWindow::handle_timeout), [`next_to_send`](SendWindow::next_to_send);
//! [`handle_connected`](SendWindow::handle_connected) / [`handle_disconnected`](SendWindow::handle_disconnected)
//! follow the transport, [`lose_session`](SendWindow::lose_session) ends the session.
//!
//! # When may a message become a dead letter?
//!
//! Only when the sender *knows* the peer has not delivered it and never will. A message
//! transmitted on the current connection may still arrive (TCP loses nothing until the
//! connection breaks), so a message over `resend_max_tries` or `message_max_age` that may
//! be in the peer's hands makes the window report [`TimeoutOutcome::Unresponsive`]: the
//! session drops the connection, and on resume the peer's "last delivered" says exactly
//! which messages it lacks. Those, if overdue, are dead-lettered then, and their sequence
//! numbers are sent as *void* DATA so the receiver skips them. Messages never transmitted
//! can be dead-lettered at once. The one case left undecided is a session that ends while
//! a message's fate is unknown: its dead letter says `possibly_delivered`.

use alloc::collections::VecDeque;
use bytes::Bytes;
use core::time::Duration;

use super::{DeadLetterReason, Seq, SessionEvent};
use crate::config::SessionConfig;
use crate::error::{SessionProtocolError, SessionSendError};
use crate::time::Instant;

/// A round-trip estimator in the manner of RFC 6298 (SRTT, RTTVAR, bounded RTO).
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    initial: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            initial,
            min,
            max: max.max(min),
        }
    }

    /// Takes one round-trip sample (RFC 6298 §2.2–2.3, with α = 1/8 and β = 1/4).
    pub fn handle_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout after `backoff` consecutive expiries: RTO = SRTT +
    /// max(1 ms, 4·RTTVAR) (or the initial RTO), doubled per backoff, within the bounds.
    pub fn rto(&self, backoff: u32) -> Duration {
        let base = match self.srtt {
            None => self.initial,
            Some(srtt) => srtt.saturating_add((self.rttvar * 4).max(Duration::from_millis(1))),
        };
        let factor = 1u32.checked_shl(backoff.min(31)).unwrap_or(u32::MAX);
        base.saturating_mul(factor).clamp(self.min, self.max)
    }
}

/// One message kept until acknowledged.
#[derive(Clone, Debug)]
struct Entry {
    /// `None` once dead-lettered: only the sequence number is left, sent as void DATA.
    payload: Option<Bytes>,
    is_text: bool,
    pushed_at: Instant,
    /// Connections of this session it was transmitted on (dead letter at resume when
    /// over `resend_max_tries`). Retransmissions on one connection count once: a cut
    /// that leaves the connection half-open for a while (its retransmissions go
    /// nowhere) costs the message one try, not several.
    tries: u32,
    /// Transmissions on the current connection (unresponsive when over the limit).
    conn_tries: u32,
    /// When it was last transmitted on the current connection.
    sent_at: Option<Instant>,
    /// A copy reached, or may reach, the peer and we do not know whether it delivered it.
    maybe_delivered: bool,
}

/// What a message to transmit looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Its sequence number.
    pub seq: Seq,
    /// Its payload, or `None` for a void (dead-lettered) sequence number.
    pub payload: Option<Bytes>,
    /// Whether the payload is text.
    pub is_text: bool,
}

/// What [`SendWindow::handle_timeout`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// Nothing that needs the session's attention.
    Quiet,
    /// A message the peer may hold is over its tries or age: drop the connection so a
    /// resume can settle it.
    Unresponsive,
}

/// Unacknowledged messages, retransmission timing and the flow window of one direction.
#[derive(Clone, Debug)]
pub struct SendWindow {
    config: SessionConfig,
    /// `entries[i]` has sequence number `acked + 1 + i`.
    entries: VecDeque<Entry>,
    /// Cumulative ack received: every seq up to here is settled.
    acked: u64,
    /// Payload bytes held.
    bytes: usize,
    /// Highest seq transmitted in this session (an ack above it is a violation).
    highest_sent: u64,
    /// Next seq to transmit on the current connection.
    cursor: u64,
    /// Retransmit the oldest unacked message next.
    resend_oldest: bool,
    connected: bool,
    rtt: RttEstimator,
    backoff: u32,
    rto_deadline: Option<Instant>,
    /// Already reported unresponsive on this connection.
    unresponsive: bool,
    /// Transmissions of a message that had been transmitted before (resends), over the
    /// window's life.
    resent: u64,
}

impl SendWindow {
    /// An empty window; sequence numbers start at 1.
    pub fn new(config: SessionConfig) -> Self {
        let rtt = RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max);
        SendWindow {
            config,
            entries: VecDeque::new(),
            acked: 0,
            bytes: 0,
            highest_sent: 0,
            cursor: 1,
            resend_oldest: false,
            connected: false,
            rtt,
            backoff: 0,
            rto_deadline: None,
            unresponsive: false,
            resent: 0,
        }
    }

    /// A window rebuilt from a journal after a restart: everything up to `acked` is
    /// settled, and `entries` (payload, or `None` for a given-up message, and whether it
    /// is text) are numbered from `acked + 1`. Each counts as transmitted once and as
    /// possibly delivered, and its age starts again at `now`. The window may hold more
    /// than a since-lowered limit; `push` answers `Full` until acks bring it down.
    pub(crate) fn restored(
        config: SessionConfig,
        now: Instant,
        acked: Seq,
        entries: impl IntoIterator<Item = (Option<Bytes>, bool)>,
    ) -> Self {
        let mut window = SendWindow::new(config);
        window.acked = acked.0;
        for (payload, is_text) in entries {
            window.bytes += payload.as_ref().map_or(0, Bytes::len);
            window.entries.push_back(Entry {
                payload,
                is_text,
                pushed_at: now,
                tries: 1,
                conn_tries: 0,
                sent_at: None,
                maybe_delivered: true,
            });
        }
        window.highest_sent = window.acked + window.entries.len() as u64;
        window.cursor = window.acked + 1;
        window
    }

    /// Transmissions so far of messages that had been transmitted before: a
    /// retransmission on a timeout, or a resend after a resume. A counter for metrics.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Messages held (sent or not, void included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// `push` of a `len`-byte payload would answer `Full` right now: the window has no
    /// room for it until acks arrive. `false` for a payload that could never fit (`push`
    /// answers `TooLarge` for that).
    pub fn is_full_for(&self, len: usize) -> bool {
        len <= self.config.window_bytes
            && (self.entries.len() >= self.config.window_messages
                || self.bytes + len > self.config.window_bytes)
    }

    /// The cumulative ack received so far.
    pub fn acked(&self) -> Seq {
        Seq(self.acked)
    }

    /// The sequence number the next `push` gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.end())
    }

    /// The round-trip estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    fn end(&self) -> u64 {
        self.acked
            .saturating_add(self.entries.len() as u64)
            .saturating_add(1)
    }

    fn index(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.acked + 1)?)
            .ok()
            .filter(|&i| i < self.entries.len())
    }

    /// Takes a message from the application. Answers `Full` when the window has no room
    /// for it (backpressure), `TooLarge` if it could never fit. Keeps the `Bytes`, no copy.
    pub fn push(
        &mut self,
        now: Instant,
        payload: Bytes,
        is_text: bool,
    ) -> Result<Seq, SessionSendError> {
        if payload.len() > self.config.window_bytes {
            return Err(SessionSendError::TooLarge {
                max: self.config.window_bytes,
            });
        }
        if self.is_full_for(payload.len()) {
            return Err(SessionSendError::Full);
        }
        let seq = Seq(self.end());
        self.bytes += payload.len();
        self.entries.push_back(Entry {
            payload: Some(payload),
            is_text,
            pushed_at: now,
            tries: 0,
            conn_tries: 0,
            sent_at: None,
            maybe_delivered: false,
        });
        Ok(seq)
    }

    /// Takes back message `seq` before it was ever transmitted: it goes out as a void
    /// sequence number (the peer skips it), without a dead letter. Returns its payload,
    /// or `None` if it was transmitted (the peer may hold it), settled or void already.
    pub fn void_untransmitted(&mut self, seq: Seq) -> Option<Bytes> {
        let i = self.index(seq.0)?;
        let entry = &mut self.entries[i];
        if entry.tries > 0 || entry.sent_at.is_some() || entry.maybe_delivered {
            return None;
        }
        let payload = entry.payload.take()?;
        self.bytes -= payload.len();
        Some(payload)
    }

    /// Takes a cumulative ack: every message up to `ack` was delivered (or skipped, if
    /// void). Emits `Acked` for each live one, samples the RTT, restarts the timer.
    pub fn ack(
        &mut self,
        now: Instant,
        ack: Seq,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), SessionProtocolError> {
        if ack.0 > self.highest_sent {
            return Err(SessionProtocolError::AckForUnsent {
                ack: ack.0,
                highest_sent: self.highest_sent,
            });
        }
        if ack.0 <= self.acked {
            return Ok(()); // stale or repeated: nothing new
        }
        let mut sample = None;
        while self.acked < ack.0 {
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            self.acked += 1;
            // Karn: only a message sent once gives a clean sample.
            if entry.tries == 1 && entry.conn_tries == 1 {
                if let Some(sent) = entry.sent_at {
                    sample = Some(now.saturating_duration_since(sent));
                }
            }
            if let Some(payload) = entry.payload {
                self.bytes -= payload.len();
                events.push_back(SessionEvent::Acked {
                    seq: Seq(self.acked),
                });
            }
        }
        self.cursor = self.cursor.max(self.acked + 1);
        if let Some(rtt) = sample {
            self.rtt.handle_sample(rtt);
        }
        self.backoff = 0;
        self.resend_oldest = false;
        self.rearm(now);
        Ok(())
    }

    /// Feeds a round-trip sample measured elsewhere (a keepalive ping's pong).
    pub fn handle_rtt_sample(&mut self, rtt: Duration) {
        self.rtt.handle_sample(rtt);
    }

    /// Restarts the retransmission timer for the oldest message in flight on this
    /// connection (RFC 6298 §5.3), or stops it when none is.
    fn rearm(&mut self, now: Instant) {
        let in_flight = self.connected && self.cursor > self.acked + 1;
        self.rto_deadline = in_flight.then(|| now + self.rtt.rto(self.backoff));
    }

    /// The next envelope's worth to transmit on the current connection, if any: first a
    /// retransmission of the oldest message, then each message not yet sent here.
    pub fn next_to_send(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.connected {
            return None;
        }
        let seq = if self.resend_oldest && self.cursor > self.acked + 1 {
            self.resend_oldest = false;
            self.acked + 1
        } else if self.cursor < self.end() {
            self.cursor += 1;
            self.cursor - 1
        } else {
            return None;
        };
        let i = self.index(seq)?;
        let entry = &mut self.entries[i];
        if entry.tries > 0 || entry.conn_tries > 0 {
            self.resent = self.resent.saturating_add(1);
        }
        if entry.conn_tries == 0 {
            entry.tries = entry.tries.saturating_add(1);
        }
        entry.conn_tries = entry.conn_tries.saturating_add(1);
        entry.sent_at = Some(now);
        entry.maybe_delivered |= entry.payload.is_some();
        let out = Outgoing {
            seq: Seq(seq),
            payload: entry.payload.clone(),
            is_text: entry.is_text,
        };
        self.highest_sent = self.highest_sent.max(seq);
        if self.rto_deadline.is_none() {
            self.rearm(now);
        }
        Some(out)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: the retransmission timer, or
    /// the age limit of a message that could then be settled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let age = self
            .entries
            .iter()
            .find(|e| e.payload.is_some() && (!e.maybe_delivered || self.can_report()))
            .map(|e| e.pushed_at + self.config.message_max_age);
        match (age, self.rto_deadline.filter(|_| self.can_report())) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    fn can_report(&self) -> bool {
        self.connected && !self.unresponsive
    }

    /// Acts on passed deadlines: retransmits the oldest message (doubling the timeout),
    /// dead-letters overdue messages the peer cannot have, and reports a connection on
    /// which an overdue message may still be in the peer's hands. Early calls do nothing.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        events: &mut VecDeque<SessionEvent>,
    ) -> TimeoutOutcome {
        let mut outcome = TimeoutOutcome::Quiet;
        if self.can_report() && self.rto_deadline.is_some_and(|d| now >= d) {
            // Counted per connection: a message resent up to its limit on a *new*
            // connection gets its full share of tries there before we give up on it.
            let oldest_tries = self.entries.front().map_or(0, |e| e.conn_tries);
            if oldest_tries >= self.config.resend_max_tries {
                outcome = TimeoutOutcome::Unresponsive;
            } else {
                self.resend_oldest = true;
                self.backoff = self.backoff.saturating_add(1);
                self.rto_deadline = Some(now + self.rtt.rto(self.backoff));
            }
        }
        // Age: settle what we can, report what we cannot.
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.payload.is_none() || now < e.pushed_at + self.config.message_max_age {
                continue;
            }
            if e.maybe_delivered {
                if self.can_report() {
                    outcome = TimeoutOutcome::Unresponsive;
                }
            } else {
                let seq = Seq(self.acked + 1 + i as u64);
                self.kill(i, seq, DeadLetterReason::MessageMaxAge, events);
            }
        }
        if outcome == TimeoutOutcome::Unresponsive {
            self.unresponsive = true;
            self.rto_deadline = None;
        }
        outcome
    }

    /// Turns entry `i` into a void sequence number and reports its dead letter.
    fn kill(
        &mut self,
        i: usize,
        seq: Seq,
        reason: DeadLetterReason,
        events: &mut VecDeque<SessionEvent>,
    ) {
        let entry = &mut self.entries[i];
        if let Some(payload) = entry.payload.take() {
            self.bytes -= payload.len();
            events.push_back(SessionEvent::DeadLetter {
                seq,
                payload,
                is_text: entry.is_text,
                reason,
                possibly_delivered: entry.maybe_delivered,
            });
        }
    }

    /// A new connection to the same session: the peer delivered everything up to
    /// `peer_delivered`, nothing after (no byte of an older connection survives). Settles
    /// the acked, dead-letters what is overdue, and queues the rest for resending in order.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        peer_delivered: Seq,
        events: &mut VecDeque<SessionEvent>,
    ) -> Result<(), SessionProtocolError> {
        self.connected = true;
        self.unresponsive = false;
        self.resend_oldest = false;
        self.backoff = 0;
        self.rto_deadline = None;
        self.cursor = self.acked + 1;
        let result = self.ack(now, peer_delivered, events);
        self.cursor = self.acked + 1;
        for i in 0..self.entries.len() {
            let seq = Seq(self.acked + 1 + i as u64);
            let e = &mut self.entries[i];
            e.maybe_delivered = false;
            e.sent_at = None;
            e.conn_tries = 0;
            let reason = if e.tries >= self.config.resend_max_tries {
                DeadLetterReason::ResendMaxTries
            } else if now >= e.pushed_at + self.config.message_max_age {
                DeadLetterReason::MessageMaxAge
            } else {
                continue;
            };
            self.kill(i, seq, reason, events);
        }
        self.rto_deadline = None;
        result
    }

    /// The connection is gone: stop the retransmission timer until the next one.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.rto_deadline = None;
        self.resend_oldest = false;
    }

    /// The session is over (a refused resume, or expiry on the server). Messages up to
    /// `peer_delivered` are acked; every other live one becomes a dead letter with
    /// `reason`. With `peer_state_known` the peer's count is exact, so those are certainly
    /// undelivered; otherwise a message that was transmitted may have been. The window is
    /// then empty and numbering starts again at 1.
    pub fn lose_session(
        &mut self,
        peer_delivered: Seq,
        peer_state_known: bool,
        reason: DeadLetterReason,
        events: &mut VecDeque<SessionEvent>,
    ) {
        // A peer cannot have delivered what we never sent.
        let peer_delivered = peer_delivered.min(Seq(self.highest_sent));
        let mut seq = self.acked;
        for entry in self.entries.drain(..) {
            seq += 1;
            let Some(payload) = entry.payload else {
                continue;
            };
            if peer_state_known && seq <= peer_delivered.0 {
                events.push_back(SessionEvent::Acked { seq: Seq(seq) });
            } else {
                events.push_back(SessionEvent::DeadLetter {
                    seq: Seq(seq),
                    payload,
                    is_text: entry.is_text,
                    reason,
                    possibly_delivered: entry.maybe_delivered && !peer_state_known,
                });
            }
        }
        let connected = self.connected;
        let rtt = self.rtt.clone();
        *self = SendWindow::new(self.config.clone());
        self.rtt = rtt;
        self.connected = connected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn config() -> SessionConfig {
        SessionConfig {
            window_messages: 3,
            window_bytes: 10,
            rto_initial: 100 * MS,
            rto_min: 50 * MS,
            rto_max: 400 * MS,
            resend_max_tries: 3,
            message_max_age: Duration::from_secs(10),
            ..SessionConfig::default()
        }
    }

    fn drain(events: &mut VecDeque<SessionEvent>) -> Vec<SessionEvent> {
        events.drain(..).collect()
    }

    fn connected() -> (SendWindow, VecDeque<SessionEvent>) {
        let mut w = SendWindow::new(config());
        let mut ev = VecDeque::new();
        w.handle_connected(at(0), Seq(0), &mut ev).unwrap();
        (w, ev)
    }

    #[test]
    fn only_a_message_never_transmitted_can_be_voided_and_it_goes_out_void() {
        let (mut w, mut ev) = connected();
        let first = w.push(at(0), Bytes::from_static(b"sent"), true).unwrap();
        let sent = w.next_to_send(at(0)).unwrap();
        assert_eq!(sent.seq, first);
        let second = w.push(at(0), Bytes::from_static(b"held"), true).unwrap();
        assert_eq!(w.bytes(), 8);
        assert_eq!(w.void_untransmitted(first), None, "the peer may hold it");
        assert_eq!(
            w.void_untransmitted(second),
            Some(Bytes::from_static(b"held"))
        );
        assert_eq!(w.void_untransmitted(second), None, "void already");
        assert_eq!(w.bytes(), 4);
        let void = w.next_to_send(at(0)).unwrap();
        assert_eq!((void.seq, void.payload), (second, None));
        assert!(drain(&mut ev).is_empty(), "no dead letter");
    }

    #[test]
    fn window_in_messages_and_bytes_answers_full() {
        let (mut w, _) = connected();
        assert_eq!(
            w.push(at(0), Bytes::from_static(b"0123"), false),
            Ok(Seq(1))
        );
        assert_eq!(
            w.push(at(0), Bytes::from_static(b"4567"), false),
            Ok(Seq(2))
        );
        assert!(w.is_full_for(3));
        assert_eq!(
            w.push(at(0), Bytes::from_static(b"89a"), false),
            Err(SessionSendError::Full),
            "bytes"
        );
        assert!(!w.is_full_for(1));
        assert_eq!(w.push(at(0), Bytes::from_static(b"8"), false), Ok(Seq(3)));
        assert!(w.is_full_for(0));
        assert_eq!(
            w.push(at(0), Bytes::new(), false),
            Err(SessionSendError::Full),
            "messages"
        );
        assert!(!w.is_full_for(12), "too large is not full");
        assert_eq!(
            w.push(at(0), Bytes::from_static(b"far too long"), false),
            Err(SessionSendError::TooLarge { max: 10 })
        );
    }

    #[test]
    fn ack_releases_in_order_and_rejects_unsent() {
        let (mut w, mut ev) = connected();
        for _ in 0..3 {
            w.push(at(0), Bytes::from_static(b"ab"), false).unwrap();
        }
        assert_eq!(w.next_to_send(at(0)).unwrap().seq, Seq(1));
        assert_eq!(w.next_to_send(at(0)).unwrap().seq, Seq(2));
        assert_eq!(
            w.ack(at(10), Seq(3), &mut ev),
            Err(SessionProtocolError::AckForUnsent {
                ack: 3,
                highest_sent: 2
            })
        );
        w.ack(at(10), Seq(2), &mut ev).unwrap();
        assert_eq!(
            drain(&mut ev),
            [
                SessionEvent::Acked { seq: Seq(1) },
                SessionEvent::Acked { seq: Seq(2) }
            ]
        );
        assert_eq!((w.len(), w.bytes()), (1, 2));
        w.ack(at(11), Seq(1), &mut ev).unwrap();
        assert!(ev.is_empty(), "a stale ack changes nothing");
        assert_eq!(w.next_to_send(at(12)).unwrap().seq, Seq(3));
        assert_eq!(w.next_to_send(at(12)), None);
    }

    #[test]
    fn rto_follows_rfc6298_and_its_bounds() {
        let mut r = RttEstimator::new(100 * MS, 50 * MS, 400 * MS);
        assert_eq!(r.rto(0), 100 * MS);
        assert_eq!(r.rto(3), 400 * MS, "backoff is capped at rto_max");
        r.handle_sample(20 * MS); // srtt 20, rttvar 10 -> 60
        assert_eq!(r.rto(0), 60 * MS);
        assert_eq!(r.rto(1), 120 * MS);
        r.handle_sample(20 * MS); // rttvar 7.5 -> 20 + 30 = 50
        assert_eq!(r.rto(0), 50 * MS);
        for _ in 0..50 {
            r.handle_sample(Duration::ZERO);
        }
        assert_eq!(r.rto(0), 50 * MS, "never below rto_min");
        assert_eq!(r.rto(u32::MAX), 400 * MS);
    }

    #[test]
    fn timer_resends_oldest_with_backoff_then_reports_unresponsive() {
        let (mut w, mut ev) = connected();
        w.push(at(0), Bytes::from_static(b"x"), false).unwrap();
        assert!(w.next_to_send(at(0)).is_some());
        assert_eq!(w.poll_timeout(), Some(at(100)));
        assert_eq!(w.handle_timeout(at(99), &mut ev), TimeoutOutcome::Quiet);
        assert_eq!(w.next_to_send(at(99)), None, "early call is a no-op");
        assert_eq!(w.handle_timeout(at(100), &mut ev), TimeoutOutcome::Quiet);
        assert_eq!(w.poll_timeout(), Some(at(300)), "doubled");
        assert_eq!(w.resent(), 0, "the first transmission is not a resend");
        assert_eq!(w.next_to_send(at(100)).unwrap().seq, Seq(1));
        assert_eq!(w.resent(), 1);
        assert_eq!(w.handle_timeout(at(300), &mut ev), TimeoutOutcome::Quiet);
        assert_eq!(
            w.poll_timeout(),
            Some(at(700)),
            "doubled again, capped at 400"
        );
        assert_eq!(w.next_to_send(at(300)).unwrap().seq, Seq(1));
        assert_eq!(w.resent(), 2);
        // Third try sent: the next expiry gives up on this connection, without a dead
        // letter, because the peer may hold any of the three copies.
        assert_eq!(
            w.handle_timeout(at(700), &mut ev),
            TimeoutOutcome::Unresponsive
        );
        assert!(ev.is_empty());
        assert_eq!(w.poll_timeout(), None, "reported once; a resume settles it");
        w.handle_disconnected();
        assert_eq!(
            w.poll_timeout(),
            None,
            "nothing to settle while its fate is open"
        );
        // On resume the peer says it has nothing: the three copies on one dead connection
        // count as one try, so it is sent again on each new connection, until it was
        // sent on `resend_max_tries` (3) connections.
        for (conn, t) in [(2, 800), (3, 900)] {
            w.handle_connected(at(t), Seq(0), &mut ev).unwrap();
            assert!(ev.is_empty(), "connection {conn}: not given up yet");
            assert_eq!(
                w.next_to_send(at(t)).unwrap().payload.as_deref(),
                Some(&b"x"[..])
            );
            w.handle_disconnected();
        }
        // Sent on three connections and the peer still lacks it: a certain dead letter,
        // and its sequence number goes out void.
        w.handle_connected(at(1000), Seq(0), &mut ev).unwrap();
        let [SessionEvent::DeadLetter {
            seq: Seq(1),
            reason: DeadLetterReason::ResendMaxTries,
            possibly_delivered: false,
            ..
        }] = &drain(&mut ev)[..]
        else {
            panic!()
        };
        let void = w.next_to_send(at(1000)).unwrap();
        assert_eq!((void.seq, void.payload), (Seq(1), None));
        assert_eq!(w.bytes(), 0);
    }

    #[test]
    fn ack_samples_rtt_and_resets_backoff() {
        let (mut w, mut ev) = connected();
        w.push(at(0), Bytes::from_static(b"x"), false).unwrap();
        w.next_to_send(at(0));
        w.ack(at(30), Seq(1), &mut ev).unwrap();
        assert_eq!(w.rtt().srtt(), Some(30 * MS));
        assert_eq!(w.poll_timeout(), None, "nothing in flight, nothing held");
    }

    #[test]
    fn unsent_messages_age_out_while_disconnected() {
        let mut w = SendWindow::new(config());
        let mut ev = VecDeque::new();
        w.push(at(0), Bytes::from_static(b"old"), true).unwrap();
        w.push(at(5_000), Bytes::from_static(b"new"), false)
            .unwrap();
        assert_eq!(w.poll_timeout(), Some(at(10_000)));
        w.handle_timeout(at(10_000), &mut ev);
        let [SessionEvent::DeadLetter {
            seq: Seq(1),
            is_text: true,
            reason: DeadLetterReason::MessageMaxAge,
            possibly_delivered: false,
            ..
        }] = &drain(&mut ev)[..]
        else {
            panic!()
        };
        assert_eq!(w.poll_timeout(), Some(at(15_000)));
        w.handle_connected(at(10_001), Seq(0), &mut ev).unwrap();
        assert_eq!(w.next_to_send(at(10_001)).unwrap().payload, None);
        let live = w.next_to_send(at(10_001)).unwrap();
        assert_eq!(live.payload.as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn resume_drops_what_the_peer_has_and_resends_the_rest_in_order() {
        let (mut w, mut ev) = connected();
        for p in [b"a", b"b", b"c"] {
            w.push(at(0), Bytes::from_static(p), false).unwrap();
            w.next_to_send(at(0));
        }
        w.handle_disconnected();
        w.handle_connected(at(50), Seq(1), &mut ev).unwrap();
        assert_eq!(drain(&mut ev), [SessionEvent::Acked { seq: Seq(1) }]);
        let seqs: Vec<_> = core::iter::from_fn(|| w.next_to_send(at(50)))
            .map(|o| o.seq)
            .collect();
        assert_eq!(seqs, [Seq(2), Seq(3)]);
    }

    #[test]
    fn lost_session_returns_every_unacked_message() {
        let (mut w, mut ev) = connected();
        for p in [b"a", b"b", b"c"] {
            w.push(at(0), Bytes::from_static(p), false).unwrap();
        }
        w.next_to_send(at(0));
        w.next_to_send(at(0));
        w.handle_disconnected();
        // Unknown session: the server cannot say what it delivered.
        w.lose_session(Seq(0), false, DeadLetterReason::SessionLost, &mut ev);
        let flags: Vec<_> = drain(&mut ev)
            .into_iter()
            .map(|e| match e {
                SessionEvent::DeadLetter {
                    seq,
                    possibly_delivered,
                    ..
                } => (seq.0, possibly_delivered),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(flags, [(1, true), (2, true), (3, false)]);
        assert_eq!((w.len(), w.bytes(), w.next_seq()), (0, 0, Seq(1)));
    }

    #[test]
    fn expired_session_with_known_peer_state_is_exact() {
        let (mut w, mut ev) = connected();
        for p in [b"a", b"b"] {
            w.push(at(0), Bytes::from_static(p), false).unwrap();
            w.next_to_send(at(0));
        }
        w.lose_session(Seq(1), true, DeadLetterReason::SessionLost, &mut ev);
        let got = drain(&mut ev);
        assert_eq!(got[0], SessionEvent::Acked { seq: Seq(1) });
        assert!(matches!(
            got[1],
            SessionEvent::DeadLetter {
                seq: Seq(2),
                possibly_delivered: false,
                ..
            }
        ));
    }
}
