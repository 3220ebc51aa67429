//! What the layer decides by: limits, timings and keys. A runtime fills it from its flags.

use core::time::Duration;

/// The server's rules. [`Default`] is the embedded default: development mode (no secret,
/// no API key), limits for a small host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// HMAC secret for user tokens; `None` is development mode: `/ws` accepts anyone, as
    /// the name in `?user=` or a generated id.
    pub secret: Option<String>,
    /// Key a backend must present to `POST /api/push`. Without it the push API is open in
    /// development mode and disabled (403) once a secret is set.
    pub api_key: Option<String>,
    /// Most WebSocket connections open at once (503 beyond).
    pub max_connections: usize,
    /// Most WebSocket connections one user may have open at once (503 beyond).
    pub max_connections_per_user: usize,
    /// Largest frame payload accepted from a client (close 1009 beyond).
    pub max_frame_bytes: usize,
    /// Largest message accepted from a client (close 1009 beyond); also the largest push
    /// body (413 beyond).
    pub max_message_bytes: usize,
    /// Bytes that may wait to be written to one connection; a consumer that lets more
    /// pile up is closed 1008 (`slow consumer`), its reliable session kept for resume.
    pub max_queue_bytes: usize,
    /// Ping a connection after this long without hearing from it.
    pub ping_interval: Duration,
    /// Drop a connection that does not answer a ping within this long.
    pub pong_timeout: Duration,
    /// How long a reliable (`sockeye.v1`) session is kept for resume.
    pub session_expiry: Duration,
    /// Most messages waiting in one offline user's mailbox.
    pub mailbox_size: usize,
    /// Age after which a waiting mailbox message becomes a dead letter.
    pub mailbox_age: Duration,
    /// Bytes all mailboxes may hold together (each message counts its payload plus
    /// [`MAIL_OVERHEAD_BYTES`](sockeye_core::hub::MAIL_OVERHEAD_BYTES)).
    pub mailbox_bytes: usize,
    /// Messages one sending user may have waiting in mailboxes at once, so one client
    /// writing to made-up names cannot take every mailbox; server pushes do not count.
    pub mailbox_sender_messages: usize,
    /// Bytes one sending user may have waiting in mailboxes at once.
    pub mailbox_sender_bytes: usize,
    /// Joins and leaves are announced (`presence`) only to rooms where they reach at most
    /// this many other connections: filling a room of `n` then costs `O(n)` messages.
    pub presence_max_recipients: usize,
    /// Largest HTTP request head (431 beyond).
    pub max_head_bytes: usize,
    /// How long a client may take to send its request head, and then its body (408).
    pub head_timeout: Duration,
    /// How long a graceful shutdown waits for connections to finish their close.
    pub shutdown_grace: Duration,
    /// Durability is on (`--journal`): the layer emits journal records and holds every
    /// acknowledgement until the runtime reports their commit done.
    pub journal: bool,
    /// Many nodes as one service through a backend (`--redis`): pushes, room messages
    /// and presence cross nodes through the layer's [`Action::Publish`](crate::Action)
    /// and [`Action::Subscribe`](crate::Action) outputs. `None`: one node.
    pub cluster: Option<crate::ClusterConfig>,
    /// The permessage-deflate policy (RFC 7692) every upgrade on `/ws` answers offers by,
    /// plain and reliable alike; off by default. Every message to a connection that
    /// agreed is compressed by it (a broadcast once per connection), and a compressor that
    /// keeps its context holds about 312 KiB per such connection.
    #[cfg(feature = "deflate")]
    pub deflate: sockeye_core::handshake::DeflateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            secret: None,
            api_key: None,
            max_connections: 10_000,
            max_connections_per_user: 32,
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
            max_queue_bytes: 256 * 1024,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(20),
            session_expiry: Duration::from_secs(120),
            mailbox_size: 100,
            mailbox_age: Duration::from_secs(3600),
            mailbox_bytes: 64 << 20,
            mailbox_sender_messages: 1_000,
            mailbox_sender_bytes: 4 << 20,
            presence_max_recipients: 256,
            max_head_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(3),
            journal: false,
            cluster: None,
            #[cfg(feature = "deflate")]
            deflate: sockeye_core::handshake::DeflateConfig::OFF,
        }
    }
}

impl Config {
    /// The limits and timings of each WebSocket connection.
    pub(crate) fn ws_config(&self) -> sockeye_core::Config {
        let mut ws = sockeye_core::Config::default();
        ws.max_handshake_bytes = self.max_head_bytes;
        ws.handshake_timeout = self.head_timeout;
        ws.max_frame_bytes = self.max_frame_bytes as u64;
        ws.max_message_bytes = self.max_message_bytes;
        ws.max_send_queue_bytes = self.max_queue_bytes;
        ws.ping_interval = Some(self.ping_interval);
        ws.pong_timeout = self.pong_timeout;
        ws.close_timeout = self.shutdown_grace;
        ws
    }

    /// The rules of the reliable sessions: a client's command is acknowledged only once
    /// the layer acted on it (and, with a journal, once that is durable).
    pub(crate) fn session_config(&self) -> sockeye_core::SessionConfig {
        let mut session = sockeye_core::SessionConfig::default();
        session.session_expiry = self.session_expiry;
        session.confirm_deliveries = true;
        session
    }

    /// The hub's limits.
    pub(crate) fn hub_config(&self) -> sockeye_core::hub::HubConfig {
        sockeye_core::hub::HubConfig {
            max_connections: self.max_connections,
            max_connections_per_user: self.max_connections_per_user,
            mailbox_max_messages: self.mailbox_size,
            mailbox_max_age: self.mailbox_age,
            mailbox_max_bytes: self.mailbox_bytes,
            mailbox_sender_max_messages: self.mailbox_sender_messages,
            mailbox_sender_max_bytes: self.mailbox_sender_bytes,
            presence_max_recipients: self.presence_max_recipients,
            report_changes: self.cluster.is_some(),
            ..sockeye_core::hub::HubConfig::default()
        }
    }
}
