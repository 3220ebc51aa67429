//! Client and server sessions talking directly (envelopes handed across by hand, no
//! WebSocket underneath): the protocol's stories at the session level. The seeded
//! simulation over real connections with cuts lives in `sim::reliable`.

use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::*;
use crate::entropy::SeededEntropy;
use crate::error::SessionProtocolError;

const MS: Duration = Duration::from_millis(1);

struct World {
    now: Instant,
    client: ClientSession,
    store: SessionStore,
    sid: Option<SessionId>,
    entropy: SeededEntropy,
    client_events: Vec<SessionEvent>,
    server_events: Vec<SessionEvent>,
}

impl World {
    fn new(config: SessionConfig) -> Self {
        World {
            now: Instant::ZERO,
            client: ClientSession::new(config.clone(), Instant::ZERO),
            store: SessionStore::new(config, Instant::ZERO),
            sid: None,
            entropy: SeededEntropy::new(9),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn server(&mut self) -> &mut ServerSession {
        self.store.get_mut(self.sid.unwrap()).unwrap()
    }

    fn connect(&mut self) {
        let header = self.client.resume_header_value();
        let id = self
            .store
            .accept(
                self.now,
                header.as_deref().map(str::as_bytes),
                &mut self.entropy,
            )
            .unwrap();
        self.client.handle_connected(self.now);
        self.sid = Some(id);
        self.pump();
    }

    fn cut(&mut self) {
        let now = self.now;
        self.client.handle_disconnected(now);
        self.server().handle_disconnected(now);
    }

    /// Everything each side has to send reaches the other, until both are quiet.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some(m) = self.client.poll_outgoing() {
                self.server().handle_message(now, m);
                moved = true;
            }
            while let Some(m) = self.server().poll_outgoing() {
                self.client.handle_message(now, m);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server().poll_event() {
                self.server_events.push(e);
            }
            while let Some((_, e)) = self.store.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Drops whatever either side wants to send right now (bytes in flight at a cut).
    fn lose_in_flight(&mut self) {
        while self.client.poll_outgoing().is_some() {}
        while self.server().poll_outgoing().is_some() {}
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        let now = self.now;
        self.client.handle_timeout(now);
        if let Some(s) = self.sid.and_then(|id| self.store.get_mut(id)) {
            s.handle_timeout(now);
        }
        self.store.handle_timeout(now);
        if self.sid.is_some_and(|id| self.store.get(id).is_some()) {
            self.pump();
        }
    }
}

fn delivered(events: &[SessionEvent]) -> Vec<&[u8]> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Delivered { payload, .. } => Some(&payload[..]),
            _ => None,
        })
        .collect()
}

fn config() -> SessionConfig {
    SessionConfig {
        session_expiry: Duration::from_secs(5),
        ..SessionConfig::default()
    }
}

#[test]
fn new_session_carries_messages_both_ways_with_piggybacked_acks() {
    let mut w = World::new(config());
    // Sent before any connection: it waits for the WELCOME.
    w.client
        .send(w.now, Bytes::from_static(b"early"), true)
        .unwrap();
    w.connect();
    assert!(w.client.is_established());
    assert!(matches!(
        w.client_events[0],
        SessionEvent::Established { .. }
    ));
    assert_eq!(delivered(&w.server_events), [&b"early"[..]]);
    let now = w.now;
    w.server()
        .send(now, Bytes::from_static(b"reply"), false)
        .unwrap();
    w.pump();
    assert_eq!(delivered(&w.client_events), [&b"reply"[..]]);
    // The reply carried the server's ack of "early".
    assert!(w
        .client_events
        .contains(&SessionEvent::Acked { seq: Seq(1) }));
    // The client's ack of "reply" goes out after ack_delay.
    assert_eq!(w.server().unacked_messages(), 1);
    w.advance(20 * MS);
    assert_eq!(w.server().unacked_messages(), 0);
}

