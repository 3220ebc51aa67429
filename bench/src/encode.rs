//! Server-side encoding of unmasked binary frames into an in-memory socket, one case per
//! implementation. Every case writes one batch (the same `count` messages) per call.

use std::io::Write;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sockeye_core::frame::{encode_frame, FrameHeader, OpCode};
use sockeye_core::{Config, Connection, Instant, Message, MessageKind};

use crate::stream::{block_on, MemStream};

/// One implementation encoding a batch of messages.
pub trait EncodeCase {
    /// Row label.
    fn name(&self) -> &'static str;
    /// Encodes and writes one batch.
    fn batch(&mut self);
    /// The bytes written by the last batch (call after exactly one batch).
    fn into_output(self) -> Vec<u8>;
}

fn sink(wire_len: usize) -> MemStream {
    MemStream::new(Arc::from(&[][..]), wire_len)
}

/// The whole connection, as a runtime drives it: `send`, then write every
/// `poll_transmit` chunk to the socket.
pub struct SockeyeConnection {
    conn: Connection,
    payload: Bytes,
    count: usize,
    out: MemStream,
}

impl SockeyeConnection {
    /// Sends `count` copies of `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize) -> Self {
        let mut config = Config::default();
        config.ping_interval = None;
        SockeyeConnection {
            conn: Connection::server(config, Instant::ZERO),
            payload,
            count,
            out: sink(wire_len),
        }
    }
}

impl EncodeCase for SockeyeConnection {
    fn name(&self) -> &'static str {
        "sockeye Connection send+poll_transmit"
    }

    fn batch(&mut self) {
        self.out.clear_output();
        for _ in 0..self.count {
            let message = Message::Binary(self.payload.clone());
            self.conn
                .send(Instant::ZERO, message)
                .expect("queue drained");
            while let Some(chunk) = self.conn.poll_transmit() {
                self.out.write_all(&chunk).expect("in-memory write");
            }
        }
    }

    fn into_output(self) -> Vec<u8> {
        self.out.output().to_vec()
    }
}

/// The whole connection with its borrowing calls: `send_slice` (the payload copied from
/// a slice next to its header; `send` with the `Bytes` above 8 KiB, which `send_slice`
/// would copy into a chunk of its own), then
/// `transmit_chunk` written to the socket and `advance_transmit`, until nothing is left.
pub struct SockeyeConnectionSlice {
    conn: Connection,
    payload: Bytes,
    count: usize,
    out: MemStream,
}

impl SockeyeConnectionSlice {
    /// Sends `count` copies of `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize) -> Self {
        let mut config = Config::default();
        config.ping_interval = None;
        SockeyeConnectionSlice {
            conn: Connection::server(config, Instant::ZERO),
            payload,
            count,
            out: sink(wire_len),
        }
    }
}

impl EncodeCase for SockeyeConnectionSlice {
    fn name(&self) -> &'static str {
        "sockeye send_slice+transmit_chunk"
    }

    fn batch(&mut self) {
        self.out.clear_output();
        let small = self.payload.len() <= 8 << 10;
        for _ in 0..self.count {
            let sent = if small {
                self.conn
                    .send_slice(Instant::ZERO, MessageKind::Binary, &self.payload)
            } else {
                let message = Message::Binary(self.payload.clone());
                self.conn.send(Instant::ZERO, message)
            };
            sent.expect("queue drained");
            loop {
                let chunk = self.conn.transmit_chunk();
                if chunk.is_empty() {
                    break;
                }
                let n = self.out.write(chunk).expect("in-memory write");
                self.conn.advance_transmit(n);
            }
        }
    }

    fn into_output(self) -> Vec<u8> {
        self.out.output().to_vec()
    }
}

/// The codec alone: `encode_frame` appends header and payload to a `BytesMut`.
pub struct SockeyeEncodeFrame {
    payload: Bytes,
    count: usize,
    out: BytesMut,
}

