//! The receiver's half of reliable delivery: each sequence number delivered exactly once
//! and in order, duplicates dropped, and cumulative acks delayed a little so they can ride
//! on DATA going the other way.
//!
//! Within one connection the sender's copies arrive in order, so the only legal DATA is
//! the next expected sequence number or one already delivered (a resend): anything beyond
//! is a gap, which is a protocol violation. An ack is due `ack_delay` after the first
//! unacknowledged delivery, at once after `ack_every_messages`, and at once for a
//! duplicate (the sender evidently missed our ack).
//!
//! An ack normally covers what was handed to the application. With
//! `SessionConfig::confirm_deliveries` it covers only what the application *confirmed*
//! (a server that must act on a message, durably, before the client may forget it):
//! deliveries stay unacknowledged until [`Receiver::confirm`] reaches them, while
//! duplicates are still dropped against everything delivered.

use bytes::Bytes;

use super::envelope::Data;
use super::Seq;
use crate::config::SessionConfig;
use crate::error::SessionProtocolError;
use crate::time::Instant;

/// A message to hand to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its sequence number.
    pub seq: Seq,
    /// Its payload (a slice of the WebSocket message, not a copy).
    pub payload: Bytes,
    /// Whether it is text (already checked to be UTF-8).
    pub is_text: bool,
}

/// Delivery state and ack timing of one direction.
#[derive(Clone, Debug)]
pub struct Receiver {
    ack_delay: core::time::Duration,
    ack_every: u32,
    /// Every sequence number up to here was delivered (or skipped as void).
    delivered: u64,
    /// Every sequence number up to here was confirmed by the application: what acks
    /// report. Equal to `delivered` unless `manual`.
    confirmed: u64,
    /// The last sequence number handed to the application (not void): once it is
    /// confirmed, so are the void ones after it.
    last_real: u64,
    /// Acks wait for [`confirm`](Self::confirm) (`SessionConfig::confirm_deliveries`).
    manual: bool,
    /// The last cumulative ack the peer has from us.
    ack_sent: u64,
    /// Deliveries since the last ack sent.
    since_ack: u32,
    ack_deadline: Option<Instant>,
}

impl Receiver {
    /// Nothing delivered yet.
    pub fn new(config: &SessionConfig) -> Self {
        Receiver {
            ack_delay: config.ack_delay,
            ack_every: config.ack_every_messages.max(1),
            delivered: 0,
            confirmed: 0,
            last_real: 0,
            manual: config.confirm_deliveries,
            ack_sent: 0,
            since_ack: 0,
            ack_deadline: None,
        }
    }

    /// Delivery state rebuilt from a journal: everything up to `delivered` was
    /// delivered before the restart (and the client will hear so in the WELCOME).
    pub(crate) fn restored(config: &SessionConfig, delivered: Seq) -> Self {
        let mut receiver = Receiver::new(config);
        receiver.delivered = delivered.0;
        receiver.confirmed = delivered.0;
        receiver.last_real = delivered.0;
        receiver.ack_sent = delivered.0;
        receiver
    }

    /// The receiver acknowledges every delivery at once, whatever the config says (a
    /// client: its resume request must report exactly what its application has).
    pub(crate) fn without_confirmations(mut self) -> Self {
        self.manual = false;
        self
    }

    /// The last sequence number delivered in order (0: none).
    pub fn delivered(&self) -> Seq {
        Seq(self.delivered)
    }

    /// The last sequence number the application confirmed, which acks report (equal to
    /// [`delivered`](Self::delivered) without `confirm_deliveries`).
    pub fn confirmed(&self) -> Seq {
        Seq(self.confirmed)
    }

    /// Deliveries wait for the application's confirmation.
    pub fn has_unconfirmed(&self) -> bool {
        self.confirmed < self.delivered
    }

