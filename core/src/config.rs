//! Limits and timings, with defaults that work out of the box.
//!
//! Every buffer the core keeps has a limit here, checked before bytes are buffered.

use core::time::Duration;

/// Limits and timings for a handshake and the connection that follows it.
///
/// `Config::default()` accepts everything the Autobahn testsuite sends (a 16 MiB message,
/// a 4 MiB message in 64-byte fragments) while bounding every buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest HTTP request or response head (request line, headers, blank line) accepted
    /// during the handshake; larger heads are answered 431.
    pub max_handshake_bytes: usize,
    /// Most header fields accepted in a handshake head; more are answered 431.
    pub max_handshake_headers: usize,
    /// How long a peer may take to send its whole handshake head; slower ones get 408.
    pub handshake_timeout: Duration,
    /// Largest frame payload accepted; larger frames close the connection with 1009.
    pub max_frame_bytes: u64,
    /// Largest message (all fragments together) accepted; larger ones close with 1009.
    pub max_message_bytes: usize,
    /// Bytes that may wait in the outgoing queue before [`send`](crate::Connection::send)
    /// answers [`SendError::Full`](crate::SendError::Full). A message is always accepted
    /// into an empty queue, so the queue never holds more than this plus one message.
    pub max_send_queue_bytes: usize,
    /// Send a ping after this long without receiving anything; `None` disables keepalive.
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, declare the peer dead if nothing arrives within this long.
    pub pong_timeout: Duration,
    /// How long to wait for the peer to finish the closing handshake before giving up.
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
