//! The simulation's bookkeeping: what became of every message each application sent,
//! checked against every session event as it happens.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use super::Stats;
use crate::session::{SessionEvent, SessionId};

/// What became of one application message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    Sent,
    Delivered,
    Acked,
    Dead { possibly_delivered: bool },
}

/// One direction's bookkeeping: every message by the id its sending app gave it.
#[derive(Debug, Default)]
pub struct Ledger {
    next_id: u64,
    fate: Vec<Fate>,
    delivered: Vec<bool>,
    last_delivered: Option<u64>,
    /// Per sending session: sequence number -> message id, until acked or dead.
    pub(super) pending: BTreeMap<(SessionKey, u64), u64>,
    /// Dead letters whose message may have been delivered.
    pub possibly_delivered_dead: u64,
    /// Dead letters whose message certainly was not delivered.
    pub certain_dead: u64,
    /// Messages delivered.
    pub deliveries: u64,
}

/// Which sending session a sequence number belongs to: the client's generation (it
/// starts again at 1 after a lost session) or a server session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SessionKey {
    Client(u32),
    Server(SessionId),
}

impl Ledger {
    /// The next message: its id in 8 hex digits, then filler up to `len` (at least 8).
    pub(super) fn new_payload(&mut self, len: usize, text: bool) -> Bytes {
        let id = self.next_id;
        let mut p = Vec::with_capacity(len);
        // The id in 16 hex digits, so text messages stay UTF-8.
        p.extend_from_slice(&format!("{id:016x}").as_bytes()[8..]);
        let mut filler = 0u8;
        while p.len() < len {
            filler = filler.wrapping_add(1);
            p.push(if text { b'a' + filler % 26 } else { filler });
        }
        Bytes::from(p)
    }

    fn id_of(payload: &[u8]) -> Result<u64, String> {
        let hex = payload
            .get(..8)
            .and_then(|h| core::str::from_utf8(h).ok())
            .ok_or("payload without an id")?;
        u64::from_str_radix(hex, 16).map_err(|_| String::from("payload with a bad id"))
    }

    pub(super) fn submitted(&mut self, key: SessionKey, seq: u64) {
        self.pending.insert((key, seq), self.next_id);
        self.fate.push(Fate::Sent);
        self.delivered.push(false);
        self.next_id += 1;
    }

    fn on_delivered(&mut self, payload: &[u8]) -> Result<(), String> {
        let id = Self::id_of(payload)?;
        let fate = self
            .fate
            .get(id as usize)
            .copied()
            .ok_or("unknown message")?;
        if self.delivered[id as usize] {
            return Err(format!("message {id} delivered twice"));
        }
        if let Some(last) = self.last_delivered {
            if id <= last {
                return Err(format!("message {id} delivered after {last}: out of order"));
            }
        }
        if let Fate::Dead { .. } = fate {
            return Err(format!("message {id} delivered after its dead letter"));
        }
        self.delivered[id as usize] = true;
        self.last_delivered = Some(id);
        self.deliveries += 1;
        if fate == Fate::Sent {
            self.fate[id as usize] = Fate::Delivered;
        }
        Ok(())
    }

    fn on_acked(&mut self, key: SessionKey, seq: u64) -> Result<(), String> {
        let id = self
            .pending
            .remove(&(key, seq))
            .ok_or_else(|| format!("ack for unknown seq {seq} of {key:?}"))?;
        if !self.delivered[id as usize] {
            return Err(format!("message {id} acked but never delivered"));
        }
        self.fate[id as usize] = Fate::Acked;
        Ok(())
    }

    fn on_dead(
        &mut self,
        key: SessionKey,
        seq: u64,
        payload: &[u8],
        possibly_delivered: bool,
    ) -> Result<(), String> {
        let id = self
            .pending
            .remove(&(key, seq))
            .ok_or_else(|| format!("dead letter for unknown seq {seq} of {key:?}"))?;
        if Self::id_of(payload)? != id {
            return Err(format!("dead letter for seq {seq} carries another payload"));
        }
        if self.delivered[id as usize] && !possibly_delivered {
            return Err(format!(
                "message {id} delivered AND dead-lettered as undelivered"
            ));
        }
        self.fate[id as usize] = Fate::Dead { possibly_delivered };
        if possibly_delivered {
            self.possibly_delivered_dead += 1;
        } else {
            self.certain_dead += 1;
        }
        Ok(())
    }

    /// Every message was acknowledged or dead-lettered.
    pub(super) fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn check_settled(&self) -> Result<(), String> {
        for (id, fate) in self.fate.iter().enumerate() {
            match fate {
                Fate::Sent | Fate::Delivered => {
                    return Err(format!("message {id} never settled ({fate:?})"))
                }
                Fate::Acked | Fate::Dead { .. } => {}
            }
        }
        Ok(())
    }
}

/// Checks one session event against the ledgers: `mine` for what this side sent,
/// `theirs` for what it receives.
pub(super) fn on_event(
    mine: &mut Ledger,
    theirs: &mut Ledger,
    key: SessionKey,
    ev: &SessionEvent,
    stats: &mut Stats,
) -> Result<(), String> {
    match ev {
        SessionEvent::Delivered { payload, .. } => theirs.on_delivered(payload),
        SessionEvent::Acked { seq } => mine.on_acked(key, seq.0),
        SessionEvent::DeadLetter {
            seq,
            payload,
            possibly_delivered,
            ..
        } => mine.on_dead(key, seq.0, payload, *possibly_delivered),
        SessionEvent::SessionLost { .. } => {
            stats.sessions_lost += 1;
            if mine.pending.keys().any(|(k, _)| *k == key) {
                return Err(format!("{key:?} lost with messages still unsettled"));
            }
            Ok(())
        }
        SessionEvent::ProtocolViolation(e) => Err(format!("protocol violation: {e}")),
        SessionEvent::PeerError { code, reason } => {
            Err(format!("peer reported error {code}: {reason}"))
        }
        _ => Ok(()),
    }
}
