//! What the hub answers when it cannot do what the runtime asked.
//!
//! These live beside the hub rather than in `crate::error` because nothing outside the
//! hub produces them. [`Refusal`] comes before the upgrade (HTTP 503); [`HubError`] is an
//! answer to one client request on a live connection, sent back as an error message (in
//! plain JSON mode, `{"type":"error","reason":…}` with the `Display` text as the reason).

use core::fmt;

/// Why a new connection cannot be registered. The runtime answers HTTP 503 before
/// upgrading (see the bad-input table in the design).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// [`HubConfig::max_connections`](super::HubConfig) live connections already.
    TooManyConnections,
    /// [`HubConfig::max_connections_per_user`](super::HubConfig) live connections of
    /// this user already.
    TooManyForUser,
    /// The runtime reused a [`ConnId`](super::ConnId) that is still live: a runtime bug,
    /// refused rather than silently merging two connections.
    ConnIdInUse,
}

impl Refusal {
    /// The HTTP status to answer the upgrade request with.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::TooManyConnections | Refusal::TooManyForUser => 503,
            Refusal::ConnIdInUse => 500,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::TooManyConnections => "too many connections",
            Refusal::TooManyForUser => "too many connections for this user",
            Refusal::ConnIdInUse => "connection id already in use",
        })
    }
}

impl core::error::Error for Refusal {}

/// Why a request on a live connection (join, leave, publish, send) was not carried out.
/// Nothing was queued when one of these comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The [`ConnId`](super::ConnId) is not a live connection (never connected, or
    /// already disconnected).
    NotConnected,
    /// The connection is not in that room (publish and leave need membership).
    NotAMember,
    /// The room name is empty, longer than
    /// [`HubConfig::max_room_name_bytes`](super::HubConfig), or has a control character.
    RoomNameInvalid,
    /// The connection is already in
    /// [`HubConfig::max_rooms_per_connection`](super::HubConfig) rooms.
    TooManyRooms,
    /// The room already holds [`HubConfig::max_room_members`](super::HubConfig)
    /// connections.
    RoomFull,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubError::NotConnected => "not connected",
            HubError::NotAMember => "not a member of the room",
            HubError::RoomNameInvalid => {
                "invalid room name (empty, too long, or with control characters)"
            }
            HubError::TooManyRooms => "in too many rooms already",
            HubError::RoomFull => "room is full",
        })
    }
}

impl core::error::Error for HubError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn refusals_before_the_upgrade_are_503() {
        assert_eq!(Refusal::TooManyConnections.http_status(), 503);
        assert_eq!(Refusal::TooManyForUser.http_status(), 503);
    }

    #[test]
    fn display_is_one_short_lower_case_line() {
        let all = [
            HubError::NotConnected.to_string(),
            HubError::NotAMember.to_string(),
            HubError::RoomNameInvalid.to_string(),
            HubError::TooManyRooms.to_string(),
            HubError::RoomFull.to_string(),
            Refusal::TooManyConnections.to_string(),
            Refusal::TooManyForUser.to_string(),
            Refusal::ConnIdInUse.to_string(),
        ];
        for s in all {
            assert!(
                !s.is_empty() && !s.contains('\n') && !s.ends_with('.'),
                "{s}"
            );
            assert!(!s.starts_with(char::is_uppercase), "{s}");
        }
    }
}
