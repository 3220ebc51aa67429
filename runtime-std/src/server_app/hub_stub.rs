//! TEMPORARY stand-in for `sockeye_core::hub` (branch s6-hub) with the agreed API, so the
//! server can be built and tested before the hub lands. Deleted at the merge.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery { AtMostOnce, Reliable }
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target { User(UserId), Room(String), Everyone }
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal { TooManyConnections, TooManyForUser }
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self { Refusal::TooManyConnections => "too many connections", Refusal::TooManyForUser => "too many connections for this user" })
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubError { NotConnected, NotAMember }
impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self { HubError::NotConnected => "not connected", HubError::NotAMember => "not a member of the room" })
    }
}
#[derive(Clone, Debug)]
pub struct Outbound { pub to: ConnId, pub message: OutMessage }
#[derive(Clone, Debug)]
pub enum OutMessage { Message { from: Option<UserId>, room: Option<String>, payload: Bytes }, Presence { room: String, user: UserId, joined: bool } }
#[derive(Clone, Copy, Debug, Default)]
pub struct PushReceipt { pub connections: usize, pub mailboxed: usize }
#[derive(Debug)]
pub struct MailDeadLetter;
#[derive(Clone, Copy, Debug, Default)]
pub struct HubStats { pub users: usize, pub rooms: usize, pub mailboxed: usize, pub dead_letters: usize }
#[derive(Clone, Debug)]
pub struct HubConfig { pub max_connections: usize, pub max_connections_per_user: usize, pub mailbox_max_messages: usize, pub mailbox_max_age: Duration }
impl Default for HubConfig {
    fn default() -> Self { HubConfig { max_connections: 10_000, max_connections_per_user: 8, mailbox_max_messages: 100, mailbox_max_age: Duration::from_secs(3600) } }
}

