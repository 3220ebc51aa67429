//! Many plain-mode WebSocket members of the `sockeye` server on one `async-io` thread,
//! and pushes through its `POST /api/push`: what the fan-out benchmarks share. A member
//! counts every push it receives by the push's number (its `data`), so a benchmark can
//! tell when the last member got push `k`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::ws_frames::{client_frame, client_text_frame, head_end, server_frames, upgrade_request};

/// What a group of members saw: for each push number, how many got it and when the last
/// did.
#[derive(Debug, Default)]
pub struct Seen {
    got: Vec<usize>,
    last: Vec<Option<Instant>>,
    /// Members whose connection ended, by the close code the server sent (`None`: it
    /// ended without a close frame).
    closed: BTreeMap<Option<u16>, usize>,
}

impl Seen {
    /// Room for pushes numbered `0..pushes` (others are ignored), shared by members.
    pub fn shared(pushes: usize) -> Rc<RefCell<Seen>> {
        Rc::new(RefCell::new(Seen {
            got: vec![0; pushes],
            last: vec![None; pushes],
            closed: BTreeMap::new(),
        }))
    }

    /// How many members got push `k`.
    pub fn got(&self, k: usize) -> usize {
        self.got.get(k).copied().unwrap_or(0)
    }

    /// When the last member that got push `k` got it.
    pub fn last(&self, k: usize) -> Option<Instant> {
        self.last.get(k).copied().flatten()
    }

    /// How many members' connections ended, by close code, as `code: count` pairs
    /// (`none` for an end without a close frame); empty while all are open.
    pub fn closed(&self) -> String {
        let pairs: Vec<String> = self
            .closed
            .iter()
            .map(|(code, n)| match code {
                Some(code) => format!("{code}: {n}"),
                None => format!("none: {n}"),
            })
            .collect();
        pairs.join(", ")
    }

    fn record(&mut self, k: usize, at: Instant) {
        if let Some(count) = self.got.get_mut(k) {
            *count += 1;
            self.last[k] = Some(at);
        }
    }
}

/// The push number in a message, if `payload` is one (`{"type":"message",…"data":N}`).
pub fn push_number(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let at = text.find("\"data\":")? + 7;
    text[at..].trim_end_matches('}').parse().ok()
}

/// One member: connects as `user`, joins `room` if given, then counts every push it
/// receives in `seen` (and answers pings, so that a long setup does not get it closed).
/// `ready` goes up by one when it has joined (without a room: when the upgrade was
/// answered). Returns when the connection ends, counted in `seen` with the close code.
pub async fn member(
    addr: SocketAddr,
    user: String,
    room: Option<String>,
    seen: Rc<RefCell<Seen>>,
    ready: Rc<Cell<usize>>,
) {
    let code = connection(addr, &user, room, &seen, &ready).await;
    *seen.borrow_mut().closed.entry(code).or_default() += 1;
}

/// [`member`]'s connection until it ends; the close code the server sent, if any.
async fn connection(
    addr: SocketAddr,
    user: &str,
    room: Option<String>,
    seen: &RefCell<Seen>,
    ready: &Cell<usize>,
) -> Option<u16> {
    let mut s = Async::<TcpStream>::connect(addr).await.ok()?;
    s.write_all(upgrade_request(&format!("/ws?user={user}")).as_bytes())
        .await
        .ok()?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut head_done = false;
    let mut code = None;
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return code;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = head_end(&buf) else {
                continue;
            };
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "upgrade of {user} refused: {}",
                String::from_utf8_lossy(&buf[..end])
            );
            buf.drain(..end);
            head_done = true;
            match &room {
                // A client sends nothing more before the server's answer (RFC 6455 §4.1).
                Some(room) => {
                    let join = format!(r#"{{"type":"join","room":"{room}"}}"#);
                    s.write_all(&client_text_frame(join.as_bytes()))
                        .await
                        .ok()?;
                }
                None => ready.set(ready.get() + 1),
            }
        }
        let now = Instant::now();
        let mut pongs = Vec::new();
        let used = server_frames(&buf, |op, payload| match op {
            0x1 if payload.starts_with(br#"{"type":"joined""#) => ready.set(ready.get() + 1),
            0x1 => {
                if let Some(k) = push_number(payload) {
                    seen.borrow_mut().record(k, now);
                }
            }
            0x8 if payload.len() >= 2 => code = Some(u16::from_be_bytes([payload[0], payload[1]])),
            // RFC 6455 §5.5.2: a Ping is answered with a Pong of the same payload.
            0x9 => pongs.extend_from_slice(&client_frame(0xA, payload)),
            _ => {}
        });
        buf.drain(..used);
        if !pongs.is_empty() {
            s.write_all(&pongs).await.ok()?;
        }
    }
}

