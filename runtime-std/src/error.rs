//! The runtime's error: the transport's `io::Error` or one of the core's errors.

use std::fmt;
use std::io;

use crate::refusal::Refusal;
use sockeye_core::{
    ConnectionError, HandshakeError, Message, SendError, SessionSendError, StoreError,
};

/// Everything that can go wrong while driving a WebSocket, over any stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed (connect, read, write, or a write that timed out).
    Io(io::Error),
    /// The opening handshake could not complete.
    Handshake(HandshakeError),
    /// A server refused the upgrade, with this answer: its accept hook
    /// ([`Server::on_request`](crate::Server::on_request)) said no, or it was over
    /// [`max_connections`](crate::Server::max_connections) or shutting down (503).
    Refused(Refusal),
    /// The connection ended abnormally: the peer broke the protocol, exceeded a limit,
    /// stopped answering, or went away without a closing handshake.
    Connection(ConnectionError),
    /// The connection refused what the application asked to send.
    Send(SendError),
    /// A URL is not one this runtime can use: not `ws://` or `wss://`, malformed, a
    /// `wss://` URL given to [`Client::connect`](crate::Client::connect) (which never
    /// connects in the clear: see [`Client::open`](crate::Client::open)), or `wss://`
    /// without the `tls` feature.
    InvalidUrl(String),
    /// The reliable session refused what the application asked to send: `Full` is
    /// backpressure (retry after an `Acked` or `DeadLetter` event), the others are
    /// mistakes.
    Session(SessionSendError),
    /// A reliable server's session store refused the upgrade (answered 400 or 503).
    Store(StoreError),
    /// A reliable server has no live session with this id (it expired, or never existed).
    UnknownSession,
    /// The server did not select the `sockeye.v1` subprotocol.
    NotReliable,
    /// A reliable client gave up reconnecting after `attempts` attempts in a row
    /// (`ReconnectConfig::max_attempts`); `last` is why the last one failed.
    GaveUp {
        /// Attempts made in a row without establishing the session.
        attempts: u32,
        /// Why the last attempt failed.
        last: Box<Error>,
    },
    /// [`ReliableClient::connect`](crate::ReliableClient::connect) did not establish a
    /// session within its `connect_timeout`.
    Timeout,
    /// Backpressure: the send queue is full, and here is the message back, to retry
    /// once there is room ([`Sender::try_send`](crate::Sender::try_send)).
    Full(Message),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Refused(refusal) => write!(f, "upgrade refused with {refusal}"),
            Error::Connection(e) => write!(f, "connection failed: {e}"),
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::InvalidUrl(why) => write!(f, "invalid url: {why}"),
            Error::Session(e) => write!(f, "cannot send: {e}"),
            Error::Store(e) => write!(f, "upgrade refused: {e}"),
            Error::UnknownSession => f.write_str("no such session"),
            Error::NotReliable => f.write_str("server did not select sockeye.v1"),
            Error::GaveUp { attempts, last } => {
                write!(f, "gave up reconnecting after {attempts} attempts: {last}")
            }
            Error::Timeout => f.write_str("timed out"),
            Error::Full(_) => f.write_str("cannot send: send queue full"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Connection(e) => Some(e),
            Error::Send(e) => Some(e),
            Error::Session(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::GaveUp { last, .. } => Some(&**last),
            Error::InvalidUrl(_)
            | Error::Refused(_)
            | Error::UnknownSession
            | Error::NotReliable
            | Error::Timeout
            | Error::Full(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Error::Connection(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Error::Send(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<SessionSendError> for Error {
    fn from(e: SessionSendError) -> Self {
        Error::Session(e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn displays_and_chains_the_cause() {
        let e = Error::from(SendError::Closed);
        assert_eq!(e.to_string(), "cannot send: connection closed");
        assert!(e.source().is_some());
        let e = Error::InvalidUrl("wss is not supported".into());
        assert_eq!(e.to_string(), "invalid url: wss is not supported");
    }
}