pub struct Hub {
    config: HubConfig,
    conns: BTreeMap<ConnId, (UserId, BTreeSet<String>)>,
    rooms: BTreeMap<String, BTreeSet<ConnId>>,
    mail: BTreeMap<UserId, VecDeque<Bytes>>,
    out: VecDeque<Outbound>,
    dead: usize,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub { Hub { config, conns: BTreeMap::new(), rooms: BTreeMap::new(), mail: BTreeMap::new(), out: VecDeque::new(), dead: 0 } }
    fn user_conns(&self, user: &UserId) -> Vec<ConnId> { self.conns.iter().filter(|(_, (u, _))| u == user).map(|(c, _)| *c).collect() }
    pub fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        if self.conns.len() >= self.config.max_connections { return Err(Refusal::TooManyConnections) }
        if self.user_conns(user).len() >= self.config.max_connections_per_user { return Err(Refusal::TooManyForUser) }
        Ok(())
    }
    pub fn connect(&mut self, _now: Instant, id: ConnId, user: UserId, _d: Delivery) -> Result<(), Refusal> {
        self.admit(&user)?;
        self.conns.insert(id, (user.clone(), BTreeSet::new()));
        if let Some(mail) = self.mail.remove(&user) {
            for payload in mail { self.out.push_back(Outbound { to: id, message: OutMessage::Message { from: None, room: None, payload } }) }
        }
        Ok(())
    }
    pub fn disconnect(&mut self, _now: Instant, id: ConnId) {
        if let Some((_, rooms)) = self.conns.get(&id).cloned() { for r in rooms { let _ = self.leave(id, &r); } }
        self.conns.remove(&id);
    }
    fn members_conns(&self, room: &str) -> Vec<ConnId> { self.rooms.get(room).map(|s| s.iter().copied().collect()).unwrap_or_default() }
    pub fn join(&mut self, id: ConnId, room: &str) -> Result<(), HubError> {
        let user = self.conns.get(&id).ok_or(HubError::NotConnected)?.0.clone();
        for c in self.members_conns(room) { self.out.push_back(Outbound { to: c, message: OutMessage::Presence { room: room.into(), user: user.clone(), joined: true } }) }
        self.rooms.entry(room.into()).or_default().insert(id);
        self.conns.get_mut(&id).unwrap().1.insert(room.into());
        Ok(())
    }
    pub fn leave(&mut self, id: ConnId, room: &str) -> Result<(), HubError> {
        let user = self.conns.get(&id).ok_or(HubError::NotConnected)?.0.clone();
        let set = self.rooms.get_mut(room).ok_or(HubError::NotAMember)?;
        if !set.remove(&id) { return Err(HubError::NotAMember) }
        if set.is_empty() { self.rooms.remove(room); }
        self.conns.get_mut(&id).unwrap().1.remove(room);
        for c in self.members_conns(room) { self.out.push_back(Outbound { to: c, message: OutMessage::Presence { room: room.into(), user: user.clone(), joined: false } }) }
        Ok(())
    }
    pub fn publish(&mut self, _now: Instant, id: ConnId, room: &str, payload: Bytes) -> Result<usize, HubError> {
        let user = self.conns.get(&id).ok_or(HubError::NotConnected)?.0.clone();
        if !self.rooms.get(room).is_some_and(|s| s.contains(&id)) { return Err(HubError::NotAMember) }
        let members = self.members_conns(room);
        for c in &members { self.out.push_back(Outbound { to: *c, message: OutMessage::Message { from: Some(user.clone()), room: Some(room.into()), payload: payload.clone() } }) }
        Ok(members.len())
    }
    pub fn send_to_user(&mut self, _now: Instant, id: ConnId, to: &UserId, payload: Bytes) -> Result<PushReceipt, HubError> {
        let user = self.conns.get(&id).ok_or(HubError::NotConnected)?.0.clone();
        Ok(self.deliver_user(Some(user), to, payload))
    }
    fn deliver_user(&mut self, from: Option<UserId>, to: &UserId, payload: Bytes) -> PushReceipt {
        let conns = self.user_conns(to);
        if conns.is_empty() {
            let mail = self.mail.entry(to.clone()).or_default();
            mail.push_back(payload);
            if mail.len() > self.config.mailbox_max_messages { mail.pop_front(); self.dead += 1; }
            return PushReceipt { connections: 0, mailboxed: 1 };
        }
        for c in &conns { self.out.push_back(Outbound { to: *c, message: OutMessage::Message { from: from.clone(), room: None, payload: payload.clone() } }) }
        PushReceipt { connections: conns.len(), mailboxed: 0 }
    }
    pub fn push(&mut self, _now: Instant, target: Target, payload: Bytes) -> PushReceipt {
        let conns = match target {
            Target::User(u) => return self.deliver_user(None, &u, payload),
            Target::Room(r) => self.members_conns(&r).into_iter().map(|c| (c, Some(r.clone()))).collect::<Vec<_>>(),
            Target::Everyone => self.conns.keys().map(|c| (*c, None)).collect(),
        };
        for (c, room) in &conns { self.out.push_back(Outbound { to: *c, message: OutMessage::Message { from: None, room: room.clone(), payload: payload.clone() } }) }
        PushReceipt { connections: conns.len(), mailboxed: 0 }
    }
    pub fn members(&self, room: &str) -> Vec<UserId> {
        let mut users: Vec<UserId> = self.members_conns(room).iter().filter_map(|c| self.conns.get(c).map(|(u, _)| u.clone())).collect();
        users.sort(); users.dedup(); users
    }
    pub fn poll_outbound(&mut self) -> Option<Outbound> { self.out.pop_front() }
    pub fn poll_dead_letter(&mut self) -> Option<MailDeadLetter> { None }
    pub fn handle_timeout(&mut self, _now: Instant) {}
    pub fn poll_timeout(&self) -> Option<Instant> { None }
    pub fn stats(&self) -> HubStats {
        let users: BTreeSet<_> = self.conns.values().map(|(u, _)| u).collect();
        HubStats { users: users.len(), rooms: self.rooms.len(), mailboxed: self.mail.values().map(|m| m.len()).sum(), dead_letters: self.dead }
    }
}
