//! Live connections and the users they belong to: one user, many connections.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;

use super::error::Refusal;
use crate::auth::UserId;

/// A live connection, named by the runtime. The runtime picks the number (a counter is
/// enough) and must not reuse one while it is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// How a connection receives messages. The hub routes the same way for both; the
/// runtime uses it to encode [`Outbound`](super::Outbound) messages, and it says what
/// guarantee the transport adds once the hub has handed a message over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Plain JSON mode (`docs/PROTOCOL.md` §10): a message in flight when the connection
    /// drops is lost.
    AtMostOnce,
    /// A `sockeye.v1` session: acknowledged, resent, resumed across reconnects.
    Reliable,
}

/// What the hub knows about one live connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnEntry {
    pub(crate) user: UserId,
    pub(crate) delivery: Delivery,
    /// The rooms this connection is in (at most `max_rooms_per_connection`).
    pub(crate) rooms: BTreeSet<String>,
}

/// Connections by id and by user. Every user in `users` has at least one connection.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    conns: BTreeMap<ConnId, ConnEntry>,
    users: BTreeMap<UserId, BTreeSet<ConnId>>,
    max_connections: usize,
    max_per_user: usize,
}

impl Registry {
    pub(crate) fn new(max_connections: usize, max_per_user: usize) -> Self {
        Registry {
            conns: BTreeMap::new(),
            users: BTreeMap::new(),
            max_connections,
            max_per_user,
        }
    }

    /// Whether one more connection of `user` would fit.
    pub(crate) fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        if self.conns.len() >= self.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        let of_user = self.users.get(user).map_or(0, BTreeSet::len);
        if of_user >= self.max_per_user {
            return Err(Refusal::TooManyForUser);
        }
        Ok(())
    }

    /// Registers a connection. Allocates its entry.
    pub(crate) fn insert(
        &mut self,
        conn: ConnId,
        user: UserId,
        delivery: Delivery,
    ) -> Result<(), Refusal> {
        if self.conns.contains_key(&conn) {
            return Err(Refusal::ConnIdInUse);
        }
        self.admit(&user)?;
        self.users.entry(user.clone()).or_default().insert(conn);
        self.conns.insert(
            conn,
            ConnEntry {
                user,
                delivery,
                rooms: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Forgets a connection, returning what was known about it.
    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<ConnEntry> {
        let entry = self.conns.remove(&conn)?;
        if let Some(set) = self.users.get_mut(&entry.user) {
            set.remove(&conn);
            if set.is_empty() {
                self.users.remove(&entry.user);
            }
        }
        Some(entry)
    }

    /// Moves `old`'s entry to the unused id `new` (same user, same count of the user's
    /// connections). Returns the rooms it is in, or `None` if `old` is unknown or `new`
    /// taken.
    pub(crate) fn rekey(&mut self, old: ConnId, new: ConnId) -> Option<&BTreeSet<String>> {
        if self.conns.contains_key(&new) {
            return None;
        }
        let entry = self.conns.remove(&old)?;
        if let Some(set) = self.users.get_mut(&entry.user) {
            set.remove(&old);
            set.insert(new);
        }
        Some(&self.conns.entry(new).or_insert(entry).rooms)
    }

    pub(crate) fn get(&self, conn: ConnId) -> Option<&ConnEntry> {
        self.conns.get(&conn)
    }

    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut ConnEntry> {
        self.conns.get_mut(&conn)
    }

    /// The live connections of `user`, in id order (empty if offline).
    pub(crate) fn conns_of(&self, user: &UserId) -> impl Iterator<Item = ConnId> + '_ {
        self.users.get(user).into_iter().flatten().copied()
    }

    /// Every live connection, in id order.
    pub(crate) fn all(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    pub(crate) fn is_online(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn users_len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn user(s: &str) -> UserId {
        UserId(s.into())
    }

    #[test]
    fn one_user_many_connections() {
        let mut r = Registry::new(10, 3);
        for i in 0..3 {
            r.insert(ConnId(i), user("alice"), Delivery::Reliable)
                .unwrap();
        }
        assert_eq!(
            r.insert(ConnId(9), user("alice"), Delivery::AtMostOnce),
            Err(Refusal::TooManyForUser)
        );
        r.insert(ConnId(3), user("bob"), Delivery::AtMostOnce)
            .unwrap();
        let alice: Vec<_> = r.conns_of(&user("alice")).collect();
        assert_eq!(alice, [ConnId(0), ConnId(1), ConnId(2)]);
        assert_eq!((r.len(), r.users_len()), (4, 2));
    }

    #[test]
    fn global_limit_and_reused_ids_are_refused() {
        let mut r = Registry::new(2, 5);
        r.insert(ConnId(1), user("a"), Delivery::Reliable).unwrap();
        assert_eq!(
            r.insert(ConnId(1), user("b"), Delivery::Reliable),
            Err(Refusal::ConnIdInUse)
        );
        r.insert(ConnId(2), user("b"), Delivery::Reliable).unwrap();
        assert_eq!(r.admit(&user("c")), Err(Refusal::TooManyConnections));
        assert_eq!(
            r.insert(ConnId(3), user("c"), Delivery::Reliable),
            Err(Refusal::TooManyConnections)
        );
    }

    #[test]
    fn removing_the_last_connection_takes_the_user_offline() {
        let mut r = Registry::new(10, 5);
        r.insert(ConnId(1), user("a"), Delivery::Reliable).unwrap();
        r.insert(ConnId(2), user("a"), Delivery::Reliable).unwrap();
        assert!(r.remove(ConnId(1)).is_some());
        assert!(r.is_online(&user("a")));
        assert!(r.remove(ConnId(1)).is_none());
        assert_eq!(r.remove(ConnId(2)).map(|e| e.user), Some(user("a")));
        assert!(!r.is_online(&user("a")));
        assert_eq!((r.len(), r.users_len()), (0, 0));
    }
}
