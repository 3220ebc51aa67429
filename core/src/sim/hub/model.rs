//! The naive model the hub is checked against: plain maps, scanned in full, written
//! for obviousness rather than speed.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::auth::UserId;
use crate::hub::{ConnId, MailDropReason};
use crate::time::Instant;

/// A delivery, comparable: payloads are message numbers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Seen {
    Message {
        to: ConnId,
        from: Option<UserId>,
        room: Option<String>,
        id: u64,
    },
    Presence {
        to: ConnId,
        room: String,
        user: UserId,
        joined: bool,
    },
}

/// A dead letter, comparable.
pub(super) type Dead = (UserId, Option<UserId>, u64, MailDropReason);

/// One waiting message in the model's mailbox.
#[derive(Clone, Debug)]
pub(super) struct ModelMail {
    pub(super) at: Instant,
    pub(super) from: Option<UserId>,
    pub(super) id: u64,
}

/// The naive model: plain maps, scanned in full.
#[derive(Debug, Default)]
pub(super) struct Model {
    /// Connection → (user, rooms).
    pub(super) conns: BTreeMap<ConnId, (UserId, BTreeSet<String>)>,
    pub(super) mail: BTreeMap<UserId, VecDeque<ModelMail>>,
    pub(super) expired: u64,
    pub(super) overflowed: u64,
    pub(super) delivered: u64,
}

impl Model {
    pub(super) fn conns_of(&self, u: &UserId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, (owner, _))| owner == u)
            .map(|(c, _)| *c)
            .collect()
    }

    pub(super) fn members_conns(&self, room: &str) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, (_, rooms))| rooms.contains(room))
            .map(|(c, _)| *c)
            .collect()
    }

    pub(super) fn members(&self, room: &str) -> Vec<UserId> {
        let set: BTreeSet<UserId> = self
            .conns
            .values()
            .filter(|(_, rooms)| rooms.contains(room))
            .map(|(u, _)| u.clone())
            .collect();
        set.into_iter().collect()
    }

    pub(super) fn rooms(&self) -> BTreeSet<String> {
        self.conns
            .values()
            .flat_map(|(_, rooms)| rooms.iter().cloned())
            .collect()
    }

    pub(super) fn expire(&mut self, now: Instant, max_age: Duration, dead: &mut Vec<Dead>) {
        for (u, b) in self.mail.iter_mut() {
            while b
                .front()
                .is_some_and(|m| now >= m.at.saturating_add(max_age))
            {
                if let Some(m) = b.pop_front() {
                    self.expired += 1;
                    dead.push((u.clone(), m.from, m.id, MailDropReason::Expired));
                }
            }
        }
        self.mail.retain(|_, b| !b.is_empty());
    }
}
