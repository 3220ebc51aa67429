//! Rooms: which connections are in which room, and which users are present there.
//!
//! A user is *present* in a room while at least one of their connections is a member;
//! presence changes only on the first join and the last leave. Empty rooms are removed.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use super::error::HubError;
use super::registry::ConnId;
use crate::auth::UserId;

/// Checks a room name: 1..=`max_bytes` bytes, no control characters.
pub(crate) fn validate_name(name: &str, max_bytes: usize) -> Result<(), HubError> {
    if name.is_empty() || name.len() > max_bytes || name.chars().any(char::is_control) {
        return Err(HubError::RoomNameInvalid);
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Room {
    conns: BTreeSet<ConnId>,
    /// Member connections per present user; never zero.
    users: BTreeMap<UserId, usize>,
}

/// All non-empty rooms.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    rooms: BTreeMap<String, Room>,
    max_members: usize,
}

/// What a join changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The connection was already a member: nothing changed.
    Already,
    /// The connection joined; `arrived` when it is its user's first in the room.
    New { arrived: bool },
}

impl Rooms {
    pub(crate) fn new(max_members: usize) -> Self {
        Rooms {
            rooms: BTreeMap::new(),
            max_members,
        }
    }

    /// Adds `conn` (of `user`) to `room`, creating the room. The name must be valid.
    /// Allocates the room on first join.
    pub(crate) fn join(
        &mut self,
        room: &str,
        conn: ConnId,
        user: &UserId,
    ) -> Result<Joined, HubError> {
        let existing = self.rooms.get(room);
        if existing.is_some_and(|r| r.conns.contains(&conn)) {
            return Ok(Joined::Already);
        }
        if existing.map_or(0, |r| r.conns.len()) >= self.max_members {
            return Err(HubError::RoomFull);
        }
        let r = self.rooms.entry(String::from(room)).or_default();
        r.conns.insert(conn);
        let count = r.users.entry(user.clone()).or_insert(0);
        *count += 1;
        Ok(Joined::New {
            arrived: *count == 1,
        })
    }

    /// Removes `conn` (of `user`) from `room`; `Ok(true)` when that was the user's last
    /// connection there (they departed). Removes the room when it becomes empty.
    pub(crate) fn leave(
        &mut self,
        room: &str,
        conn: ConnId,
        user: &UserId,
    ) -> Result<bool, HubError> {
        let r = self.rooms.get_mut(room).ok_or(HubError::NotAMember)?;
        if !r.conns.remove(&conn) {
            return Err(HubError::NotAMember);
        }
        let departed = match r.users.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                r.users.remove(user);
                true
            }
        };
        if r.conns.is_empty() {
            self.rooms.remove(room);
        }
        Ok(departed)
    }

    /// Puts `new` in `old`'s place in `room`, for the same user: nobody arrives or
    /// departs. Ignored if `old` is not a member.
    pub(crate) fn rekey(&mut self, room: &str, old: ConnId, new: ConnId) {
        if let Some(r) = self.rooms.get_mut(room) {
            if r.conns.remove(&old) {
                r.conns.insert(new);
            }
        }
    }

    pub(crate) fn is_member(&self, room: &str, conn: ConnId) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.conns.contains(&conn))
    }

    /// The member connections of `room`, in id order (empty if there is no such room).
    pub(crate) fn conns(&self, room: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.conns.iter().copied())
    }

    /// Whether `user` has a member connection in `room`.
    pub(crate) fn is_present(&self, room: &str, user: &UserId) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.users.contains_key(user))
    }

    /// How many connections are in `room`.
    pub(crate) fn conn_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.conns.len())
    }

    /// The first `limit` users present in `room`, in order, and how many there are.
    pub(crate) fn members_page(&self, room: &str, limit: usize) -> (Vec<UserId>, usize) {
        self.rooms.get(room).map_or((Vec::new(), 0), |r| {
            (r.users.keys().take(limit).cloned().collect(), r.users.len())
        })
    }

    /// The users present in `room`, in order, without allocating.
    pub(crate) fn users(&self, room: &str) -> impl Iterator<Item = &UserId> + '_ {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.users.keys())
    }

    /// How many users are present in `room`.
    pub(crate) fn user_count(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.users.len())
    }

    /// The users present in `room`, in order. Allocates the list.
    pub(crate) fn members(&self, room: &str) -> Vec<UserId> {
        self.rooms
            .get(room)
            .map(|r| r.users.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId(s.into())
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name("", 8), Err(HubError::RoomNameInvalid));
        assert_eq!(
            validate_name("123456789", 8),
            Err(HubError::RoomNameInvalid)
        );
        assert_eq!(validate_name("a\nb", 8), Err(HubError::RoomNameInvalid));
        assert_eq!(validate_name("12345678", 8), Ok(()));
        // Bytes, not chars: "é" is two bytes.
        assert_eq!(validate_name("éééé", 8), Ok(()));
        assert_eq!(validate_name("éééé!", 8), Err(HubError::RoomNameInvalid));
    }

    #[test]
    fn presence_changes_on_first_join_and_last_leave() {
        let mut rooms = Rooms::new(10);
        let a = user("alice");
        assert_eq!(
            rooms.join("lobby", ConnId(1), &a),
            Ok(Joined::New { arrived: true })
        );
        assert_eq!(
            rooms.join("lobby", ConnId(2), &a),
            Ok(Joined::New { arrived: false })
        );
        assert_eq!(rooms.join("lobby", ConnId(2), &a), Ok(Joined::Already));
        assert_eq!(rooms.members("lobby"), [user("alice")]);
        assert_eq!(rooms.leave("lobby", ConnId(1), &a), Ok(false));
        assert_eq!(
            rooms.leave("lobby", ConnId(1), &a),
            Err(HubError::NotAMember)
        );
        assert_eq!(rooms.leave("lobby", ConnId(2), &a), Ok(true));
        assert_eq!(rooms.len(), 0, "an empty room is removed");
        assert!(rooms.members("lobby").is_empty());
    }

    #[test]
    fn a_full_room_refuses_one_more_connection() {
        let mut rooms = Rooms::new(2);
        rooms.join("r", ConnId(1), &user("a")).unwrap();
        rooms.join("r", ConnId(2), &user("b")).unwrap();
        assert_eq!(
            rooms.join("r", ConnId(3), &user("c")),
            Err(HubError::RoomFull)
        );
        // A member re-joining is not "one more".
        assert_eq!(rooms.join("r", ConnId(2), &user("b")), Ok(Joined::Already));
        assert_eq!(rooms.conns("r").collect::<Vec<_>>(), [ConnId(1), ConnId(2)]);
        assert!(rooms.is_member("r", ConnId(1)) && !rooms.is_member("r", ConnId(3)));
    }
}
