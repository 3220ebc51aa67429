//! The server's simulated clients: reliable (`sockeye.v1`) and plain WebSocket peers,
//! and a backend that pushes over HTTP. Each drives the core's client state machines
//! over a [`Pipe`](super::net::Pipe), as a real client would over TCP.

use std::collections::HashMap;

use bytes::Bytes;
use sockeye_core::handshake::{ClientHandshake, ClientRequest};
use sockeye_core::session::SessionEvent;
use sockeye_core::{
    ClientSession, Config as WsConfig, Connection, Event, Instant, Message, SeededEntropy,
    SessionConfig,
};

use super::ledger::Ledger;
use super::net::Pipe;

/// The subprotocol of reliable mode.
const SUBPROTOCOL: &str = "sockeye.v1";

/// A peer's WebSocket: its handshake, then its connection.
enum Wire {
    Handshake(ClientHandshake),
    Open(Box<Connection>),
}

impl Wire {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Wire::Handshake(hs) => hs.poll_timeout(),
            Wire::Open(ws) => ws.poll_timeout(),
        }
    }
}

/// What a peer is sending to.
#[derive(Clone, Debug)]
pub(crate) enum To {
    User(String),
    Room(String),
}

impl To {
    /// The plain-mode command that sends `data` there.
    fn command(&self, data: &str) -> String {
        match self {
            To::User(user) => serde_json::json!({"type":"message","to":user,"data":data}),
            To::Room(room) => serde_json::json!({"type":"message","room":room,"data":data}),
        }
        .to_string()
    }
}

/// The `data` of message `n` from `sender`, padded to about `pad` bytes.
pub(crate) fn data(sender: &str, n: u64, pad: usize) -> String {
    let mut data = format!("{sender}:{n}");
    if pad > data.len() {
        data.push(':');
        data.extend(std::iter::repeat_n('x', pad - data.len()));
    }
    data
}

/// A reliable message waiting for its acknowledgement.
enum Sent {
    /// Message `n` to a user.
    User(String, u64),
    /// Message `n` to a room, sent at this tick of the ledger's clock.
    Room(String, u64, u64),
    /// A join of the room.
    Join(String),
}

/// A WebSocket client peer, plain or reliable.
pub(crate) struct Peer {
    pub(crate) user: String,
    pub(crate) reliable: bool,
    /// The reliable session (kept across connections); unused for plain peers.
    pub(crate) session: ClientSession,
    /// The pipe of the current connection.
    pub(crate) pipe: Option<u64>,
    wire: Option<Wire>,
    /// When to connect next, while disconnected.
    pub(crate) reconnect_at: Option<Instant>,
    /// The number of this peer's next message.
    pub(crate) next_n: u64,
    /// Reliable messages not yet acknowledged, by sequence number.
    sent: HashMap<u64, Sent>,
    /// Rooms it asks to join on each new connection (plain) or session (reliable).
    pub(crate) rooms: Vec<String>,
    /// A reliable peer's session has asked to join `rooms`: its room messages from now on
    /// follow the joins in the session's order, so none may be refused.
    member: bool,
    /// A join of this session was dead-lettered by the client's own session (too many
    /// cut tries): the server may never have seen it, so room messages sent before the
    /// peer learnt it may rightly be refused.
    join_lost: bool,
    /// Established or resumed sessions, connections made, handshakes refused.
    pub(crate) stats: (u64, u64, u64),
    ws_config: WsConfig,
    /// Print what it receives (the world's `SOCKEYE_SIM_TRACE`).
    pub(crate) trace: bool,
}

impl Peer {
    pub(crate) fn new(user: String, reliable: bool, now: Instant, rooms: Vec<String>) -> Peer {
        Peer {
            user,
            reliable,
            session: ClientSession::new(SessionConfig::default(), now),
            pipe: None,
            wire: None,
            reconnect_at: Some(now),
            next_n: 1,
            sent: HashMap::new(),
            rooms,
            member: false,
            join_lost: false,
            stats: (0, 0, 0),
            ws_config: WsConfig::default(),
            trace: false,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.wire, Some(Wire::Open(_)))
    }