#[test]
fn resume_resends_exactly_what_the_peer_lacks() {
    let mut w = World::new(config());
    w.connect();
    for p in [&b"a"[..], b"b", b"c"] {
        w.client.send(w.now, Bytes::from_static(p), false).unwrap();
    }
    w.pump(); // all three delivered; the server's ack is still delayed
    w.cut();
    w.advance(100 * MS);
    w.connect(); // the WELCOME says 3 delivered: nothing is resent
    let resumed = w
        .client_events
        .iter()
        .any(|e| matches!(e, SessionEvent::Resumed { .. }));
    assert!(resumed);
    assert_eq!(delivered(&w.server_events), [&b"a"[..], b"b", b"c"]);
    assert_eq!(w.client.unacked_messages(), 0);
    // Now lose a message in flight: it is resent after the next resume, once.
    w.client
        .send(w.now, Bytes::from_static(b"d"), false)
        .unwrap();
    w.lose_in_flight();
    w.cut();
    w.connect();
    assert_eq!(delivered(&w.server_events), [&b"a"[..], b"b", b"c", b"d"]);
}

#[test]
fn refused_expired_resume_is_exact_about_what_arrived() {
    let mut w = World::new(config());
    w.connect();
    w.client
        .send(w.now, Bytes::from_static(b"got"), false)
        .unwrap();
    w.pump(); // delivered, ack delayed
    w.client
        .send(w.now, Bytes::from_static(b"lost"), false)
        .unwrap();
    w.lose_in_flight();
    w.cut();
    w.advance(Duration::from_secs(6)); // past session_expiry
    let old = w.sid.unwrap();
    w.connect();
    assert_ne!(w.sid.unwrap(), old);
    let tail: Vec<_> = w
        .client_events
        .iter()
        .filter(|e| {
            !matches!(
                e,
                SessionEvent::Established { .. } | SessionEvent::Disconnected
            )
        })
        .cloned()
        .collect();
    assert_eq!(tail[0], SessionEvent::Acked { seq: Seq(1) });
    assert!(matches!(
        &tail[1],
        SessionEvent::DeadLetter { seq: Seq(2), reason: DeadLetterReason::SessionLost, possibly_delivered: false, payload, .. } if &payload[..] == b"lost"
    ));
    assert_eq!(
        tail[2],
        SessionEvent::SessionLost {
            session_id: old,
            reason: LostReason::Expired
        }
    );
    // The new session numbers from 1 again on the wire; the client's numbers go on.
    assert_eq!(
        w.client.send(w.now, Bytes::from_static(b"x"), false),
        Ok(Seq(3))
    );
}

#[test]
fn unknown_session_is_refused_and_the_client_starts_over() {
    let mut w = World::new(config());
    w.connect();
    w.client
        .send(w.now, Bytes::from_static(b"m"), false)
        .unwrap();
    w.lose_in_flight();
    w.cut();
    // The server forgot everything (a restart without a journal).
    w.store = SessionStore::new(config(), w.now);
    w.connect();
    assert!(w.client_events.iter().any(|e| matches!(
        e,
        SessionEvent::DeadLetter {
            possibly_delivered: true,
            ..
        }
    )));
    assert!(w.client_events.contains(&SessionEvent::SessionLost {
        session_id: w
            .client_events
            .iter()
            .find_map(|e| match e {
                SessionEvent::Established { session_id } => Some(*session_id),
                _ => None,
            })
            .unwrap(),
        reason: LostReason::Unknown
    }));
    assert!(w.client.is_established());
}

#[test]
fn a_gap_is_a_violation_that_keeps_the_session() {
    let mut w = World::new(config());
    w.connect();
    let mut gap = Vec::new();
    envelope::encode(
        &Envelope::Data(Data {
            is_text: false,
            is_void: false,
            seq: Seq(2),
            ack: Seq(0),
            payload: b"skip",
        }),
        &mut gap,
    );
    let now = w.now;
    w.server().handle_message(now, Bytes::from(gap));
    let error = SessionProtocolError::SequenceGap {
        expected: 1,
        got: 2,
    };
    assert_eq!(
        w.server().poll_event(),
        Some(SessionEvent::ProtocolViolation(error.clone()))
    );
    assert_eq!(w.server().wants_disconnect(), Some(error.close_code()));
    let to_client = w.server().poll_outgoing().unwrap();
    assert_eq!(to_client[0], envelope::KIND_ERROR);
    w.client.handle_message(now, to_client);
    assert!(matches!(
        w.client.poll_event(),
        Some(SessionEvent::PeerError { code: 2, .. })
    ));
    w.cut();
    w.connect();
    assert!(w
        .client_events
        .iter()
        .any(|e| matches!(e, SessionEvent::Resumed { .. })));
}

