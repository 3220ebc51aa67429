//! The connection state machine of RFC 6455 §5–7, driven by bytes, time and app intent.
//!
//! ```text
//!                 close() / send close
//!   +--------+ -----------------------> +---------+
//!   |  Open  |                          | Closing |  (waiting for the peer's close)
//!   +--------+                          +---------+
//!       |  peer's close: echo it              |  peer's close, or close_timeout,
//!       |  error: send 1002/1007/1009         |  or error, or EOF
//!       |  EOF                                |
//!       v                                     v
//!   +-----------------------------------------------+
//!   |                   Closed                       |  one `Event::Closed`, then nothing
//!   +-----------------------------------------------+
//! ```
//!
//! All transitions happen in this file: in `on_frame`, `fail`, and the
//! `close`/`handle_timeout`/`handle_eof` methods.

#[cfg(feature = "deflate")]
mod deflate;
mod message;
mod prepared;
mod utf8;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use bytes::{Buf, Bytes, BytesMut};
use core::time::Duration;

use crate::config::Config;
use crate::entropy::Entropy;
use crate::error::{ConnectionError, LimitError, ProtocolError, SendError};
use crate::frame::{
    decode_close_payload, encode_close_payload, encode_frame_parts, CloseCode, Frame, FrameDecoder,
    FrameHeader, HeaderBuf, OpCode, MAX_CONTROL_PAYLOAD,
};
use crate::keepalive::{Keepalive, KeepaliveAction};
use crate::time::{Clock, Instant};
use crate::Side;

#[cfg(feature = "deflate")]
pub use deflate::{DeflateMemory, COMPRESSOR_BYTES, INFLATER_STATE_BYTES};
pub use message::{Message, MessageKind};
pub use prepared::PreparedMessage;
use utf8::Utf8Validator;

/// The RSV1 bit of a frame header: "compressed" on the first frame of a message once
/// permessage-deflate is negotiated (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// Whether a message may be compressed, when permessage-deflate (RFC 7692) was
/// negotiated; without it, and without the `deflate` feature, every message is sent
/// as it is.
///
/// Compression leaks information through the size of what is sent: a message that
/// holds a secret next to text an attacker can choose (a token beside a chat line, a
/// CSRF value beside a reflected parameter) lets the attacker guess the secret from
/// how well the guess compresses (the CRIME and BREACH attacks). Send such messages
/// with [`Compression::Never`]; with context takeover, a secret in one message can be
/// probed from the next, so keep secrets out of compressed connections or send every
/// message that holds one uncompressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Compress when permessage-deflate was negotiated and the message is at least the
    /// policy's `min_compress_bytes` long (`DeflateConfig`; a fragmented message of
    /// unknown length is compressed whatever its size).
    #[default]
    Auto,
    /// Send this message uncompressed (RSV1 clear), whatever was negotiated.
    Never,
}

/// Payloads up to this size are copied next to their header into one outgoing chunk;
/// larger ones are queued as their own `Bytes`, uncopied.
const COALESCE_MAX_PAYLOAD: usize = 512;

/// `coalesce` grows by this much at a time (a constant per connection, not per input);
/// [`Connection::send_slice`] copies payloads up to this size into it.
const COALESCE_BLOCK: usize = 8 * 1024;

/// Where a connection is in its life (RFC 6455 §4–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow in both directions.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// The connection is over; [`Event::Closed`] has been emitted.
    Closed,
}

/// How a connection ended, reported once by [`Event::Closed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The peer's close code, [`CloseCode::NO_STATUS`] if its close frame had none, or the
    /// code describing the error that ended the connection.
    pub code: CloseCode,
    /// The peer's close reason (empty if none or on error).
    pub reason: String,
    /// Whether the peer started the closing handshake.
    pub initiated_by_peer: bool,
    /// Why the connection ended without a clean closing handshake, if it did.
    pub error: Option<ConnectionError>,
}

impl Close {
    /// Both close frames were exchanged.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }
}

/// Something the peer did, or that happened to the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A whole message arrived.
    Message(Message),
    /// The peer pinged us; the pong is already queued for [`Connection::poll_transmit`].
    Ping(Bytes),
    /// The peer sent a pong; `rtt` is set when it answers our keepalive ping.
    Pong {
        /// The pong's payload.
        payload: Bytes,
        /// The round-trip time it measured, if it answered our keepalive ping.
        rtt: Option<Duration>,
    },
    /// The connection is closed. Emitted exactly once; nothing follows it.
    Closed(Close),
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Assembly {
    kind: MessageKind,
    data: BytesMut,
    /// The first frame had RSV1 set: `data` holds the inflated bytes.
    compressed: bool,
}

