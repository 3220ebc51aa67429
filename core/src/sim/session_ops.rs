//! A client session and a server store fed arbitrary operations: the body of the
//! `session` fuzz target (unstable; `cfg(test)` or feature `sim`).
//!
//! Each input byte picks an operation — an arbitrary or well-formed-but-hostile envelope
//! to either side, a clock step, an application send, a connect (with a real, forged or
//! garbage resume value), a disconnect, or a confirmation by the server's application —
//! and what each side sends is handed to the other (or dropped, as a cut would). The
//! properties: nothing panics, every window stays within
//! its limits, the store within `max_sessions`.

use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::config::SessionConfig;
use crate::entropy::SeededEntropy;
use crate::session::envelope::{self, Data, Envelope, Resume, Welcome, WelcomeStatus};
use crate::session::{ClientSession, Seq, SessionId, SessionStore, SessionToken};
use crate::time::Instant;

struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn small(&mut self) -> u64 {
        u64::from(self.byte() % 16)
    }
}

/// Runs the operations `data` encodes; panics only if a property fails.
pub fn session_ops(data: &[u8]) {
    let config = SessionConfig {
        window_messages: 4,
        window_bytes: 256,
        ack_every_messages: 2,
        resend_max_tries: 3,
        rto_initial: Duration::from_millis(50),
        rto_min: Duration::from_millis(10),
        rto_max: Duration::from_millis(200),
        message_max_age: Duration::from_millis(1_000),
        session_expiry: Duration::from_millis(500),
        max_sessions: 3,
        // Half the inputs run a server whose application confirms deliveries (op 8).
        confirm_deliveries: data.last().is_some_and(|b| b & 1 == 1),
        ..SessionConfig::default()
    };
    let mut input = Input { data };
    let mut now = Instant::ZERO;
    let mut entropy = SeededEntropy::new(1);
    let mut client = ClientSession::new(config.clone(), now);
    let mut store = SessionStore::new(config.clone(), now);
    let mut sid: Option<SessionId> = None;
    let mut connected = false;
    while !input.data.is_empty() {
        let op = input.byte();
        let to_client = op & 0x80 != 0;
        let message: Option<Bytes> = match op & 0x0f {
            0 => {
                let n = usize::from(input.byte());
                Some(Bytes::copy_from_slice(input.bytes(n)))
            }
            1 => {
                let flags = input.byte() & 0x03;
                let len = usize::from(input.byte() % 64);
                let mut buf = Vec::new();
                let payload = if flags & 2 != 0 {
                    &[][..]
                } else {
                    input.bytes(len)
                };
                envelope::encode(
                    &Envelope::Data(Data {
                        is_text: flags == 1,
                        is_void: flags & 2 != 0,
                        seq: Seq(1 + input.small()),
                        ack: Seq(input.small()),
                        payload,
                    }),
                    &mut buf,
                );
                Some(Bytes::from(buf))
            }
            2 => {
                let mut buf = Vec::new();
                envelope::encode(
                    &Envelope::Ack {
                        ack: Seq(input.small()),
                    },
                    &mut buf,
                );
                Some(Bytes::from(buf))
            }
            3 => {
                let mut buf = Vec::new();
                let status = match input.byte() % 4 {
                    0 => WelcomeStatus::New,
                    1 => WelcomeStatus::Resumed,
                    2 => WelcomeStatus::RefusedUnknown,
                    _ => WelcomeStatus::RefusedExpired,
                };
                let id = client.session_id().filter(|_| input.byte() % 2 == 0);
                envelope::encode(
                    &Envelope::Welcome(Welcome {
                        status,
                        session_id: id.unwrap_or(SessionId([input.byte(); 16])),
                        token: SessionToken([input.byte(); 16]),
                        last_delivered: Seq(input.small()),
                        expiry_secs: input.small(),
                    }),
                    &mut buf,
                );
                Some(Bytes::from(buf))
            }
            4 => {
                now = now + Duration::from_millis(u64::from(input.byte()) * 7);
                client.handle_timeout(now);
                store.handle_timeout(now);
                if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                    s.handle_timeout(now);
                }
                None
            }
            5 => {
                let len = usize::from(input.byte());
                let text = input.byte() % 2 == 0;
                let payload = Bytes::from(alloc::vec![b'x'; len]);
                if to_client {
                    if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                        let _ = s.send(now, payload, text);
                    }
                } else {
                    let _ = client.send(now, payload, text);
                }
                None
            }
            6 => {
                client.handle_disconnected(now);
                if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                    s.handle_disconnected(now);
                }
                connected = false;
                None
            }
            7 => {
                let header = match input.byte() % 3 {
                    0 => client.resume_header_value(),
                    1 => client.resume_request().map(|r| {
                        envelope::resume_header_value(&Resume {
                            token: SessionToken([0; 16]),
                            ..r
                        })
                    }),
                    _ => Some(alloc::string::String::from_utf8_lossy(input.bytes(8)).into_owned()),
                };
                if let Ok(id) =
                    store.accept(now, header.as_deref().map(str::as_bytes), &mut entropy)
                {
                    if let Some(old) = sid
                        .filter(|old| *old != id)
                        .and_then(|old| store.get_mut(old))
                    {
                        old.handle_disconnected(now);
                    }
                    client.handle_connected(now);
                    sid = Some(id);
                    connected = true;
                }
                None
            }
            8 => {
                let upto = Seq(input.small());
                if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                    s.confirm(now, upto);
                }
                None
            }
            _ => None,
        };
        if let Some(m) = message {
            if to_client {
                client.handle_message(now, m);
            } else if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                s.handle_message(now, m);
            }
        }
        // Carry what each side sends to the other while connected; drop it otherwise.
        let drop_all = input.byte() % 8 == 0;
        for _ in 0..64 {
            let mut moved = false;
            while let Some(m) = client.poll_outgoing() {
                moved = true;
                if connected && !drop_all {
                    if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                        s.handle_message(now, m);
                    }
                }
            }
            if let Some(s) = sid.and_then(|id| store.get_mut(id)) {
                while let Some(m) = s.poll_outgoing() {
                    moved = true;
                    if connected && !drop_all {
                        client.handle_message(now, m);
                    }
                }
                while s.poll_event().is_some() {}
            }
            while client.poll_event().is_some() {}
            while store.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        assert!(client.unacked_messages() <= config.window_messages);
        assert!(client.unacked_bytes() <= config.window_bytes);
        if let Some(s) = sid.and_then(|id| store.get(id)) {
            assert!(s.unacked_messages() <= config.window_messages);
            assert!(s.unacked_bytes() <= config.window_bytes);
        }
        assert!(store.len() <= config.max_sessions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn sessions_survive_arbitrary_operations(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            session_ops(&data);
        }
    }

    #[test]
    fn a_small_fixed_corpus() {
        for seed in 0..200u64 {
            let mut rng = SeededEntropy::new(seed);
            let mut data = alloc::vec![0u8; 300];
            crate::entropy::Entropy::fill(&mut rng, &mut data);
            // Bias towards connecting first so the envelope paths are reached.
            data[0] = 7;
            data[1] = 0;
            session_ops(&data);
        }
    }
}