#[test]
fn data_before_welcome_and_acks_for_unsent_are_violations() {
    let mut c = ClientSession::new(config(), Instant::ZERO);
    c.handle_connected(Instant::ZERO);
    c.handle_message(Instant::ZERO, Bytes::from_static(&[0x02, 0x00]));
    assert_eq!(
        c.poll_event(),
        Some(SessionEvent::ProtocolViolation(
            SessionProtocolError::UnexpectedEnvelope(envelope::KIND_ACK)
        ))
    );
    let mut w = World::new(config());
    w.connect();
    let now = w.now;
    w.server()
        .handle_message(now, Bytes::from_static(&[0x02, 0x05]));
    assert!(matches!(
        w.server().poll_event(),
        Some(SessionEvent::ProtocolViolation(
            SessionProtocolError::AckForUnsent { ack: 5, .. }
        ))
    ));
    // Garbage never panics and is a violation too.
    let mut w = World::new(config());
    w.connect();
    w.server().handle_message(now, Bytes::from_static(&[0xee]));
    assert!(matches!(
        w.server().poll_event(),
        Some(SessionEvent::ProtocolViolation(
            SessionProtocolError::Malformed(_)
        ))
    ));
}

#[test]
fn store_is_bounded_and_rejects_malformed_resume() {
    let config = SessionConfig {
        max_sessions: 1,
        ..config()
    };
    let mut store = SessionStore::new(config, Instant::ZERO);
    let mut e = SeededEntropy::new(1);
    store.accept(Instant::ZERO, None, &mut e).unwrap();
    assert_eq!(
        store.accept(Instant::ZERO, None, &mut e),
        Err(crate::error::StoreError::Full)
    );
    assert!(matches!(
        store.accept(Instant::ZERO, Some(b"%%"), &mut e),
        Err(crate::error::StoreError::MalformedResume(_))
    ));
}

#[test]
fn a_wrong_token_is_refused_as_unknown() {
    let mut w = World::new(config());
    w.connect();
    w.cut();
    let mut forged = w.client.resume_request().unwrap();
    forged.token = SessionToken([0; 16]);
    let header = envelope::resume_header_value(&forged);
    let id = w
        .store
        .accept(w.now, Some(header.as_bytes()), &mut w.entropy)
        .unwrap();
    assert_ne!(Some(id), w.sid, "a new session, not the victim's");
}

#[test]
fn a_late_disconnect_of_an_old_connection_does_not_detach_the_new_one() {
    let mut w = World::new(config());
    w.connect();
    let first = w.server().epoch();
    // The client reconnects before the server noticed the first connection died.
    w.client.handle_disconnected(w.now);
    w.connect();
    let second = w.server().epoch();
    assert_eq!(second, first + 1);
    let (now, id) = (w.now, w.sid.unwrap());
    assert!(
        !w.store.detach(now, id, first),
        "the old driver's EOF is ignored"
    );
    assert!(w.server().is_connected());
    assert!(w.store.detach(now, id, second));
    assert!(!w.server().is_connected());
}

fn confirming_config() -> SessionConfig {
    SessionConfig {
        confirm_deliveries: true,
        ..config()
    }
}

