//! The runtime's one error type: the transport's `io::Error`, one of the core's errors,
//! a refused upgrade, an unusable URL, a reliable session's error, or a server that was
//! shut down, each keeping its cause ([`std::error::Error::source`]).

use std::fmt;
use std::io;

use sockeye_core::{
    ConnectionError, HandshakeError, Message, SendError, SessionSendError, StoreError,
};

use crate::refusal::Refusal;
use crate::reliable::ReliableError;
use crate::url::UrlError;

/// Everything that can go wrong in this crate: binding and accepting, handshakes, and
/// driving a WebSocket over any stream, plain or reliable.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed (bind, accept, connect, read, write).
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
    /// Backpressure: the send queue is full, and here is the message back, to retry
    /// once there is room ([`Sender::try_send`](crate::Sender::try_send), the reliable
    /// `try_send`s).
    Full(Message),
    /// A URL this runtime cannot use (see [`UrlError`]).
    Url(UrlError),
    /// A reliable (`sockeye.v1`) client, server or session failed (see
    /// [`ReliableError`]).
    Reliable(ReliableError),
    /// The server was shut down: `sockeye_smol::Server::accept` answers it, at once,
    /// once a shutdown of its `ShutdownHandle` began, so an accept loop ends. Nothing
    /// failed; the listening socket stays open until the `Server` is dropped.
    ShutDown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Refused(refusal) => write!(f, "upgrade refused with {refusal}"),
            Error::Connection(e) => write!(f, "connection failed: {e}"),
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::Full(_) => f.write_str("cannot send: send queue full"),
            Error::Url(e) => write!(f, "invalid url: {e}"),
            Error::Reliable(e) => e.fmt(f),
            Error::ShutDown => f.write_str("server shut down"),
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
            Error::Url(e) => Some(e),
            // Its Display is this one's: its cause is the next link.
            Error::Reliable(e) => e.source(),
            Error::Refused(_) | Error::Full(_) | Error::ShutDown => None,
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

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

impl From<ReliableError> for Error {
    fn from(e: ReliableError) -> Self {
        Error::Reliable(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Reliable(ReliableError::Store(e))
    }
}

impl From<SessionSendError> for Error {
    fn from(e: SessionSendError) -> Self {
        Error::Reliable(ReliableError::Send(e))
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
        let e = Error::from(UrlError::Fragment);
        assert_eq!(e.to_string(), "invalid url: fragments are not allowed");
        assert!(e.source().is_some());
        assert_eq!(Error::ShutDown.to_string(), "server shut down");
        assert!(Error::ShutDown.source().is_none());
    }

    #[test]
    fn a_reliable_timeout_keeps_and_shows_its_cause() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = Error::from(ReliableError::Timeout {
            last: Some(Box::new(Error::Io(refused))),
        });
        assert!(e.to_string().contains("connection refused"), "{e}");
        let cause = e.source().expect("the cause is kept");
        assert!(cause.to_string().contains("connection refused"), "{cause}");
    }
}
