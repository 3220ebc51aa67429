//! A fuzz body over the layer: arbitrary operation sequences, checked for panics and for
//! the drive contract's promises.

use std::time::Duration;

use sockeye_core::hub::ConnId;
use sockeye_core::journal::replay;
use sockeye_core::{Instant, SeededEntropy};

use super::disk::Disk;
use crate::{Action, Config, Server};

/// Canned requests, so that inputs reach past the HTTP head.
const REQUESTS: &[&[u8]] = &[
    b"GET /ws?user=u1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /ws?user=u2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
      Sec-WebSocket-Protocol: sockeye.v1\r\n\r\n",
    b"POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n\
      {\"user\":\"u1\",\"data\":\"hello\"}\n",
    b"POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\n\
      {\"room\":\"a\",\"data\":[1,2,3]}\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// Commands a client sends in frames.
const COMMANDS: &[&str] = &[
    r#"{"type":"join","room":"a"}"#,
    r#"{"type":"leave","room":"a"}"#,
    r#"{"type":"message","room":"a","data":"hi"}"#,
    r#"{"type":"message","to":"u1","data":{"n":1}}"#,
    r#"{"type":"message","to":"u2","data":"x"}"#,
    r#"{"type":"nope"}"#,
];

/// A client's masked frame (`opcode`, `payload` under 126 bytes).
fn masked(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut frame = vec![0x80 | opcode, 0x80 | len as u8];
    frame.extend_from_slice(&key);
    frame.extend(
        payload[..len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    frame
}

struct Harness {
    server: Server,
    config: Config,
    disk: Disk,
    now: Instant,
    conns: Vec<ConnId>,
    rng: SeededEntropy,
}

impl Harness {
    fn actions(&mut self) {
        while let Some(action) = self.server.poll_action() {
            match action {
                Action::Append(bytes) => self.disk.append(&bytes),
                Action::Commit => self
                    .disk
                    .begin_commit()
                    .expect("at most one commit outstanding"),
                Action::Close(conn) => {
                    while self.server.poll_transmit(conn).is_some() {}
                    self.server.handle_closed(self.now, conn);
                    self.conns.retain(|c| *c != conn);
                }
                _ => {}
            }
        }
        let bound = self.config.max_queue_bytes + self.config.max_message_bytes + 1024;
        for &conn in &self.conns {
            assert!(
                self.server.queued_bytes(conn) <= bound,
                "queue over its limit"
            );
        }
    }
}

/// Feeds the layer an arbitrary sequence of operations: connections, canned and raw
/// bytes, frames with commands, end of stream, socket closes, clock steps, commit
/// outcomes, shutdown, crashes with a restart from what the disk kept. Asserts that
/// nothing panics, at most one commit is outstanding, queues stay bounded, the journal
/// always replays, and after `handle_timeout(now)` the next deadline is after `now`.
pub fn server_ops(data: &[u8]) {
    let config = Config {
        journal: data.first().is_some_and(|b| b & 1 == 1),
        max_queue_bytes: 4096,
        max_message_bytes: 1024,
        max_frame_bytes: 1024,
        mailbox_size: 4,
        max_connections: 6,
        ping_interval: Duration::from_secs(2),
        pong_timeout: Duration::from_secs(1),
        session_expiry: Duration::from_secs(5),
        mailbox_age: Duration::from_secs(10),
        ..Config::default()
    };
    let now = Instant::from_millis(1_000);
    let mut h = Harness {
        server: Server::new(
            config.clone(),
            now,
            1_700_000_000_000,
            Box::new(SeededEntropy::new(7)),
            None,
        ),
        config,
        disk: Disk::default(),
        now,
        conns: Vec::new(),
        rng: SeededEntropy::new(11),
    };
    let mut input = data.iter().copied().skip(1);
    while let Some(op) = input.next() {
        let arg = input.next().unwrap_or(0);
        // The low four bits pick a connection, the high four a request or command.
        let pick = |conns: &[ConnId]| conns.get((arg as usize % 16) % conns.len().max(1)).copied();
        match op % 12 {
            0 if h.conns.len() < 16 => {
                let conn = h.server.handle_accept(h.now);
                h.conns.push(conn);
            }
            1 => {
                if let Some(conn) = pick(&h.conns) {
                    let request = REQUESTS[(arg as usize / 16) % REQUESTS.len()];
                    h.server.handle_bytes(h.now, conn, request);
                }
            }
            2 => {
                let len = input.next().unwrap_or(0) as usize;
                let bytes: Vec<u8> = input.by_ref().take(len).collect();
                if let Some(conn) = pick(&h.conns) {
                    h.server.handle_bytes(h.now, conn, &bytes);
                }
            }
            3 => {
                if let Some(conn) = pick(&h.conns) {
                    h.server.handle_eof(h.now, conn);
                }
            }
            4 => {
                if let Some(conn) = pick(&h.conns) {
                    h.server.handle_closed(h.now, conn);
                    h.conns.retain(|c| *c != conn);
                }
            }
            5 => {
                h.now = h.now + Duration::from_millis(u64::from(arg) * 100);
                if h.server.poll_timeout().is_some_and(|at| at <= h.now) {
                    h.server.handle_timeout(h.now);
                    let next = h.server.poll_timeout();
                    assert!(next.is_none_or(|at| at > h.now), "a deadline left due");
                }
            }
            6 | 7 if h.disk.is_committing() => {
                let ok = op % 12 == 6;
                h.disk.finish_commit(ok);
                let result = if ok { Ok(()) } else { Err("fuzz".to_string()) };
                h.server.handle_committed(h.now, result);
            }
            8 => {
                if let Some(conn) = pick(&h.conns) {
                    while h.server.poll_transmit(conn).is_some() {}
                }
            }
            9 => h.server.handle_shutdown(h.now),
            10 => {
                let file = h.disk.crash(&mut h.rng);
                let replayed = replay(&file);
                assert!(replayed.error.is_none(), "the journal does not replay");
                h.disk = Disk::from_file(file[..replayed.valid_len].to_vec());
                h.conns.clear();
                h.server = Server::new(
                    h.config.clone(),
                    h.now,
                    1_700_000_000_000,
                    Box::new(SeededEntropy::new(u64::from(arg))),
                    Some(&replayed.state),
                );
            }
            11 => {
                if let Some(conn) = pick(&h.conns) {
                    let command = COMMANDS[(arg as usize / 16) % COMMANDS.len()];
                    let frame = masked(0x1, command.as_bytes(), [arg, 1, 2, 3]);
                    h.server.handle_bytes(h.now, conn, &frame);
                }
            }
            _ => {}
        }
        h.actions();
    }
}
