//! [`ReliableError`]: what only the reliable (`sockeye.v1`) API can fail with.

use std::fmt;

use sockeye_core::{SessionSendError, StoreError};

use crate::error::Error;

/// Errors of the reliable API ([`ReliableClient`](crate::ReliableClient),
/// [`SessionRegistry`](crate::SessionRegistry), [`ReliableServer`](crate::ReliableServer)),
/// as [`Error::Reliable`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ReliableError {
    /// The session refused what the application asked to send: `Full` is backpressure
    /// (retry after an `Acked` or `DeadLetter` event), the others are mistakes.
    Send(SessionSendError),
    /// A reliable server's session store refused the upgrade (answered 400 or 503).
    Store(StoreError),
    /// A reliable server has no live session with this id (it expired, or never existed).
    UnknownSession,
    /// The server did not select the `sockeye.v1` subprotocol.
    NotReliable,
    /// A reliable client gave up reconnecting after `attempts` attempts in a row
    /// (`ReconnectConfig::max_attempts`).
    GaveUp {
        /// Attempts made in a row without establishing the session.
        attempts: u32,
        /// Why the last attempt failed, when one was made.
        last: Option<Box<Error>>,
    },
    /// [`ReliableClient::connect`](crate::ReliableClient::connect) did not establish a
    /// session within its `connect_timeout`.
    Timeout {
        /// Why the last connection attempt failed (connection refused, a handshake
        /// error), if one failed.
        last: Option<Box<Error>>,
    },
}

impl ReliableError {
    /// `Full` backpressure from a reliable `send`: the window is full.
    pub fn is_full(&self) -> bool {
        matches!(self, ReliableError::Send(SessionSendError::Full))
    }
}

impl fmt::Display for ReliableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReliableError::Send(e) => write!(f, "cannot send: {e}"),
            ReliableError::Store(e) => write!(f, "upgrade refused: {e}"),
            ReliableError::UnknownSession => f.write_str("no such session"),
            ReliableError::NotReliable => f.write_str("server did not select sockeye.v1"),
            ReliableError::GaveUp { attempts, last } => {
                write!(f, "gave up reconnecting after {attempts} attempts")?;
                match last {
                    Some(last) => write!(f, ": {last}"),
                    None => Ok(()),
                }
            }
            ReliableError::Timeout { last } => {
                f.write_str("no session within the connect timeout")?;
                match last {
                    Some(last) => write!(f, ": {last}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for ReliableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReliableError::Send(e) => Some(e),
            ReliableError::Store(e) => Some(e),
            ReliableError::GaveUp { last, .. } | ReliableError::Timeout { last } => {
                last.as_deref().map(|e| e as _)
            }
            ReliableError::UnknownSession | ReliableError::NotReliable => None,
        }
    }
}
