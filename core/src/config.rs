//! Limits and timings, with defaults that work out of the box.
//!
//! Every buffer the core keeps has a limit here, checked before bytes are buffered.

use core::time::Duration;

/// Limits and timings for a handshake and the connection that follows it.
///
/// `Config::default()` accepts everything the Autobahn testsuite sends (a 16 MiB message,
/// a 4 MiB message in 64-byte fragments) while bounding every buffer. Each field names
/// its default; the runtimes (`sockeye-std`, `sockeye-smol`) take this `Config` as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest HTTP request or response head (request line, headers, blank line) accepted
    /// during the handshake; larger heads are answered 431.
    ///
    /// Default: 8 KiB.
    pub max_handshake_bytes: usize,
    /// Most header fields accepted in a handshake head; more are answered 431.
    ///
    /// Default: 64.
    pub max_handshake_headers: usize,
    /// How long a peer may take to send its whole handshake head; slower ones get 408.
    ///
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Largest frame payload accepted; larger frames close the connection with 1009.
    ///
    /// Default: 16 MiB.
    pub max_frame_bytes: u64,
    /// Largest message (all fragments together) accepted; larger ones close with 1009.
    ///
    /// Default: 16 MiB.
    pub max_message_bytes: usize,
    /// Bytes that may wait in the outgoing queue before [`send`](crate::Connection::send)
    /// answers [`SendError::Full`](crate::SendError::Full). A message is always accepted
    /// into an empty queue, so the queue never holds more than this plus one message.
    ///
    /// Default: 4 MiB.
    pub max_send_queue_bytes: usize,
    /// Send a ping after this long without receiving anything; `None` disables keepalive.
    ///
    /// Default: `Some(30 s)`.
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, declare the peer dead if nothing arrives within this long.
    ///
    /// Default: 20 s.
    pub pong_timeout: Duration,
    /// How long to wait for the peer to finish the closing handshake before giving up.
    ///
    /// Default: 5 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_handshake_bytes: 8 * 1024,
            max_handshake_headers: 64,
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            max_send_queue_bytes: 4 << 20,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Limits and timings of the reliable session layer (`sockeye.v1`, `docs/PROTOCOL.md`).
///
/// Both sides use the same type; `session_expiry` and `max_sessions` matter only to a
/// server's [`SessionStore`](crate::session::SessionStore).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Most messages sent and not yet acknowledged; `send` answers `Full` beyond it.
    ///
    /// Default: 1,024.
    pub window_messages: usize,
    /// Most payload bytes sent and not yet acknowledged; `send` answers `Full` beyond it
    /// (and `TooLarge` for a single payload over it).
    ///
    /// Default: 1 MiB.
    pub window_bytes: usize,
    /// How long the receiver may hold back an acknowledgement, hoping to piggyback it.
    ///
    /// Default: 20 ms.
    pub ack_delay: Duration,
    /// Acknowledge at once after this many messages received without an ack.
    ///
    /// Default: 32.
    pub ack_every_messages: u32,
    /// Retransmission timeout before any round-trip sample (RFC 6298 §2.1 uses 1 s).
    ///
    /// Default: 1 s.
    pub rto_initial: Duration,
    /// Lower bound of the retransmission timeout.
    ///
    /// Default: 200 ms.
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout, backoff included.
    ///
    /// Default: 30 s.
    pub rto_max: Duration,
    /// Tries of one message before it is given up. On one connection: that many
    /// transmissions without an ack and the connection is dropped as unresponsive (a copy
    /// may still be in the peer's hands). Over the session's life: transmitted on that
    /// many connections (each connection's retransmissions counting once) and, at the
    /// next resume, a message the peer lacks becomes a dead letter instead of being
    /// resent.
    ///
    /// Default: 8.
    pub resend_max_tries: u32,
    /// Age after which an unacknowledged message is given up, as for `resend_max_tries`.
    ///
    /// Default: 300 s.
    pub message_max_age: Duration,
    /// How long a server keeps a disconnected session for its client to resume.
    ///
    /// Default: 120 s.
    pub session_expiry: Duration,
    /// Most live sessions a server's store holds; new ones are refused (503) beyond it.
    /// Expired sessions' tombstones are bounded by the same number.
    ///
    /// Default: 100,000.
    pub max_sessions: usize,
    /// A server session acknowledges a client's message only once the application
    /// confirms it ([`ServerSession::confirm`](crate::session::ServerSession::confirm)),
    /// not when it is handed over: for a server that must act on a message (durably)
    /// before the client may forget it. A resume waits for the confirmations too, so
    /// the WELCOME reports exactly what the application has. Client sessions ignore it.
    ///
    /// Default: `false`.
    pub confirm_deliveries: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window_messages: 1024,
            window_bytes: 1 << 20,
            ack_delay: Duration::from_millis(20),
            ack_every_messages: 32,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(30),
            resend_max_tries: 8,
            message_max_age: Duration::from_secs(300),
            session_expiry: Duration::from_secs(120),
            max_sessions: 100_000,
            confirm_deliveries: false,
        }
    }
}