impl SockeyeEncodeFrame {
    /// Encodes `count` frames carrying `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize) -> Self {
        SockeyeEncodeFrame {
            payload,
            count,
            out: BytesMut::with_capacity(wire_len),
        }
    }
}

impl EncodeCase for SockeyeEncodeFrame {
    fn name(&self) -> &'static str {
        "sockeye encode_frame (codec)"
    }

    fn batch(&mut self) {
        self.out.clear();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: 0,
        };
        for _ in 0..self.count {
            encode_frame(header, &self.payload, &mut self.out);
        }
    }

    fn into_output(self) -> Vec<u8> {
        self.out.to_vec()
    }
}

/// tungstenite's `send` (write + flush per message), or `write` per message and one
/// `flush` per batch, letting its 128 KiB write buffer coalesce.
pub struct Tungstenite {
    ws: tungstenite::WebSocket<MemStream>,
    payload: Bytes,
    count: usize,
    flush_each: bool,
}

impl Tungstenite {
    /// Writes `count` copies of `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize, flush_each: bool) -> Self {
        use tungstenite::protocol::Role;
        Tungstenite {
            ws: tungstenite::WebSocket::from_raw_socket(sink(wire_len), Role::Server, None),
            payload,
            count,
            flush_each,
        }
    }
}

impl EncodeCase for Tungstenite {
    fn name(&self) -> &'static str {
        if self.flush_each {
            "tungstenite send (flush each)"
        } else {
            "tungstenite write, flush per batch"
        }
    }

    fn batch(&mut self) {
        self.ws.get_mut().clear_output();
        for _ in 0..self.count {
            let message = tungstenite::Message::Binary(self.payload.clone());
            if self.flush_each {
                self.ws.send(message).expect("in-memory write");
            } else {
                self.ws.write(message).expect("in-memory write");
            }
        }
        self.ws.flush().expect("in-memory write");
    }

    fn into_output(self) -> Vec<u8> {
        self.ws.get_ref().output().to_vec()
    }
}

/// fastwebsockets' `write_frame` with a borrowed payload (vectored writes above 1 KiB,
/// its default).
pub struct FastWebSockets {
    ws: fastwebsockets::WebSocket<MemStream>,
    payload: Bytes,
    count: usize,
}

impl FastWebSockets {
    /// Writes `count` frames carrying `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize) -> Self {
        let ws = fastwebsockets::WebSocket::after_handshake(
            sink(wire_len),
            fastwebsockets::Role::Server,
        );
        FastWebSockets { ws, payload, count }
    }
}

impl EncodeCase for FastWebSockets {
    fn name(&self) -> &'static str {
        "fastwebsockets write_frame"
    }

    fn batch(&mut self) {
        // The socket gives no access to its stream while in use, so the sink starts over
        // by itself when a batch would overflow it (the other cases clear it explicitly).
        for _ in 0..self.count {
            let payload = fastwebsockets::Payload::Borrowed(&self.payload);
            let frame = fastwebsockets::Frame::binary(payload);
            block_on(self.ws.write_frame(frame)).expect("in-memory write");
        }
    }

    fn into_output(self) -> Vec<u8> {
        self.ws.into_inner().output().to_vec()
    }
}

/// The floor: copy each payload into the socket, with no framing.
pub struct PlainCopy {
    payload: Bytes,
    count: usize,
    out: MemStream,
}

impl PlainCopy {
    /// Writes `count` copies of `payload` per batch.
    pub fn new(payload: Bytes, count: usize, wire_len: usize) -> Self {
        PlainCopy {
            payload,
            count,
            out: sink(wire_len),
        }
    }
}

impl EncodeCase for PlainCopy {
    fn name(&self) -> &'static str {
        "plain copy (payload into sink)"
    }

    fn batch(&mut self) {
        self.out.clear_output();
        for _ in 0..self.count {
            self.out.write_all(&self.payload).expect("in-memory write");
        }
    }

    fn into_output(self) -> Vec<u8> {
        self.out.output().to_vec()
    }
}