    /// Starts a connection over `pipe` (just accepted by the server).
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        id: u64,
        pipe: &mut Pipe,
        rng: &mut SeededEntropy,
    ) {
        let resume = if self.reliable {
            self.session.resume_header_value()
        } else {
            None
        };
        let headers: Vec<(&str, &str)> = resume
            .as_deref()
            .map(|value| ("Sockeye-Resume", value))
            .into_iter()
            .collect();
        let path = format!("/ws?user={}", self.user);
        let protocols: &[&str] = if self.reliable { &[SUBPROTOCOL] } else { &[] };
        let request = ClientRequest {
            host: "sim",
            path: &path,
            protocols,
            origin: None,
            headers: &headers,
        };
        let mut hs = ClientHandshake::new(&self.ws_config, now, request, rng);
        if let Some(head) = hs.poll_transmit() {
            pipe.write_up(&head);
        }
        self.wire = Some(Wire::Handshake(hs));
        self.pipe = Some(id);
        self.reconnect_at = None;
        self.stats.1 += 1;
    }

    /// Bytes arrived from the server.
    pub(crate) fn feed(
        &mut self,
        now: Instant,
        bytes: &[u8],
        rng: &mut SeededEntropy,
    ) -> Result<(), String> {
        match self.wire.take() {
            Some(Wire::Handshake(mut hs)) => match hs.handle_bytes(now, bytes) {
                Ok(Some(response)) => {
                    let protocol = response.protocol().map(str::to_string);
                    let want = self.reliable.then_some(SUBPROTOCOL);
                    if protocol.as_deref() != want {
                        return Err(format!(
                            "{}: the server chose subprotocol {protocol:?}",
                            self.user
                        ));
                    }
                    let ws = response.into_connection(
                        now,
                        self.ws_config.clone(),
                        SeededEntropy::new(rng.next_u64()),
                    );
                    if self.reliable {
                        self.session.handle_connected(now);
                    }
                    self.wire = Some(Wire::Open(Box::new(ws)));
                }
                Ok(None) => self.wire = Some(Wire::Handshake(hs)),
                // Refused (503 at a limit, or the server went away): try again later.
                Err(_) => self.stats.2 += 1,
            },
            Some(Wire::Open(mut ws)) => {
                ws.handle_bytes(now, bytes);
                self.wire = Some(Wire::Open(ws));
            }
            None => {}
        }
        Ok(())
    }

    /// The server closed its side.
    pub(crate) fn feed_eof(&mut self, now: Instant) {
        match self.wire.take() {
            Some(Wire::Open(mut ws)) => {
                ws.handle_eof(now);
                self.wire = Some(Wire::Open(ws));
            }
            Some(Wire::Handshake(_)) => self.stats.2 += 1,
            None => {}
        }
    }

    /// Sends the next message to `to`, if the session has room. A plain peer's message
    /// is never promised; a reliable one's direct message is once acknowledged.
    pub(crate) fn send(&mut self, now: Instant, to: &To, pad: usize, ledger: &mut Ledger) -> bool {
        if let To::Room(room) = to {
            if self.reliable && !(self.member && self.rooms.contains(room)) {
                return false;
            }
        }
        let text = to.command(&data(&self.user, self.next_n, pad));
        if self.reliable {
            match self.session.send(now, Bytes::from(text), true) {
                Ok(seq) => {
                    let sent = match to {
                        To::User(receiver) => Sent::User(receiver.clone(), self.next_n),
                        To::Room(room) => Sent::Room(room.clone(), self.next_n, ledger.tick()),
                    };
                    self.sent.insert(seq.0, sent);
                }
                Err(_) => return false,
            }
        } else {
            let Some(Wire::Open(ws)) = &mut self.wire else {
                return false;
            };
            if ws.send(now, Message::Text(Bytes::from(text))).is_err() {
                return false;
            }
        }
        self.next_n += 1;
        true
    }

    /// Runs the peer's machines: events, envelopes, bytes to write, and hanging up.
    /// Returns whether the connection ended.
    pub(crate) fn pump(
        &mut self,
        now: Instant,
        pipe: Option<&mut Pipe>,
        ledger: &mut Ledger,
    ) -> Result<bool, String> {
        let mut ended = false;
        let mut out = Vec::new();
        let mut joined_now = false;
        match &mut self.wire {
            Some(Wire::Handshake(_)) => {}
            None => ended = self.pipe.is_some(),
            Some(Wire::Open(ws)) => {
                while let Some(event) = ws.poll_event() {
                    match event {
                        Event::Message(message) if self.reliable => {
                            self.session.handle_message(now, message.into_payload());
                        }
                        Event::Message(Message::Text(text)) => {
                            if self.trace {
                                eprintln!("{now:?} {} text {:?}", self.user, text);
                            }
                            if is_welcome(&text) {
                                joined_now = true;
                            }
                            ledger.on_text(&self.user, &text)?;
                        }
                        Event::Pong { rtt: Some(rtt), .. } if self.reliable => {
                            self.session.handle_rtt_sample(now, rtt);
                        }
                        _ => {}
                    }
                }
                if self.reliable {
                    while let Some(event) = self.session.poll_event() {
                        if self.trace {
                            eprintln!("{now:?} {} event {event:?}", self.user);
                        }
                        match event {
                            SessionEvent::Delivered { payload, .. } => {
                                if is_not_a_member(&payload) {
                                    if self.join_lost {
                                        continue;
                                    }
                                    // It joined on `Established`; only a lost membership
                                    // (a restart that forgot it) refuses its room message.
                                    return Err(format!(
                                        "{}: a reliable session lost its rooms",
                                        self.user
                                    ));
                                }
                                ledger.on_text(&self.user, &payload)?;
                            }
                            SessionEvent::Acked { seq } => {
                                // Cumulative: every direct message up to `seq` is promised.
                                let acked: Vec<u64> =
                                    self.sent.keys().copied().filter(|s| *s <= seq.0).collect();
                                for s in acked {
                                    match self.sent.remove(&s) {
                                        Some(Sent::User(receiver, n)) => {
                                            ledger.promise(&receiver, &self.user, n)
                                        }
                                        // A join the server may not have seen refuses it.
                                        Some(Sent::Room(room, n, at)) if !self.join_lost => {
                                            ledger.room_acked(&self.user, &room, n, at)
                                        }
                                        Some(Sent::Join(room)) => ledger.joined(&self.user, &room),
                                        _ => {}
                                    }
                                }
                            }
                            SessionEvent::DeadLetter { seq, payload, .. } => {
                                self.sent.remove(&seq.0);
                                if is_join(&payload) {
                                    self.member = false;
                                    self.join_lost = true;
                                }
                            }
                            SessionEvent::Established { .. } => {
                                ledger.session_ended(&self.user, false);
                                self.sent.retain(|_, s| !matches!(s, Sent::Join(_)));
                                self.stats.0 += 1;
                                joined_now = true;
                                self.member = true;
                                self.join_lost = false;
                            }
                            SessionEvent::SessionLost { .. } => {
                                ledger.session_ended(&self.user, true);
                                self.member = false;
                            }
                            SessionEvent::Resumed { .. } => self.stats.0 += 1,
                            SessionEvent::ProtocolViolation(e) => {
                                return Err(format!("{}: protocol violation: {e:?}", self.user))
                            }
                            _ => {}
                        }
                    }
                    while let Some(envelope) = self.session.poll_outgoing() {
                        let _ = ws.send(now, Message::Binary(envelope));
                    }
                    if let Some(code) = self.session.wants_disconnect() {
                        let _ = ws.close(now, code, "");
                    }
                }
                while let Some(bytes) = ws.poll_transmit() {
                    out.push(bytes);
                }
                ended = ws.wants_disconnect() || ws.is_closed();
            }
        }
        if joined_now {
            self.join_rooms(now);
            if let Some(Wire::Open(ws)) = &mut self.wire {
                while let Some(bytes) = ws.poll_transmit() {
                    out.push(bytes);
                }
            }
        }
        if let Some(pipe) = pipe {
            for bytes in out {
                pipe.write_up(&bytes);
            }
            if ended {
                pipe.up_eof = true;
                pipe.peer_gone = true;
            }
        }
        Ok(ended)
    }

    /// Asks to join its rooms (the answers are not messages).
    fn join_rooms(&mut self, now: Instant) {
        for room in self.rooms.clone() {
            let join = serde_json::json!({"type":"join","room":room}).to_string();
            if self.reliable {
                if let Ok(seq) = self.session.send(now, Bytes::from(join), true) {
                    self.sent.insert(seq.0, Sent::Join(room));
                }
            } else if let Some(Wire::Open(ws)) = &mut self.wire {
                let _ = ws.send(now, Message::Text(Bytes::from(join)));
            }
        }
    }

    /// The connection is gone (hung up, cut, or the server crashed): reconnect at `at`.
    pub(crate) fn disconnected(&mut self, now: Instant, at: Instant) {
        self.wire = None;
        self.pipe = None;
        if self.reliable {
            self.session.handle_disconnected(now);
        }
        self.reconnect_at = Some(at);
    }

    /// Its next deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let session = self.reliable.then(|| self.session.poll_timeout()).flatten();
        [
            self.wire.as_ref().and_then(Wire::deadline),
            session,
            self.reconnect_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires its due timers. Returns whether the handshake timed out.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.reliable && self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        match &mut self.wire {
            Some(Wire::Handshake(hs)) => hs.handle_timeout(now).is_err(),
            Some(Wire::Open(ws)) => {
                if ws.poll_timeout().is_some_and(|t| t <= now) {
                    ws.handle_timeout(now);
                }
                false
            }
            None => false,
        }
    }

    /// Messages it sent that are not yet acknowledged (reliable) or nothing (plain).
    pub(crate) fn unacked(&self) -> usize {
        if self.reliable {
            self.session.unacked_messages()
        } else {
            0
        }
    }
}