    /// The application has acted on every delivery up to `upto`: they may be
    /// acknowledged. Confirming past what was delivered, or again, changes nothing.
    pub fn confirm(&mut self, now: Instant, upto: Seq) {
        let target = if upto.0 >= self.last_real {
            // Void sequence numbers after the last delivery need nobody's word.
            self.delivered
        } else {
            upto.0
        };
        if target <= self.confirmed {
            return;
        }
        let newly = u32::try_from(target - self.confirmed).unwrap_or(u32::MAX);
        self.confirmed = target;
        self.since_ack = self.since_ack.saturating_add(newly);
        let deadline = if self.since_ack >= self.ack_every {
            now
        } else {
            now + self.ack_delay
        };
        self.ack_deadline = Some(self.ack_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Takes one DATA envelope; `message` is the whole WebSocket message it came in, so
    /// the payload is handed out as a slice of it. Returns what to deliver, if anything.
    pub fn handle_data(
        &mut self,
        now: Instant,
        data: &Data<'_>,
        message: &Bytes,
    ) -> Result<Option<Delivery>, SessionProtocolError> {
        let seq = data.seq.0;
        if seq <= self.delivered {
            // A resend of something delivered: drop it, and re-acknowledge at once.
            self.ack_deadline = Some(now);
            return Ok(None);
        }
        let expected = self.delivered.saturating_add(1);
        if seq != expected {
            return Err(SessionProtocolError::SequenceGap { expected, got: seq });
        }
        if data.is_text && core::str::from_utf8(data.payload).is_err() {
            return Err(SessionProtocolError::InvalidText);
        }
        self.delivered = seq;
        if !data.is_void {
            self.last_real = seq;
        }
        if !self.manual || self.confirmed >= self.last_real {
            // Nothing waits for the application (a void after confirmed deliveries).
            self.confirm(now, data.seq);
        }
        if data.is_void {
            return Ok(None);
        }
        Ok(Some(Delivery {
            seq: data.seq,
            payload: message.slice_ref(data.payload),
            is_text: data.is_text,
        }))
    }

    /// An ack should go out now (alone, if no DATA can carry it).
    pub fn ack_due(&self, now: Instant) -> bool {
        self.ack_deadline.is_some_and(|d| now >= d)
    }

    /// When an ack will be due, if one is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ack_deadline
    }

    /// The peer now has our ack up to [`confirmed`](Self::confirmed) (alone or
    /// piggybacked); returns that value.
    pub fn take_ack(&mut self) -> Seq {
        self.ack_sent = self.confirmed;
        self.since_ack = 0;
        self.ack_deadline = None;
        Seq(self.confirmed)
    }

    /// The last ack the peer has from us.
    pub fn ack_sent(&self) -> Seq {
        Seq(self.ack_sent)
    }

    /// A new connection: the handshake (RESUME or WELCOME) told the peer how far we got,
    /// so no ack is pending.
    pub fn handle_connected(&mut self) {
        self.take_ack();
    }

    /// The connection is gone; acks wait for the next one.
    pub fn handle_disconnected(&mut self) {
        self.ack_deadline = None;
        self.since_ack = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn data(seq: u64, payload: &[u8]) -> Data<'_> {
        Data {
            is_text: false,
            is_void: false,
            seq: Seq(seq),
            ack: Seq(0),
            payload,
        }
    }

    fn receiver() -> Receiver {
        Receiver::new(&SessionConfig {
            ack_delay: Duration::from_millis(20),
            ack_every_messages: 3,
            ..SessionConfig::default()
        })
    }

    #[test]
    fn delivers_in_order_exactly_once() {
        let mut r = receiver();
        let msg = Bytes::from_static(b"hello");
        let got = r
            .handle_data(at(0), &data(1, &msg[..]), &msg)
            .unwrap()
            .unwrap();
        assert_eq!((got.seq, &got.payload[..]), (Seq(1), &b"hello"[..]));
        assert_eq!(
            r.handle_data(at(1), &data(1, &msg[..]), &msg),
            Ok(None),
            "dup"
        );
        assert_eq!(
            r.handle_data(at(2), &data(3, &msg[..]), &msg),
            Err(SessionProtocolError::SequenceGap {
                expected: 2,
                got: 3
            })
        );
        assert!(r
            .handle_data(at(3), &data(2, &msg[..]), &msg)
            .unwrap()
            .is_some());
        assert_eq!(r.delivered(), Seq(2));
    }

    #[test]
    fn void_advances_without_delivering() {
        let mut r = receiver();
        let void = Data {
            is_void: true,
            ..data(1, &[])
        };
        assert_eq!(r.handle_data(at(0), &void, &Bytes::new()), Ok(None));
        assert_eq!(r.delivered(), Seq(1));
        assert!(r.poll_timeout().is_some(), "a skip is acknowledged too");
    }

    #[test]
    fn text_must_be_utf8() {
        let mut r = receiver();
        let bad = Data {
            is_text: true,
            ..data(1, &[0xff])
        };
        assert_eq!(
            r.handle_data(at(0), &bad, &Bytes::new()),
            Err(SessionProtocolError::InvalidText)
        );
    }

    #[test]
    fn acks_are_delayed_then_forced_by_count_or_duplicates() {
        let mut r = receiver();
        let m = Bytes::from_static(b"m");
        r.handle_data(at(0), &data(1, &m[..]), &m).unwrap();
        assert_eq!(r.poll_timeout(), Some(at(20)));
        assert!(!r.ack_due(at(19)));
        r.handle_data(at(5), &data(2, &m[..]), &m).unwrap();
        assert_eq!(
            r.poll_timeout(),
            Some(at(20)),
            "the first delivery sets the clock"
        );
        r.handle_data(at(6), &data(3, &m[..]), &m).unwrap();
        assert!(r.ack_due(at(6)), "third message: ack now");
        assert_eq!(r.take_ack(), Seq(3));
        assert_eq!(r.poll_timeout(), None);
        r.handle_data(at(7), &data(2, &m[..]), &m).unwrap();
        assert!(r.ack_due(at(7)), "a duplicate is re-acked at once");
    }

    #[test]
    fn with_confirm_deliveries_acks_cover_only_what_the_application_confirmed() {
        let mut r = Receiver::new(&SessionConfig {
            ack_delay: Duration::from_millis(20),
            ack_every_messages: 2,
            confirm_deliveries: true,
            ..SessionConfig::default()
        });
        let m = Bytes::from_static(b"m");
        for seq in 1..=3 {
            assert!(r
                .handle_data(at(0), &data(seq, &m[..]), &m)
                .unwrap()
                .is_some());
        }
        assert_eq!((r.delivered(), r.confirmed()), (Seq(3), Seq(0)));
        assert_eq!(r.poll_timeout(), None, "nothing confirmed, nothing to ack");
        assert!(r.has_unconfirmed());
        // A void after an unconfirmed delivery waits for it.
        let void = Data {
            is_void: true,
            ..data(4, &[])
        };
        assert_eq!(r.handle_data(at(1), &void, &Bytes::new()), Ok(None));
        assert_eq!(r.confirmed(), Seq(0));
        r.confirm(at(2), Seq(1));
        assert_eq!(r.confirmed(), Seq(1));
        assert_eq!(
            r.poll_timeout(),
            Some(at(22)),
            "one confirmed: the ack waits"
        );
        r.confirm(at(3), Seq(2));
        assert!(r.ack_due(at(3)), "two confirmed: ack now");
        assert_eq!(r.take_ack(), Seq(2));
        // The last real delivery confirmed: the void after it goes along.
        r.confirm(at(4), Seq(3));
        assert_eq!(r.confirmed(), Seq(4));
        assert!(!r.has_unconfirmed());
        r.confirm(at(5), Seq(1));
        assert_eq!(r.confirmed(), Seq(4), "confirming again changes nothing");
        // A resend of an unconfirmed message is still a duplicate.
        assert!(r
            .handle_data(at(6), &data(5, &m[..]), &m)
            .unwrap()
            .is_some());
        assert_eq!(r.handle_data(at(7), &data(5, &m[..]), &m), Ok(None));
        assert_eq!(r.take_ack(), Seq(4), "the re-ack reports what is confirmed");
        // A void right after confirmed deliveries needs nobody.
        r.confirm(at(8), Seq(5));
        let void = Data {
            is_void: true,
            ..data(6, &[])
        };
        assert_eq!(r.handle_data(at(9), &void, &Bytes::new()), Ok(None));
        assert_eq!(r.confirmed(), Seq(6));
    }

    #[test]
    fn without_confirm_deliveries_a_delivery_is_confirmed_at_once() {
        let mut r = receiver();
        let m = Bytes::from_static(b"m");
        r.handle_data(at(0), &data(1, &m[..]), &m).unwrap();
        assert_eq!(r.confirmed(), Seq(1));
        assert!(!r.has_unconfirmed());
    }
}