/// One WebSocket connection after the handshake, on either side.
///
/// # The drive loop
///
/// Feed every input (`handle_bytes`, `handle_eof`, `handle_timeout`, `send`, `ping`,
/// `close`), then drain [`poll_event`](Self::poll_event) and
/// [`poll_transmit`](Self::poll_transmit) until both return `None`, then re-arm the timer
/// from [`poll_timeout`](Self::poll_timeout). Close the transport once
/// [`wants_disconnect`](Self::wants_disconnect) is true and `poll_transmit` is empty.
pub struct Connection {
    side: Side,
    config: Config,
    clock: Clock,
    entropy: Box<dyn Entropy + Send>,
    state: State,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    assembly: Option<Assembly>,
    utf8: Utf8Validator,
    /// Payload bytes of the frame in progress already fed to `utf8`.
    utf8_checked: usize,
    out: VecDeque<Bytes>,
    coalesce: BytesMut,
    queued_bytes: usize,
    sending_fragmented: Option<MessageKind>,
    /// The fragmented message being sent is compressed (its first frame had RSV1).
    sending_compressed: bool,
    events: VecDeque<Event>,
    /// A message was delivered; later frames wait for the next `poll_event`.
    paused: bool,
    /// The peer closed its side; acted on once the buffered frames are processed.
    eof_received: bool,
    keepalive: Keepalive,
    close_deadline: Option<Instant>,
    close_sent: bool,
    disconnect: bool,
    /// The permessage-deflate agreement, our policy and the codec, when negotiated.
    #[cfg(feature = "deflate")]
    deflate: Option<deflate::Deflate>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("queued_bytes", &self.queued_bytes)
            .finish_non_exhaustive()
    }
}

/// An entropy source for servers, which never mask and so never need randomness.
struct NoEntropy;

impl Entropy for NoEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
}

impl Connection {
    /// A connection on `side` that has just completed its handshake at `now`. Like every
    /// constructor of the core it takes `(config, now, …)` in that order.
    ///
    /// A client needs real entropy for its masking keys (§5.3); a server never uses it.
    pub fn new(config: Config, now: Instant, side: Side, entropy: Box<dyn Entropy + Send>) -> Self {
        Connection {
            side,
            decoder: FrameDecoder::new(side, config.max_frame_bytes),
            keepalive: Keepalive::new(config.ping_interval, config.pong_timeout, now),
            config,
            clock: Clock::new(now),
            entropy,
            state: State::Open,
            read_buf: BytesMut::new(),
            assembly: None,
            utf8: Utf8Validator::default(),
            utf8_checked: 0,
            out: VecDeque::new(),
            coalesce: BytesMut::new(),
            queued_bytes: 0,
            sending_fragmented: None,
            sending_compressed: false,
            events: VecDeque::new(),
            paused: false,
            eof_received: false,
            close_deadline: None,
            close_sent: false,
            disconnect: false,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// A server-side connection.
    pub fn server(config: Config, now: Instant) -> Self {
        Connection::new(config, now, Side::Server, Box::new(NoEntropy))
    }

    /// A client-side connection that draws masking keys from `entropy`.
    pub fn client(config: Config, now: Instant, entropy: impl Entropy + Send + 'static) -> Self {
        Connection::new(config, now, Side::Client, Box::new(entropy))
    }

    /// The permessage-deflate parameters negotiated in the handshake (RFC 7692), if
    /// any.
    #[cfg(feature = "deflate")]
    pub fn deflate_params(&self) -> Option<&crate::handshake::DeflateParams> {
        self.deflate.as_ref().map(|d| &d.params)
    }

    /// The memory the permessage-deflate codec holds now: a compressor
    /// ([`COMPRESSOR_BYTES`], about 312 KiB) while one exists, a decompressor (its state
    /// plus a window of `2^bits` bytes for the peer's agreed window) while one exists.
    ///
    /// With context takeover in a direction its state lives as long as the connection
    /// once the first compressed message passed; without it (the
    /// `*_no_context_takeover` parameters) it exists only while a compressed message is
    /// being sent or received, so an idle connection reports 0. Zero when nothing was
    /// negotiated, and once the connection is closed.
    #[cfg(feature = "deflate")]
    pub fn deflate_memory(&self) -> DeflateMemory {
        self.deflate
            .as_ref()
            .map(|d| d.memory())
            .unwrap_or_default()
    }

    /// Records the handshake's permessage-deflate agreement, before any frame arrives:
    /// RSV1 is allowed from now on, and messages are compressed and inflated by it.
    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(
        &mut self,
        params: Option<crate::handshake::DeflateParams>,
        config: &crate::handshake::DeflateConfig,
    ) {
        self.deflate = params.map(|p| deflate::Deflate::new(self.side, p, config));
        self.decoder
            .set_allowed_rsv(if self.deflate.is_some() { RSV1 } else { 0 });
    }

    /// Compresses the next piece of an outgoing message if permessage-deflate applies to
    /// it: `None` to send it as it is.
    #[cfg(feature = "deflate")]
    fn compress(&mut self, parts: &[&[u8]], fin: bool) -> Bytes {
        match self.deflate.as_mut() {
            Some(d) => d.tx.compress(parts, fin),
            None => Bytes::new(),
        }
    }

    /// Whether a new message of `len` bytes (`None`: a fragmented one, length unknown)
    /// is to be compressed.
    fn should_compress(&self, len: Option<usize>, compression: Compression) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(d) = &self.deflate {
            return compression == Compression::Auto
                && len.is_none_or(|len| len >= d.config.min_compress_bytes);
        }
        let _ = (len, compression);
        false
    }

    /// The limits and timings this connection runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// The connection is closed: no event will follow the `Closed` one.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The transport should be closed once [`poll_transmit`](Self::poll_transmit) is
    /// drained. A server disconnects as soon as the connection is closed; a client first
    /// waits for the server to close the TCP connection (§7.1.1), up to `close_timeout`.
    pub fn wants_disconnect(&self) -> bool {
        self.disconnect
    }

    /// The latest round-trip time measured by a keepalive ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.keepalive.rtt()
    }

