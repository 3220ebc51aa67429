//! What every peer was promised and what it got, checked as it happens.
//!
//! Every message the simulation sends carries `"data":"SENDER:N"` (optionally padded),
//! `N` counting up per sender. A receiver must see each sender's numbers strictly
//! increasing (in order, never twice; a plain-mode receiver's mail is delivered at
//! least once across a server crash, so its order restarts at one). A promise, a 202 for a push to a user or the
//! server's ACK of a reliable client's direct message, must end delivered to that user
//! or reported as a dead letter ([`crate::Action::DeadLetter`]). So must a reliable room
//! message the server acknowledged, to every reliable member whose join was acknowledged
//! before its sender sent it: members cut off at the time included (their session keeps
//! its place in the room). Exempt are receivers whose session the server evicted from
//! its rooms as a slow consumer, and those whose session was lost (its window came back
//! as dead letters; what was published after that reached no session).

use std::collections::{HashMap, HashSet};

/// One message, as (receiver, sender, number).
pub(crate) type Id = (String, String, u64);

/// The record of deliveries and promises.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The last number each receiver saw from each sender, and the crash count then.
    last: HashMap<(String, String), (u64, u64)>,
    /// Server crashes so far: a plain receiver's mail is delivered at least once across
    /// one, so its order restarts there.
    crashes: u64,
    delivered: HashSet<Id>,
    dead: HashSet<Id>,
    promised: Vec<Id>,
    /// Room messages promised to members.
    room_promised: Vec<Id>,
    /// Counts events, to order a join's acknowledgement before a room message's send.
    clock: u64,
    /// Reliable (user, room) memberships whose join was acknowledged, and when.
    members: HashMap<(String, String), u64>,
    /// Users whose session the server evicted from its rooms (a full window).
    pub(crate) evicted: HashSet<String>,
    /// Users of plain mode: at most once by design, so never promised anything.
    pub(crate) plain: HashSet<String>,
    /// Deliveries seen, direct or room.
    pub(crate) deliveries: u64,
    /// Dead letters reported by the server.
    pub(crate) dead_letters: u64,
}

/// The sender and number in a `data` value the simulation wrote.
fn tag(data: &str) -> Option<(String, u64)> {
    let mut parts = data.split(':');
    let sender = parts.next()?.to_string();
    let n = parts.next()?.parse().ok()?;
    Some((sender, n))
}

/// The `data` tag of a server message text, if it is a message the simulation sent.
fn message_tag(text: &[u8]) -> Result<Option<(String, u64)>, String> {
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| format!("the server sent text that is not JSON ({e}): {text:?}"))?;
    if value["type"] != "message" {
        return Ok(None);
    }
    match value["data"].as_str().and_then(tag) {
        Some(tag) => Ok(Some(tag)),
        None => Err(format!(
            "a message with data the simulation never sent: {value}"
        )),
    }
}

impl Ledger {
    /// `receiver` got server text `text`.
    pub(crate) fn on_text(&mut self, receiver: &str, text: &[u8]) -> Result<(), String> {
        let Some((sender, n)) = message_tag(text)? else {
            return Ok(());
        };
        self.deliveries += 1;
        let crashes = self.crashes;
        let plain = self.plain.contains(receiver);
        let (last, seen_at) = self
            .last
            .entry((receiver.to_string(), sender.clone()))
            .or_insert((0, crashes));
        if plain && *seen_at != crashes {
            *last = 0;
        }
        *seen_at = crashes;
        if n <= *last {
            return Err(format!(
                "{receiver} got {sender}:{n} after {sender}:{last}: {}",
                if n == *last { "twice" } else { "out of order" }
            ));
        }
        *last = n;
        self.delivered.insert((receiver.to_string(), sender, n));
        Ok(())
    }

    /// The server reported a dead letter for `user`.
    pub(crate) fn on_dead_letter(&mut self, user: &str, message: &[u8]) -> Result<(), String> {
        self.dead_letters += 1;
        if let Some((sender, n)) = message_tag(message)? {
            self.dead.insert((user.to_string(), sender, n));
        }
        Ok(())
    }

    /// The server promised `sender:n` to `receiver` (unless it is a plain-mode user).
    pub(crate) fn promise(&mut self, receiver: &str, sender: &str, n: u64) {
        if self.plain.contains(receiver) {
            return;
        }
        self.promised
            .push((receiver.to_string(), sender.to_string(), n));
    }

    /// Promises neither delivered nor reported yet.
    pub(crate) fn open_promises(&self) -> impl Iterator<Item = &Id> {
        self.promised
            .iter()
            .chain(&self.room_promised)
            .filter(|id| !self.delivered.contains(*id) && !self.dead.contains(*id))
    }

    /// The next value of the event clock.
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The server acknowledged `user`'s join of `room`: it is a member from here on.
    pub(crate) fn joined(&mut self, user: &str, room: &str) {
        let at = self.tick();
        self.members
            .entry((user.to_string(), room.to_string()))
            .or_insert(at);
    }

    /// `user` is in a new session, or lost its old one: no membership carries over, and
    /// room messages promised to the lost session and not delivered may have reached no
    /// session at all (published after it expired).
    pub(crate) fn session_ended(&mut self, user: &str, lost: bool) {
        self.members.retain(|(u, _), _| u != user);
        if lost {
            let (delivered, dead) = (&self.delivered, &self.dead);
            self.room_promised
                .retain(|id| id.0 != user || delivered.contains(id) || dead.contains(id));
        }
    }

    /// The server acknowledged `sender`'s message `n` to `room`, sent at `sent` on the
    /// event clock: promised to every member that joined before.
    pub(crate) fn room_acked(&mut self, sender: &str, room: &str, n: u64, sent: u64) {
        for ((user, r), &at) in &self.members {
            if r == room && at < sent && !self.evicted.contains(user) && !self.plain.contains(user)
            {
                self.room_promised
                    .push((user.clone(), sender.to_string(), n));
            }
        }
    }

    /// The server crashed.
    pub(crate) fn on_crash(&mut self) {
        self.crashes += 1;
    }

    /// Promises made.
    pub(crate) fn promises(&self) -> usize {
        self.promised.len() + self.room_promised.len()
    }
}