/// The answer to a room message from a connection that is not in the room.
fn is_not_a_member(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text)
        .is_ok_and(|v| v["type"] == "error" && v["reason"] == "not a member of the room")
}

fn is_welcome(text: &[u8]) -> bool {
    text.starts_with(br#"{"type":"welcome""#)
}

/// A backend pushing over HTTP, one push at a time.
#[derive(Debug, Default)]
pub(crate) struct Pusher {
    pub(crate) next_n: u64,
    /// The push in flight: its pipe, number, user target and the answer so far.
    pub(crate) in_flight: Option<(u64, u64, Option<String>, Vec<u8>)>,
    /// Answers: 202, 503 or 408, cut before an answer.
    pub(crate) stats: (u64, u64, u64),
}

impl Pusher {
    /// The request that pushes message `n` to `to`.
    pub(crate) fn request(&mut self, to: &To, pad: usize) -> (u64, Vec<u8>) {
        self.next_n += 1;
        let n = self.next_n;
        let data = data("push", n, pad);
        let body = match to {
            To::User(user) => serde_json::json!({"user":user,"data":data}),
            To::Room(room) => serde_json::json!({"room":room,"data":data}),
        }
        .to_string();
        let head = format!(
            "POST /api/push HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        (n, [head.into_bytes(), body.into_bytes()].concat())
    }

    /// The answer is whole (the server closed): a 202 for a user is a promise.
    pub(crate) fn finish(&mut self, ledger: &mut Ledger, cut: bool) -> Result<(), String> {
        let Some((_, n, user, answer)) = self.in_flight.take() else {
            return Ok(());
        };
        if cut && answer.is_empty() {
            self.stats.2 += 1;
            return Ok(());
        }
        if answer.starts_with(b"HTTP/1.1 202 ") {
            self.stats.0 += 1;
            if let Some(user) = user {
                ledger.promise(&user, "push", n);
            }
            Ok(())
        } else if answer.starts_with(b"HTTP/1.1 503 ") || answer.starts_with(b"HTTP/1.1 408 ") {
            // Refused (the journal failed), or the request was too slow to arrive.
            self.stats.1 += 1;
            Ok(())
        } else if cut {
            self.stats.2 += 1;
            Ok(())
        } else {
            Err(format!(
                "push {n} answered {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            ))
        }
    }
}

/// Whether `text` is a reliable peer's own `join` command (the payload of its dead
/// letter).
fn is_join(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text).is_ok_and(|v| v["type"] == "join")
}