    /// Bytes queued for [`poll_transmit`](Self::poll_transmit) and not yet taken.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Gives back the memory of buffers that hold nothing: the output buffer and queue
    /// once every byte was taken by [`poll_transmit`](Self::poll_transmit), the event
    /// queue once drained, and the input buffer when no partial frame waits in it. For a server holding many idle connections,
    /// call it before a long wait for input: an idle connection then keeps no buffer,
    /// and the next send or read allocates again. Changes nothing the peer can see.
    pub fn release_idle_buffers(&mut self) {
        if self.coalesce.is_empty() && self.queued_bytes == 0 {
            self.coalesce = BytesMut::new();
            self.out = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Feeds bytes read from the transport, in chunks of any size.
    ///
    /// Call [`poll_event`](Self::poll_event) and [`poll_transmit`](Self::poll_transmit)
    /// afterwards. Bytes after the connection closed are ignored. Copies `data` once into
    /// the receive buffer, which holds at most one partial frame (bounded by
    /// `max_frame_bytes`) plus the rest of this chunk.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        let now = self.clock.observe(now);
        if self.state == State::Closed || data.is_empty() {
            return;
        }
        self.keepalive.handle_receive(now);
        self.decoder.extend(&mut self.read_buf, data);
        if !self.paused {
            self.process();
        }
    }

    /// Reports that the peer closed its side of the transport. Frames received before
    /// the EOF are still processed first.
    pub fn handle_eof(&mut self, now: Instant) {
        self.clock.observe(now);
        self.eof_received = true;
        if self.state == State::Closed {
            self.disconnect = true;
        } else if !self.paused {
            self.process();
        }
    }

    /// Decodes and acts on buffered frames until the buffer holds no whole frame, the
    /// connection closes, or a message was delivered.
    ///
    /// Stopping after a message lets the application answer it (an echo, say) before any
    /// later frame is acted on: a peer that sends a message and then breaks the protocol
    /// gets its answer before the close, as it would from a peer reading frame by frame.
    /// [`poll_event`](Self::poll_event) resumes.
    fn process(&mut self) {
        if let Some(message) = self.process_until_message() {
            self.events.push_back(Event::Message(message));
        }
    }

    /// [`process`](Self::process), returning the message that paused it instead of
    /// queueing it: `poll_event` hands it out directly when nothing is queued before it.
    fn process_until_message(&mut self) -> Option<Message> {
        let now = self.clock.latest();
        while self.state != State::Closed {
            // `FrameDecoder::decode` in two steps, each with its own `on_frame`: the common
            // whole frame, decoded inline, then stays in registers instead of meeting the
            // other path's result in memory.
            if let Some(frame) = self.decoder.decode_whole(&mut self.read_buf) {
                match self.on_frame(now, frame) {
                    Ok(Some(message)) => {
                        self.paused = true;
                        return Some(message);
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(e),
                }
                continue;
            }
            match self.decoder.decode_in_parts(&mut self.read_buf) {
                Ok(Some(frame)) => match self.on_frame(now, frame) {
                    Ok(Some(message)) => {
                        self.paused = true;
                        return Some(message);
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(e),
                },
                Ok(None) => {
                    if let Err(e) = self.check_partial() {
                        self.fail(e);
                    } else if self.eof_received {
                        self.fail(ConnectionError::UnexpectedEof);
                    }
                    break;
                }
                Err(e) => self.fail(e),
            }
        }
        if self.state == State::Closed {
            self.read_buf = BytesMut::new();
            if self.eof_received {
                self.disconnect = true;
            }
        }
        None
    }

    /// Acts on deadlines that have passed: keepalive pings, a dead peer, a closing
    /// handshake that took too long. A spurious or early call is a harmless no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let close_expired = self.close_deadline.is_some_and(|d| now >= d);
        match self.state {
            State::Closing if close_expired => self.fail(ConnectionError::CloseTimeout),
            State::Closed if close_expired => self.disconnect = true,
            State::Open => match self.keepalive.handle_timeout(now) {
                Some(KeepaliveAction::SendPing(payload)) => {
                    self.queue_frame(OpCode::Ping, true, Bytes::copy_from_slice(&payload));
                }
                Some(KeepaliveAction::PeerDead) => self.fail(ConnectionError::KeepaliveTimeout),
                None => {}
            },
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => self.keepalive.poll_timeout(),
            State::Closing => self.close_deadline,
            State::Closed if !self.disconnect => self.close_deadline,
            State::Closed => None,
        }
    }

    /// Queues a whole message as one frame.
    ///
    /// Answers [`SendError::Full`] while more than `max_send_queue_bytes` wait in the
    /// queue (a message always fits an empty queue), and [`SendError::Closed`] once the
    /// closing handshake has started. Server payloads are queued without copying.
    ///
    /// With permessage-deflate negotiated the message is compressed by the
    /// [`Compression::Auto`] rule; [`send_with`](Self::send_with) chooses per message.
    pub fn send(&mut self, now: Instant, message: Message) -> Result<(), SendError> {
        self.send_with(now, message, Compression::Auto)
    }

    /// [`send`](Self::send), choosing whether this message may be compressed:
    /// [`Compression::Never`] for one that holds a secret next to text an attacker
    /// controls (see [`Compression`]). A compressed message is one frame with RSV1 set
    /// and the compressed payload (allocated, about the message's size or less).
    pub fn send_with(
        &mut self,
        now: Instant,
        message: Message,
        compression: Compression,
    ) -> Result<(), SendError> {
        self.try_send_with(now, message, compression)
            .map_err(|(error, _)| error)
    }

    /// [`send_with`](Self::send_with) that hands the message back when it is refused:
    /// on [`SendError::Full`] the caller keeps it to retry once
    /// [`poll_transmit`](Self::poll_transmit) has made room, with no clone made in
    /// advance. The same answers as `send_with`, each with the message.
    pub fn try_send_with(
        &mut self,
        now: Instant,
        message: Message,
        compression: Compression,
    ) -> Result<(), (SendError, Message)> {
        self.clock.observe(now);
        if let Err(error) = self.check_can_send(message.payload().len()) {
            return Err((error, message));
        }
        if self.sending_fragmented.is_some() {
            return Err((SendError::FragmentOrder, message));
        }
        let opcode = match message.kind() {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        #[cfg(feature = "deflate")]
        if self.should_compress(Some(message.payload().len()), compression) {
            let compressed = self.compress(&[message.payload()], true);
            self.queue_frame_rsv(opcode, true, RSV1, compressed);
            return Ok(());
        }
        let _ = compression;
        self.queue_frame(opcode, true, message.into_payload());
        Ok(())
    }

    /// Queues a whole message as one frame, copying its payload from a slice.
    ///
    /// The same as [`send`](Self::send) with the same answers, for a caller that holds the
    /// payload in a buffer of its own: a payload of up to 8 KiB is copied next to its
    /// header into the connection's output buffer, which costs less than handing over a
    /// `Bytes` and taking the header back as a chunk of its own, above all with
    /// [`transmit_chunk`](Self::transmit_chunk). Allocates for a larger payload, which is
    /// copied into a chunk of its own; [`send`](Self::send) queues that without copying.
    pub fn send_slice(
        &mut self,
        now: Instant,
        kind: MessageKind,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.clock.observe(now);
        self.check_can_send(payload.len())?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::FragmentOrder);
        }
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        #[cfg(feature = "deflate")]
        if self.should_compress(Some(payload.len()), Compression::Auto) {
            let compressed = self.compress(&[payload], true);
            self.queue_frame_rsv(opcode, true, RSV1, compressed);
            return Ok(());
        }
        self.queue_frame_copy(opcode, true, payload, COALESCE_BLOCK);
        Ok(())
    }

    /// Like [`send_slice`](Self::send_slice) for a message that is `head` followed by
    /// `payload`, held apart: the frame is built from both, copying (and masking) each
    /// byte once. A reliable session sends its DATA envelopes this way, its small header
    /// in `head` and the application's message in `payload`.
    pub fn send_parts(
        &mut self,
        now: Instant,
        kind: MessageKind,
        head: &[u8],
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.clock.observe(now);
        self.check_can_send(head.len() + payload.len())?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::FragmentOrder);
        }
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        #[cfg(feature = "deflate")]
        if self.should_compress(Some(head.len() + payload.len()), Compression::Auto) {
            let compressed = self.compress(&[head, payload], true);
            self.queue_frame_rsv(opcode, true, RSV1, compressed);
            return Ok(());
        }
        self.queue_frame_parts(opcode, true, 0, head, payload, COALESCE_BLOCK);
        Ok(())
    }

    /// Queues a message framed once for many connections (a room's fan-out): on a
    /// server, a reference to its shared frame, with no header written and no payload
    /// byte copied for this connection. A client must mask, so there it is sent like
    /// [`send_slice`](Self::send_slice). The same answers as [`send`](Self::send).
    ///
    /// Where permessage-deflate was negotiated and the [`Compression::Auto`] rule would
    /// compress the message, it goes compressed: as the compressed frame `message`
    /// holds when [`prepare_compressed`](Self::prepare_compressed) made it for
    /// connections like this one (shared, as the plain frame is), else compressed for
    /// this connection like [`send`](Self::send) would.
    pub fn send_prepared(
        &mut self,
        now: Instant,
        message: &PreparedMessage,
    ) -> Result<(), SendError> {
        if self.side == Side::Client {
            return self.send_slice(now, message.kind(), &message.payload());
        }
        #[cfg(feature = "deflate")]
        if self.should_compress(Some(message.payload_len()), Compression::Auto) {
            let shared = self.deflate.as_ref().and_then(|d| d.tx.share_key());
            if let Some(frame) = shared.and_then(|key| message.compressed_frame(key)) {
                return self.queue_shared(now, frame.clone());
            }
            let payload = message.payload();
            let message = match message.kind() {
                MessageKind::Text => Message::Text(payload),
                MessageKind::Binary => Message::Binary(payload),
            };
            return self.send(now, message);
        }
        self.queue_shared(now, message.frame().clone())
    }

    /// Queues a whole frame shared with other connections, as it is.
    fn queue_shared(&mut self, now: Instant, frame: Bytes) -> Result<(), SendError> {
        self.clock.observe(now);
        self.check_can_send(frame.len())?;
        if self.sending_fragmented.is_some() {
            return Err(SendError::FragmentOrder);
        }
        self.queued_bytes += frame.len();
        self.flush_coalesce();
        self.out.push_back(frame);
        Ok(())
    }

    /// Makes `message` hold its compressed frame for connections like this one, when
    /// this connection would send it compressed and can share those bytes: a server
    /// connection that agreed to permessage-deflate without keeping its compression
    /// context between messages (`server_no_context_takeover` agreed, or a policy with
    /// `keep_compressor` off), for a message of at least `min_compress_bytes`. Every
    /// connection with the same level and window then sends that frame from
    /// [`send_prepared`](Self::send_prepared) as it is: a fan-out compresses the message
    /// once, not once per member. Does nothing otherwise, or when `message` already
    /// holds a compressed frame (one is kept; connections with other settings compress
    /// for themselves, as they do for a message never prepared this way).
    ///
    /// Call before sending `message` to the connections it is for. Allocates a
    /// compressor (about 312 KiB, freed on return) and the compressed frame.
    #[cfg(feature = "deflate")]
    pub fn prepare_compressed(&self, message: &mut PreparedMessage) {
        if self.side != Side::Server
            || message.is_compressed()
            || !self.should_compress(Some(message.payload_len()), Compression::Auto)
        {
            return;
        }
        if let Some(key) = self.deflate.as_ref().and_then(|d| d.tx.share_key()) {
            message.compress_for(key);
        }
    }

    /// Queues one fragment of a message (§5.4); `fin` marks the last one.
    ///
    /// Every fragment of a message must name the same `kind`; control frames and pings
    /// may still be sent between fragments, but not other messages.
    ///
    /// With permessage-deflate negotiated the message is compressed by the
    /// [`Compression::Auto`] rule; [`send_fragment_with`](Self::send_fragment_with)
    /// chooses per message.
    pub fn send_fragment(
        &mut self,
        now: Instant,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), SendError> {
        self.send_fragment_with(now, kind, payload, fin, Compression::Auto)
    }

    /// [`send_fragment`](Self::send_fragment), choosing whether the message may be
    /// compressed; the choice made with its first fragment holds for the whole message
    /// and `compression` is ignored on the later ones.
    ///
    /// A compressed message sets RSV1 on its first frame only; each fragment's payload
    /// is compressed and flushed as it is sent, so the peer can inflate it on arrival,
    /// and the last one loses the `00 00 ff ff` tail (RFC 7692 §7.2.1). A first fragment
    /// that is also the last (`fin`) is a whole message and follows the size threshold.
    pub fn send_fragment_with(
        &mut self,
        now: Instant,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
        compression: Compression,
    ) -> Result<(), SendError> {
        self.clock.observe(now);
        self.check_can_send(payload.len())?;
        let opcode = match (self.sending_fragmented, kind) {
            (Some(open), _) if open != kind => return Err(SendError::FragmentOrder),
            (Some(_), _) => OpCode::Continuation,
            (None, MessageKind::Text) => OpCode::Text,
            (None, MessageKind::Binary) => OpCode::Binary,
        };
        if opcode != OpCode::Continuation {
            let len = fin.then_some(payload.len());
            self.sending_compressed = self.should_compress(len, compression);
        }
        self.sending_fragmented = if fin { None } else { Some(kind) };
        #[cfg(feature = "deflate")]
        if self.sending_compressed {
            let rsv = if opcode == OpCode::Continuation {
                0
            } else {
                RSV1
            };
            let compressed = self.compress(&[&payload], fin);
            self.queue_frame_rsv(opcode, fin, rsv, compressed);
            return Ok(());
        }
        self.queue_frame(opcode, fin, payload);
        Ok(())
    }

    /// Queues a ping (payload at most 125 bytes). Its pong arrives as [`Event::Pong`].
    pub fn ping(&mut self, now: Instant, payload: Bytes) -> Result<(), SendError> {
        self.clock.observe(now);
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.check_can_send(0)?;
        self.queue_frame(OpCode::Ping, true, payload);
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2): queues a close frame and waits up to
    /// `close_timeout` for the peer's. `2 + reason.len()` must fit in 125 bytes.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let now = self.clock.observe(now);
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code.as_u16()));
        }
        if 2 + reason.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.send_close(Some((code, reason)));
        self.state = State::Closing;
        self.close_deadline = Some(now + self.config.close_timeout);
        Ok(())
    }

    /// The next chunk to write to the transport, in order. Call after every input until
    /// it returns `None`. Chunks are small header runs or whole payloads, never copied
    /// again on the server side.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let chunk = match self.out.pop_front() {
            Some(chunk) => chunk,
            None if !self.coalesce.is_empty() => self.coalesce.split().freeze(),
            None => return None,
        };
        self.queued_bytes -= chunk.len();
        Some(chunk)
    }

    /// The bytes to write to the transport next, without taking them: empty when nothing
    /// is queued. Call [`advance_transmit`](Self::advance_transmit) with how many of them
    /// were written, and repeat until it is empty.
    ///
    /// The alternative to [`poll_transmit`](Self::poll_transmit) (the two can be mixed)
    /// for a runtime that writes from a borrowed slice, as `std::io::Write` does: the
    /// small frames queued since the last write are written straight from the
    /// connection's own buffer, which is then reused, with no `Bytes` to hand out and
    /// drop.
    pub fn transmit_chunk(&self) -> &[u8] {
        match self.out.front() {
            Some(chunk) => chunk,
            None => &self.coalesce,
        }
    }

    /// Marks the first `n` bytes of [`transmit_chunk`](Self::transmit_chunk) as written.
    /// `n` larger than that chunk counts as all of it.
    pub fn advance_transmit(&mut self, n: usize) {
        let n = match self.out.front_mut() {
            Some(chunk) => {
                let n = n.min(chunk.len());
                chunk.advance(n);
                if chunk.is_empty() {
                    self.out.pop_front();
                }
                n
            }
            None => {
                // Once emptied, the buffer's next `reserve` takes it back from the front
                // without copying: it stays one allocation, warm in cache.
                let n = n.min(self.coalesce.len());
                self.coalesce.advance(n);
                n
            }
        };
        self.queued_bytes -= n;
    }

    /// The next event. Call after every input until it returns `None`.
    ///
    /// Received frames are acted on lazily: after an [`Event::Message`], later frames
    /// already received wait until `poll_event` is called again. An application that
    /// handles each message before asking for the next event can therefore answer it
    /// before anything the peer sent afterwards takes effect. Draining all events at once
    /// is equally correct. Either way, drain [`poll_transmit`](Self::poll_transmit) too:
    /// resuming may queue replies (pongs, close frames).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() && self.paused {
            self.paused = false;
            if let Some(message) = self.process_until_message() {
                if self.events.is_empty() {
                    return Some(Event::Message(message));
                }
                self.events.push_back(Event::Message(message));
            }
        }
        self.events.pop_front()
    }

    /// Queues bytes that must precede every frame, such as the handshake's 101 response.
    pub(crate) fn queue_raw(&mut self, bytes: Bytes) {
        self.flush_coalesce();
        self.queued_bytes += bytes.len();
        self.out.push_back(bytes);
    }

    fn check_can_send(&self, len: usize) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        if self.queued_bytes > 0 && self.queued_bytes + len > self.config.max_send_queue_bytes {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// Acts on one frame; returns the message it completes, if any.
    ///
    /// Inlined into the decoding loop for the common case, a whole message in one frame
    /// none of which was checked while it arrived: that needs only its size and text
    /// checked, what `check_data_header` and `handle_data` come to for it, without their
    /// state. Other frames go to [`on_other_frame`](Self::on_other_frame).
    #[inline(always)]
    fn on_frame(&mut self, now: Instant, frame: Frame) -> Result<Option<Message>, ConnectionError> {
        let whole = matches!(frame.header.opcode, OpCode::Text | OpCode::Binary)
            && frame.header.fin
            && frame.header.rsv == 0
            && self.assembly.is_none()
            && self.utf8_checked == 0;
        if !whole {
            return self.on_other_frame(now, frame);
        }
        let Frame { header, payload } = frame;
        let max = self.config.max_message_bytes;
        if payload.len() > max {
            return Err(LimitError::MessageTooLarge { max }.into());
        }
        if header.opcode == OpCode::Binary {
            return Ok(Some(Message::Binary(payload)));
        }
        // §8.1: an endpoint that "finds that the byte stream is not, in fact, a valid
        // UTF-8 stream ... MUST _Fail the WebSocket Connection_". The validator holds
        // nothing: no piece of this message was fed to it.
        if core::str::from_utf8(&payload).is_err() {
            return Err(ProtocolError::InvalidUtf8.into());
        }
        Ok(Some(Message::Text(payload)))
    }

    /// [`on_frame`](Self::on_frame) for fragments and control frames.
    #[inline(never)]
    fn on_other_frame(
        &mut self,
        now: Instant,
        frame: Frame,
    ) -> Result<Option<Message>, ConnectionError> {
        let Frame { header, payload } = frame;
        // The decoder lets RSV1 through only once permessage-deflate is negotiated; it
        // never marks a control frame (RFC 7692 §6.1).
        if header.opcode.is_control() && header.rsv != 0 {
            return Err(ProtocolError::CompressedControlFrame.into());
        }
        match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.check_data_header(&header)?;
                self.handle_data(header, payload)
            }
            OpCode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame
                // in response" — queued now, so it leaves with the next poll_transmit.
                if !self.close_sent {
                    self.queue_frame(OpCode::Pong, true, payload.clone());
                }
                self.events.push_back(Event::Ping(payload));
                Ok(None)
            }
            OpCode::Pong => {
                let rtt = self.keepalive.handle_pong(now, &payload);
                self.events.push_back(Event::Pong { payload, rtt });
                Ok(None)
            }
            OpCode::Close => self.on_close(now, &payload).map(|()| None),
        }
    }

    fn handle_data(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Message>, ConnectionError> {
        let kind = match (header.opcode, &self.assembly) {
            (OpCode::Continuation, Some(a)) => a.kind,
            (OpCode::Text, _) => MessageKind::Text,
            _ => MessageKind::Binary,
        };
        if self.is_compressed(&header) {
            return self.on_compressed_data(kind, header.fin, &payload);
        }
        if kind == MessageKind::Text {
            let unchecked = &payload[self.utf8_checked.min(payload.len())..];
            self.utf8
                .feed(unchecked)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if header.fin {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        self.utf8_checked = 0;
        let whole = match (self.assembly.take(), header.fin) {
            (None, true) => payload,
            (None, false) => {
                let mut data = BytesMut::with_capacity(payload.len());
                data.extend_from_slice(&payload);
                self.assembly = Some(Assembly {
                    kind,
                    data,
                    compressed: false,
                });
                return Ok(None);
            }
            (Some(mut assembly), fin) => {
                assembly.data.extend_from_slice(&payload);
                if !fin {
                    self.assembly = Some(assembly);
                    return Ok(None);
                }
                assembly.data.freeze()
            }
        };
        Ok(Some(match kind {
            MessageKind::Text => Message::Text(whole),
            MessageKind::Binary => Message::Binary(whole),
        }))
    }

    /// Whether the data frame `header` belongs to a compressed message: RSV1 on a first
    /// frame, or a continuation of a message whose first frame had it.
    fn is_compressed(&self, header: &FrameHeader) -> bool {
        match (header.opcode, &self.assembly) {
            (OpCode::Continuation, Some(a)) => a.compressed,
            _ => header.rsv & RSV1 != 0,
        }
    }

    /// Inflates one frame of a compressed message into its assembly, checking the
    /// message limit and (for text) UTF-8 on every step of output, so a small frame
    /// that inflates to far more than the limit costs at most the limit plus one step
    /// before the connection fails with 1009.
    #[cfg(feature = "deflate")]
    fn on_compressed_data(
        &mut self,
        kind: MessageKind,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<Message>, ConnectionError> {
        use deflate::InflateError;

        let mut assembly = self.assembly.take().unwrap_or(Assembly {
            kind,
            data: BytesMut::new(),
            compressed: true,
        });
        let Some(codec) = self.deflate.as_mut() else {
            // Unreachable: the decoder refuses RSV1 until permessage-deflate is agreed.
            return Err(ProtocolError::ReservedBits.into());
        };
        let max = self.config.max_message_bytes;
        let utf8 = &mut self.utf8;
        let text = kind == MessageKind::Text;
        let mut sink = |step: &[u8]| -> Result<(), ConnectionError> {
            if assembly.data.len() + step.len() > max {
                return Err(LimitError::MessageTooLarge { max }.into());
            }
            if text {
                utf8.feed(step).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            assembly.data.extend_from_slice(step);
            Ok(())
        };
        let mut result = codec.rx.inflate(payload, &mut sink);
        if fin && result.is_ok() {
            result = codec.rx.finish(&mut sink);
        }
        if let Err(e) = result {
            codec.rx.abort();
            return Err(match e {
                InflateError::Corrupt => ProtocolError::InvalidCompressedData.into(),
                InflateError::Sink(e) => e,
            });
        }
        if !fin {
            self.assembly = Some(assembly);
            return Ok(None);
        }
        if text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let whole = assembly.data.freeze();
        Ok(Some(match kind {
            MessageKind::Text => Message::Text(whole),
            MessageKind::Binary => Message::Binary(whole),
        }))
    }

    /// Without the `deflate` feature no frame with RSV1 gets past the decoder.
    #[cfg(not(feature = "deflate"))]
    fn on_compressed_data(
        &mut self,
        _kind: MessageKind,
        _fin: bool,
        _payload: &[u8],
    ) -> Result<Option<Message>, ConnectionError> {
        Err(ProtocolError::ReservedBits.into())
    }

    /// Rules for a data frame that can be checked from its header alone, so they fail
    /// before its payload is buffered.
    fn check_data_header(&self, header: &FrameHeader) -> Result<(), ConnectionError> {
        // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
        if header.opcode == OpCode::Continuation && header.rsv & RSV1 != 0 {
            return Err(ProtocolError::CompressedContinuation.into());
        }
        // §5.4: fragments of one message are not interleaved with another message.
        let assembled = match (header.opcode, &self.assembly) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::UnexpectedContinuation.into())
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation.into())
            }
            // A compressed message is held to the limit as it inflates: the size of its
            // compressed frames says nothing of it.
            (_, Some(a)) if a.compressed => return Ok(()),
            (_, Some(a)) => a.data.len() as u64,
            (_, None) if header.rsv & RSV1 != 0 => return Ok(()),
            (_, None) => 0,
        };
        let max = self.config.max_message_bytes;
        if assembled.saturating_add(header.payload_len) > max as u64 {
            return Err(LimitError::MessageTooLarge { max }.into());
        }
        Ok(())
    }

    /// Checks the frame whose payload is still arriving: its header rules, and the UTF-8
    /// of the text received so far, so a bad message fails before it is complete.
    fn check_partial(&mut self) -> Result<(), ConnectionError> {
        let Some((header, unmasked)) = self.decoder.partial() else {
            return Ok(());
        };
        let header = *header;
        if header.opcode.is_control() {
            return Ok(());
        }
        self.check_data_header(&header)?;
        // A compressed frame's UTF-8 is checked as it inflates, once it is whole.
        let is_text = match header.opcode {
            OpCode::Text => header.rsv & RSV1 == 0,
            OpCode::Continuation => self
                .assembly
                .as_ref()
                .is_some_and(|a| a.kind == MessageKind::Text && !a.compressed),
            _ => false,
        };
        if is_text && unmasked > self.utf8_checked {
            self.utf8
                .feed(&self.read_buf[self.utf8_checked..unmasked])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            self.utf8_checked = unmasked;
        }
        Ok(())
    }

    fn on_close(&mut self, now: Instant, payload: &[u8]) -> Result<(), ConnectionError> {
        let received = decode_close_payload(payload)?;
        let initiated_by_peer = !self.close_sent;
        if initiated_by_peer {
            // §5.5.1: "the endpoint MUST send a Close frame in response ... typically
            // echoing the status code it received".
            self.send_close(received.map(|(code, _)| (code, "")));
        }
        let (code, reason) = received.unwrap_or((CloseCode::NO_STATUS, ""));
        self.assembly = None;
        self.finish(Close {
            code,
            reason: String::from(reason),
            initiated_by_peer,
            error: None,
        });
        // §7.1.1: the server closes the TCP connection first; the client waits for it.
        match self.side {
            Side::Server => self.disconnect = true,
            Side::Client => self.close_deadline = Some(now + self.config.close_timeout),
        }
        Ok(())
    }

    /// _Fail the WebSocket Connection_ (§7.1.7): send a close frame with the error's code
    /// if the peer can still read it, report `Closed`, and stop reading.
    fn fail(&mut self, error: ConnectionError) {
        if self.state == State::Closed {
            return;
        }
        let sendable = matches!(
            error,
            ConnectionError::Protocol(_)
                | ConnectionError::Limit(_)
                | ConnectionError::KeepaliveTimeout
        );
        if sendable && !self.close_sent {
            self.send_close(Some((error.close_code(), "")));
        }
        self.assembly = None;
        self.disconnect = true;
        self.finish(Close {
            code: error.close_code(),
            reason: String::new(),
            initiated_by_peer: false,
            error: Some(error),
        });
    }

    fn finish(&mut self, close: Close) {
        self.state = State::Closed;
        self.sending_fragmented = None;
        #[cfg(feature = "deflate")]
        if let Some(codec) = self.deflate.as_mut() {
            codec.release();
        }
        self.events.push_back(Event::Closed(close));
    }

    fn send_close(&mut self, status: Option<(CloseCode, &str)>) {
        let mut payload = BytesMut::new();
        if let Some((code, reason)) = status {
            encode_close_payload(code, reason, &mut payload);
        }
        self.queue_frame(OpCode::Close, true, payload.freeze());
        self.close_sent = true;
    }

    fn queue_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        self.queue_frame_rsv(opcode, fin, 0, payload);
    }

    /// [`queue_frame`](Self::queue_frame) with RSV bits (RSV1 for a compressed message).
    fn queue_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: Bytes) {
        if self.side == Side::Client || payload.len() <= COALESCE_MAX_PAYLOAD {
            // Masking rewrites the payload, so a client copies it once into the output.
            return self.queue_frame_parts(opcode, fin, rsv, &[], &payload, COALESCE_MAX_PAYLOAD);
        }
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let head = HeaderBuf::new(&header);
        self.queued_bytes += head.as_slice().len() + payload.len();
        self.reserve_coalesce(head.as_slice().len());
        self.coalesce.extend_from_slice(head.as_slice());
        self.flush_coalesce();
        self.out.push_back(payload);
    }

    /// Queues a frame whose payload is copied into the output: next to its header up to
    /// `coalesce_max` bytes, else (masked on the client side) into a chunk of its own.
    fn queue_frame_copy(&mut self, opcode: OpCode, fin: bool, payload: &[u8], coalesce_max: usize) {
        self.queue_frame_parts(opcode, fin, 0, &[], payload, coalesce_max);
    }

    /// Queues one frame whose payload is `head` then `payload`, copied (and masked) into
    /// the output: next to the frames before it when small, in a chunk of its own above
    /// `coalesce_max`.
    fn queue_frame_parts(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        head: &[u8],
        payload: &[u8],
        coalesce_max: usize,
    ) {
        let mask = match self.side {
            Side::Client => {
                let mut key = [0u8; 4];
                self.entropy.fill(&mut key);
                Some(key)
            }
            Side::Server => None,
        };
        let len = head.len() + payload.len();
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        let frame_len = header.encoded_len() + len;
        self.queued_bytes += frame_len;
        if len > coalesce_max {
            self.flush_coalesce();
            let mut chunk = BytesMut::with_capacity(frame_len);
            encode_frame_parts(header, head, payload, &mut chunk);
            self.out.push_back(chunk.freeze());
        } else {
            self.reserve_coalesce(frame_len);
            encode_frame_parts(header, head, payload, &mut self.coalesce);
        }
    }

    /// Makes room for a frame in `coalesce` a block at a time: `poll_transmit` splits the
    /// whole buffer off, and growing it frame by frame would reclaim or reallocate it on
    /// every small send.
    fn reserve_coalesce(&mut self, frame_len: usize) {
        if self.coalesce.capacity() - self.coalesce.len() < frame_len {
            self.coalesce.reserve(frame_len.max(COALESCE_BLOCK));
        }
    }

    fn flush_coalesce(&mut self) {
        if !self.coalesce.is_empty() {
            self.out.push_back(self.coalesce.split().freeze());
        }
    }
}

#[cfg(all(test, feature = "deflate"))]
mod deflate_tests;
#[cfg(all(test, feature = "deflate"))]
mod prepared_deflate_tests;
#[cfg(test)]
mod send_tests;
#[cfg(test)]
mod tests;