/// Spawns `count` members of `room` on `ex` (users `{prefix}{i}`), a few hundred
/// connecting at a time, and returns once all of them have joined.
pub async fn open_room(
    ex: &LocalExecutor<'_>,
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    room: &str,
    seen: &Rc<RefCell<Seen>>,
) {
    let joined = Rc::new(Cell::new(0usize));
    for i in 0..count {
        ex.spawn(member(
            addr,
            format!("{prefix}{i}"),
            Some(room.to_string()),
            Rc::clone(seen),
            Rc::clone(&joined),
        ))
        .detach();
        if i % 256 == 255 {
            // Let the connections in flight finish before opening more.
            while joined.get() + 512 < i {
                Timer::after(Duration::from_millis(1)).await;
            }
        }
    }
    while joined.get() < count {
        Timer::after(Duration::from_millis(5)).await;
    }
}

/// Waits until `count` members in `seen` got push `k`, or `limit` passed; whether they
/// did.
pub async fn delivered(seen: &RefCell<Seen>, k: usize, count: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while seen.borrow().got(k) < count {
        if Instant::now() >= deadline {
            return false;
        }
        Timer::after(Duration::from_micros(200)).await;
    }
    true
}

/// The body of a push of number `k` to `to` (`"room":"big"`, `"user":"u1"`: a JSON key
/// and value without the braces).
pub fn push_body(to: &str, k: usize) -> String {
    format!(r#"{{{to},"data":{k}}}"#)
}

/// The body of a batch of pushes `from..to` to `target`, as [`push_body`] writes each.
pub fn batch_body(target: &str, from: usize, to: usize) -> String {
    let pushes: Vec<String> = (from..to).map(|k| push_body(target, k)).collect();
    format!("[{}]", pushes.join(","))
}

/// `POST /api/push` of `body` on a fresh connection; panics unless it is answered 202.
/// Returns when the request started.
pub fn post(addr: SocketAddr, body: &str) -> Instant {
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect for a push");
    let _ = s.set_nodelay(true);
    s.write_all(request.as_bytes()).expect("push");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 202"),
        "push refused: {}",
        String::from_utf8_lossy(&answer)
    );
    started
}

/// [`post`] on a thread of its own, so that the members' thread keeps reading; the
/// handle answers when the request started.
pub fn spawn_post(addr: SocketAddr, body: String) -> JoinHandle<Instant> {
    std::thread::spawn(move || post(addr, &body))
}

/// The median of `values` (the upper one of an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_numbers_are_read_from_messages_only() {
        assert_eq!(
            push_number(br#"{"type":"message","room":"big","from":"api","data":17}"#),
            Some(17)
        );
        assert_eq!(push_number(br#"{"type":"message","data":3}"#), Some(3));
        assert_eq!(push_number(br#"{"type":"joined","data":3}"#), None);
        assert_eq!(
            batch_body(r#""room":"big""#, 1, 3),
            r#"[{"room":"big","data":1},{"room":"big","data":2}]"#
        );
        let seen = Seen::shared(2);
        seen.borrow_mut().record(1, Instant::now());
        seen.borrow_mut().record(5, Instant::now());
        assert_eq!((seen.borrow().got(0), seen.borrow().got(1)), (0, 1));
        assert!(seen.borrow().last(1).is_some() && seen.borrow().last(5).is_none());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
