//! Bringing a server's sessions back after a restart, from its journal
//! ([`crate::journal`]).

use super::receive::Receiver;
use super::send_window::SendWindow;
use super::{Endpoint, ServerSession};
use crate::config::SessionConfig;
use crate::journal::SessionSnapshot;
use crate::time::Instant;

impl ServerSession {
    /// A session rebuilt from its journal snapshot, without a connection, waiting for
    /// its client from `now` on.
    pub(super) fn restored(
        config: &SessionConfig,
        now: Instant,
        snapshot: &SessionSnapshot,
    ) -> Self {
        let mut ep = Endpoint::new(config.clone(), now);
        ep.sender = SendWindow::restored(
            config.clone(),
            now,
            snapshot.acked,
            snapshot
                .unacked
                .iter()
                .map(|m| (m.payload.clone(), m.is_text)),
        );
        ep.receiver = Receiver::restored(config, snapshot.client_delivered);
        ServerSession {
            ep,
            id: snapshot.id,
            token: snapshot.token,
            disconnected_at: Some(now),
            epoch: 0,
            held_welcome: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use bytes::Bytes;

    use crate::config::SessionConfig;
    use crate::entropy::SeededEntropy;
    use crate::journal::{SentRecord, SessionSnapshot};
    use crate::session::{ClientSession, Seq, SessionEvent, SessionStore};
    use crate::time::Instant;

    /// Carries envelopes both ways until nothing moves; returns what each side delivered.
    fn pump(
        now: Instant,
        client: &mut ClientSession,
        store: &mut SessionStore,
        id: crate::session::SessionId,
    ) -> (Vec<Bytes>, Vec<Bytes>) {
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        loop {
            let server = store.get_mut(id).unwrap();
            let mut moved = false;
            while let Some(m) = server.poll_outgoing() {
                client.handle_message(now, m);
                moved = true;
            }
            while let Some(m) = client.poll_outgoing() {
                server.handle_message(now, m);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                if let SessionEvent::Delivered { payload, .. } = e {
                    to_server.push(payload);
                }
            }
            while let Some(e) = client.poll_event() {
                if let SessionEvent::Delivered { payload, .. } = e {
                    to_client.push(payload);
                }
            }
            if !moved {
                return (to_client, to_server);
            }
        }
    }

    #[test]
    fn a_restored_session_resumes_and_loses_and_repeats_nothing() {
        let config = SessionConfig::default();
        let mut now = Instant::ZERO;
        let mut entropy = SeededEntropy::new(5);
        let mut client = ClientSession::new(config.clone(), now);
        let mut store = SessionStore::new(config.clone(), now);
        let id = store.accept(now, None, &mut entropy).unwrap();
        client.handle_connected(now);
        pump(now, &mut client, &mut store, id);

        // The server queues s1..s4; the client gets s1 and s2 only, then the server dies.
        // The client sent c1, c2; the server delivered both (journaled) but its ack died.
        let server = store.get_mut(id).unwrap();
        for i in 1..=4u8 {
            server
                .send(now, Bytes::from(alloc::vec![b's', b'0' + i]), true)
                .unwrap();
        }
        for _ in 0..2 {
            let m = server.poll_outgoing().unwrap();
            client.handle_message(now, m);
        }
        for p in [&b"c1"[..], b"c2"] {
            client.send(now, Bytes::copy_from_slice(p), true).unwrap();
        }
        let server = store.get_mut(id).unwrap();
        while let Some(m) = client.poll_outgoing() {
            server.handle_message(now, m);
        }
        let delivered = core::iter::from_fn(|| server.poll_event())
            .filter(|e| matches!(e, SessionEvent::Delivered { .. }))
            .count();
        assert_eq!(delivered, 2);
        // The journal lags behind: it never recorded the client's ack of s1 and s2, so
        // the restored session resends them and the client must drop the copies.
        let journal = SessionSnapshot {
            id,
            token: store.get(id).unwrap().token(),
            user: "alice".into(),
            acked: Seq(0),
            unacked: (1..=4u8)
                .map(|i| SentRecord {
                    seq: Seq(u64::from(i)),
                    is_text: true,
                    payload: Some(Bytes::from(alloc::vec![b's', b'0' + i])),
                })
                .collect::<VecDeque<_>>(),
            client_delivered: Seq(2),
            rooms: Default::default(),
        };
        let delivered_before: Vec<Bytes> = core::iter::from_fn(|| client.poll_event())
            .filter_map(|e| match e {
                SessionEvent::Delivered { payload, .. } => Some(payload),
                _ => None,
            })
            .collect();
        assert_eq!(delivered_before, [Bytes::from("s1"), Bytes::from("s2")]);

        // Restart: a new store from the journal; the client notices the cut and resumes.
        now = now + core::time::Duration::from_secs(1);
        let mut store = SessionStore::new(config, now);
        store.restore(now, &journal).unwrap();
        client.handle_disconnected(now);
        let resume = client.resume_header_value().unwrap();
        let again = store
            .accept(now, Some(resume.as_bytes()), &mut entropy)
            .unwrap();
        assert_eq!(again, id, "the restored session is resumed, not replaced");
        client.handle_connected(now);
        let (to_client, to_server) = pump(now, &mut client, &mut store, id);
        assert_eq!(to_client, [Bytes::from("s3"), Bytes::from("s4")]);
        assert!(
            to_server.is_empty(),
            "c1 and c2 were delivered before the restart"
        );
        assert_eq!(client.unacked_messages(), 0);
    }

    #[test]
    fn restore_respects_max_sessions() {
        let config = SessionConfig {
            max_sessions: 1,
            ..SessionConfig::default()
        };
        let mut store = SessionStore::new(config, Instant::ZERO);
        let snap = |b| SessionSnapshot {
            id: crate::session::SessionId([b; 16]),
            token: crate::session::SessionToken([b; 16]),
            user: "u".into(),
            acked: Seq(0),
            unacked: VecDeque::new(),
            client_delivered: Seq(0),
            rooms: Default::default(),
        };
        store.restore(Instant::ZERO, &snap(1)).unwrap();
        store.restore(Instant::ZERO, &snap(1)).unwrap();
        assert_eq!(
            store.restore(Instant::ZERO, &snap(2)),
            Err(crate::error::StoreError::Full)
        );
    }
}
