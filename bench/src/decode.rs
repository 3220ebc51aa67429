//! Server-side decoding of masked client frames, one case per implementation.
//!
//! Every case decodes one batch (the same `count` frames) per call and hands each whole,
//! unmasked payload to `visit`, which the timing loop makes a `black_box` and the check
//! compares against the original.

use std::sync::Arc;

use bytes::BytesMut;
use sockeye_core::connection::Event;
use sockeye_core::frame::{FrameDecoder, OpCode};
use sockeye_core::{Config, Connection, Instant, Message, Side};

use crate::stream::{block_on, MemStream};

/// Frames larger than any measured payload, for every implementation's limit.
const MAX_BYTES: usize = 64 << 20;

/// One implementation decoding a batch of frames.
pub trait DecodeCase {
    /// Row label.
    fn name(&self) -> &'static str;
    /// Decodes one batch, calling `visit` with every payload in order.
    fn batch(&mut self, visit: impl FnMut(&[u8]));
}

/// The codec alone: copy the bytes into a `BytesMut` (as a socket read would), then
/// `FrameDecoder::decode` until it needs more; either the whole batch at once or in reads
/// of `chunk` bytes, each decoded before the next is copied.
pub struct SockeyeDecoder {
    wire: Arc<[u8]>,
    chunk: usize,
    buf: BytesMut,
    decoder: FrameDecoder,
    label: &'static str,
}

impl SockeyeDecoder {
    /// A server-side decoder over `wire`, fed `chunk` bytes at a time.
    pub fn new(wire: Arc<[u8]>, chunk: usize, label: &'static str) -> Self {
        SockeyeDecoder {
            buf: BytesMut::with_capacity(wire.len().min(chunk)),
            wire,
            chunk: chunk.max(1),
            decoder: FrameDecoder::new(Side::Server, MAX_BYTES as u64),
            label,
        }
    }
}

impl DecodeCase for SockeyeDecoder {
    fn name(&self) -> &'static str {
        self.label
    }

    fn batch(&mut self, mut visit: impl FnMut(&[u8])) {
        for read in self.wire.chunks(self.chunk) {
            self.decoder.extend(&mut self.buf, read);
            while let Some(frame) = self.decoder.decode(&mut self.buf).expect("valid frames") {
                assert!(frame.header.fin && frame.header.opcode == OpCode::Binary);
                visit(&frame.payload);
            }
        }
    }
}

/// The whole connection: `handle_bytes` with reads of `chunk` bytes, draining
/// `poll_event` (and `poll_transmit`, per the drive-loop contract) after each.
pub struct SockeyeConnection {
    wire: Arc<[u8]>,
    chunk: usize,
    conn: Connection,
    label: &'static str,
}

impl SockeyeConnection {
    /// A server connection fed `wire` in reads of `chunk` bytes.
    pub fn new(wire: Arc<[u8]>, chunk: usize, label: &'static str) -> Self {
        let mut config = Config::default();
        config.max_frame_bytes = MAX_BYTES as u64;
        config.max_message_bytes = MAX_BYTES;
        config.ping_interval = None;
        SockeyeConnection {
            wire,
            chunk: chunk.max(1),
            conn: Connection::server(config, Instant::ZERO),
            label,
        }
    }
}

impl DecodeCase for SockeyeConnection {
    fn name(&self) -> &'static str {
        self.label
    }

    fn batch(&mut self, mut visit: impl FnMut(&[u8])) {
        for read in self.wire.chunks(self.chunk) {
            self.conn.handle_bytes(Instant::ZERO, read);
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Message(Message::Binary(payload)) => visit(&payload),
                    other => panic!("unexpected event {other:?}"),
                }
            }
            assert!(self.conn.poll_transmit().is_none(), "unexpected output");
        }
    }
}

/// tungstenite's blocking `WebSocket::read` over the in-memory stream.
pub struct Tungstenite {
    ws: tungstenite::WebSocket<MemStream>,
    count: usize,
}

impl Tungstenite {
    /// A server socket reading `count` frames per batch from `wire`.
    pub fn new(wire: Arc<[u8]>, count: usize) -> Self {
        use tungstenite::protocol::{Role, WebSocketConfig};
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_BYTES))
            .max_frame_size(Some(MAX_BYTES));
        let stream = MemStream::new(wire, 1 << 10);
        Tungstenite {
            ws: tungstenite::WebSocket::from_raw_socket(stream, Role::Server, Some(config)),
            count,
        }
    }
}

impl DecodeCase for Tungstenite {
    fn name(&self) -> &'static str {
        "tungstenite read"
    }

    fn batch(&mut self, mut visit: impl FnMut(&[u8])) {
        for _ in 0..self.count {
            match self.ws.read().expect("valid frames") {
                tungstenite::Message::Binary(payload) => visit(&payload),
                other => panic!("unexpected message {other:?}"),
            }
        }
    }
}

/// fastwebsockets' `read_frame`, polled once per frame (the stream never waits).
pub struct FastWebSockets {
    ws: fastwebsockets::WebSocket<MemStream>,
    count: usize,
}

impl FastWebSockets {
    /// A server socket reading `count` frames per batch from `wire`.
    pub fn new(wire: Arc<[u8]>, count: usize) -> Self {
        let stream = MemStream::new(wire, 1 << 10);
        let mut ws =
            fastwebsockets::WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
        ws.set_auto_close(false);
        ws.set_auto_pong(false);
        ws.set_max_message_size(MAX_BYTES);
        FastWebSockets { ws, count }
    }
}

impl DecodeCase for FastWebSockets {
    fn name(&self) -> &'static str {
        "fastwebsockets read_frame"
    }

    fn batch(&mut self, mut visit: impl FnMut(&[u8])) {
        for _ in 0..self.count {
            let frame = block_on(self.ws.read_frame()).expect("valid frames");
            assert!(frame.fin && frame.opcode == fastwebsockets::OpCode::Binary);
            visit(&frame.payload);
        }
    }
}

/// The floor: one `memcpy` of the wire bytes into a preallocated buffer.
pub struct PlainCopy {
    wire: Arc<[u8]>,
    dst: Vec<u8>,
}

impl PlainCopy {
    /// Copies `wire` per batch.
    pub fn new(wire: Arc<[u8]>) -> Self {
        PlainCopy {
            dst: vec![0; wire.len()],
            wire,
        }
    }
}

impl DecodeCase for PlainCopy {
    fn name(&self) -> &'static str {
        "plain copy (memcpy wire)"
    }

    fn batch(&mut self, mut visit: impl FnMut(&[u8])) {
        self.dst.copy_from_slice(&self.wire);
        visit(&self.dst);
    }
}