fn seqs_delivered(events: &[SessionEvent]) -> Vec<Seq> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Delivered { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn with_confirm_deliveries_the_client_hears_of_a_message_only_once_it_is_confirmed() {
    let mut w = World::new(confirming_config());
    w.connect();
    let seq = w
        .client
        .send(w.now, Bytes::from_static(b"a"), true)
        .unwrap();
    w.pump();
    assert_eq!(seqs_delivered(&w.server_events), [seq]);
    w.advance(Duration::from_millis(100));
    assert_eq!(w.client.unacked_messages(), 1, "delivered, not confirmed");
    assert!(!w
        .client_events
        .iter()
        .any(|e| matches!(e, SessionEvent::Acked { .. })));
    let now = w.now;
    w.server().confirm(now, seq);
    w.advance(Duration::from_millis(100));
    assert_eq!(w.client.unacked_messages(), 0);
    assert!(w.client_events.contains(&SessionEvent::Acked { seq }));
}

#[test]
fn with_confirm_deliveries_a_resume_waits_for_the_confirmations() {
    let mut w = World::new(confirming_config());
    w.connect();
    let a = w
        .client
        .send(w.now, Bytes::from_static(b"a"), true)
        .unwrap();
    let b = w
        .client
        .send(w.now, Bytes::from_static(b"b"), true)
        .unwrap();
    w.pump();
    assert_eq!(seqs_delivered(&w.server_events), [a, b]);
    let now = w.now;
    w.server().confirm(now, a);
    w.cut();
    w.advance(Duration::from_millis(10));
    w.connect();
    // The WELCOME is held: the client is connected but not established, and nothing
    // of it was resent or given up.
    assert!(w.server().is_connected());
    assert!(!w.client.is_established());
    assert_eq!(w.client.unacked_messages(), 2);
    let now = w.now;
    w.server().confirm(now, b);
    w.pump();
    assert!(w.client.is_established());
    assert_eq!(w.client.unacked_messages(), 0, "the WELCOME reported b");
    assert_eq!(
        seqs_delivered(&w.server_events),
        [a, b],
        "no second delivery"
    );
    assert!(!w
        .client_events
        .iter()
        .any(|e| matches!(e, SessionEvent::DeadLetter { .. })));
}

#[test]
fn with_confirm_deliveries_a_restored_session_has_only_what_was_confirmed() {
    // What the journal keeps is `client_delivered`: the confirmed count, so a crash
    // before a confirmation makes the client resend instead of forgetting the message.
    let mut w = World::new(confirming_config());
    w.connect();
    let a = w
        .client
        .send(w.now, Bytes::from_static(b"a"), true)
        .unwrap();
    w.client
        .send(w.now, Bytes::from_static(b"b"), true)
        .unwrap();
    w.pump();
    let now = w.now;
    w.server().confirm(now, a);
    assert_eq!(w.server().client_delivered(), a);
}

#[test]
fn a_cut_is_an_event_and_numbers_stay_unique_across_a_lost_session() {
    let mut w = World::new(config());
    w.connect();
    assert_eq!(
        w.client.send(w.now, Bytes::from_static(b"a"), false),
        Ok(Seq(1))
    );
    assert_eq!(
        w.client.send(w.now, Bytes::from_static(b"b"), false),
        Ok(Seq(2))
    );
    w.lose_in_flight();
    w.cut();
    w.pump();
    assert_eq!(w.client_events.last(), Some(&SessionEvent::Disconnected));
    w.client.report_reconnect(1, 250 * MS);
    w.pump();
    assert_eq!(
        w.client_events.last(),
        Some(&SessionEvent::Reconnecting {
            attempt: 1,
            delay: 250 * MS
        })
    );
    // Sent while cut off: still the first session's (the server will expire it).
    assert_eq!(
        w.client.send(w.now, Bytes::from_static(b"c"), false),
        Ok(Seq(3))
    );
    w.advance(Duration::from_secs(6)); // past session_expiry
    w.connect();
    // The new session numbers from 1 on the wire, but the client's numbers go on.
    assert_eq!(
        w.client.send(w.now, Bytes::from_static(b"d"), false),
        Ok(Seq(4))
    );
    w.pump();
    w.advance(100 * MS);
    let settled: Vec<(Seq, bool)> = w
        .client_events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Acked { seq } => Some((*seq, true)),
            SessionEvent::DeadLetter { seq, .. } => Some((*seq, false)),
            _ => None,
        })
        .collect();
    assert_eq!(
        settled,
        [
            (Seq(1), false),
            (Seq(2), false),
            (Seq(3), false),
            (Seq(4), true)
        ],
        "each number once: the lost session's three as dead letters, d acknowledged"
    );
    assert_eq!(delivered(&w.server_events), [&b"d"[..]]);
    assert_eq!(
        w.client_events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Disconnected))
            .count(),
        1
    );
}
