//! Many nodes as one service: the layer's half of the cluster backend (`--redis`).
//!
//! The layer decides, the runtime carries bytes. Through [`Action::Publish`],
//! [`Action::Subscribe`] and [`Action::Unsubscribe`] the layer says what to publish and
//! which channels it needs; the runtime reports back with [`Server::handle_published`]
//! (how many subscribers received it), [`Server::handle_subscribed`],
//! [`Server::handle_remote`] (a message on a subscribed channel), and
//! [`Server::handle_cluster_up`] / [`Server::handle_cluster_down`].
//!
//! ## Channels (each under [`ClusterConfig::prefix`])
//!
//! | channel | subscribed while | carries |
//! |---|---|---|
//! | `user:<id>` | the user has a connection on this node | pushes and direct messages to the user |
//! | `room:<name>` | the room has a member on this node | room messages, joins, leaves, presence sync |
//! | `all` | always | `{"everyone":true}` pushes |
//! | `nodes` | always | heartbeats, so presence of a node that died expires |
//!
//! One channel per user and per room keeps one sender's order at every receiver: the
//! runtime publishes on one connection in order, and Redis hands a channel's messages to
//! each subscriber in the order it received them.
//!
//! ## No loops, no doubles
//!
//! A node delivers what it publishes to its own connections at once, and ignores the
//! copy that comes back from its own subscription (every envelope names its origin
//! node). What a node receives it only delivers locally: nothing received is published
//! again.
//!
//! ## Presence across nodes
//!
//! A node announces on the room's channel when a user's first connection on it joins
//! (`join`) and their last one there leaves (`leave`). Each node keeps, for the rooms it
//! has members in, which other nodes hold which users, so a local member hears "joined"
//! once for a user's first connection anywhere and "left" for the last one anywhere. A
//! node that subscribes to a room (or resubscribes after Redis came back) asks the room
//! who is there (`sync`) and the other nodes answer (`here`). Nodes beat on `nodes`;
//! one not heard of for three beats is taken as dead and its users leave.
//!
//! ## Mailboxes
//!
//! A message to a user with no connection on this node is published, or stored in their
//! mailbox in Redis if no node received it, in one script (`cluster_mail.rs`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use core::time::Duration;
use sockeye_core::auth::UserId;
use sockeye_core::hub::{ConnId, HubChange, OutMessage, Target};
use sockeye_core::{Instant, SessionId};

use crate::cluster_confirm::Confirms;
use crate::cluster_sessions::parse_session;
use crate::metrics::ClusterGauges;
use crate::plain;
use crate::server::Server;
use crate::session_sink::{Deferred, DeferredOp, SessionWrite};
use crate::{Action, Level};

/// Heartbeats missed before a node is taken as dead.
const BEATS_TO_EXPIRY: u32 = 3;

/// How the layer works with a cluster backend: [`Config::cluster`](crate::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Put before every channel name, so several services can share one Redis.
    pub prefix: String,
    /// How often this node says it is alive; a node not heard of for three of these is
    /// taken as gone and its users leave their rooms.
    pub heartbeat: Duration,
}

impl ClusterConfig {
    /// Channels under `prefix`, a heartbeat every two seconds.
    pub fn new(prefix: &str) -> ClusterConfig {
        ClusterConfig {
            prefix: prefix.to_string(),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// What waits for a publication's (or a command's) outcome.
#[derive(Debug)]
pub(crate) enum Pending {
    /// Nothing: counted if it failed.
    Fire,
    /// Push number `index` of the request on `conn`.
    Push { conn: ConnId, index: usize },
    /// A message to a user with no connection here, published to their other
    /// connections or stored in their mailbox in Redis, in one step; for push number
    /// `index` of the request on `conn` if it came from one.
    Stored {
        to: UserId,
        from: Option<UserId>,
        payload: Bytes,
        push: Option<(ConnId, usize)>,
    },
    /// The user's mail taken from Redis (`LPOP`), for their connections here.
    Fetched { user: UserId },
    /// The counts of a user's connections on every node (`HGETALL`), for the upgrade
    /// waiting on `conn`.
    Admit { conn: ConnId },
    /// Redis's part of a commit, which wrote these sessions (`cluster_sessions.rs`) and
    /// ran these deferred publications.
    Commit {
        written: Vec<SessionWrite>,
        deferred: Vec<Deferred>,
    },
    /// The take-over of `session` for the `RESUME` upgrade waiting on `conn`.
    Claim { conn: ConnId, session: SessionId },
}

/// The cluster state of a [`Server`].
#[derive(Debug)]
pub(crate) struct Cluster {
    config: ClusterConfig,
    /// This node's id, in every envelope it publishes.
    node: String,
    up: bool,
    /// Channels the layer needs, and those the backend confirmed.
    wanted: BTreeSet<String>,
    confirmed: BTreeSet<String>,
    next_id: u64,
    pub(crate) pending: BTreeMap<u64, Pending>,
    /// Per room this node has members in: which other nodes hold which users there,
    /// each entry with the deadline it is dropped at unless confirmed (`Some` after a
    /// resynchronisation began: [`Cluster::resync_until`]).
    remote: BTreeMap<String, BTreeMap<UserId, BTreeMap<String, Option<Instant>>>>,
    /// Per room: how many of `remote`'s users are present here too, so the room's size
    /// across nodes is known without walking both lists (a join answers with it).
    shared: BTreeMap<String, usize>,
    /// When entries still unconfirmed after a resynchronisation are dropped.
    sweeps: BTreeSet<Instant>,
    /// Other nodes, and when they were last heard of.
    nodes: BTreeMap<String, Instant>,
    next_beat: Option<Instant>,
    /// Handing out presence learnt from another node: not to be hidden.
    announcing: bool,
    /// Pushes waiting for the nodes that received them, and what this node owes
    /// (`cluster_confirm.rs`).
    pub(crate) confirms: Confirms,
}

impl Cluster {
    pub(crate) fn new(config: ClusterConfig, node: String) -> Cluster {
        let mut cluster = Cluster {
            node,
            up: false,
            wanted: BTreeSet::new(),
            confirmed: BTreeSet::new(),
            next_id: 1,
            pending: BTreeMap::new(),
            remote: BTreeMap::new(),
            shared: BTreeMap::new(),
            sweeps: BTreeSet::new(),
            nodes: BTreeMap::new(),
            next_beat: None,
            announcing: false,
            confirms: Confirms::new(),
            config,
        };
        let (all, nodes) = (cluster.channel("all"), cluster.channel("nodes"));
        let own = cluster.node_channel(&cluster.node.clone());
        cluster.wanted.insert(all);
        cluster.wanted.insert(nodes);
        cluster.wanted.insert(own);
        cluster
    }

    /// The channel only `node` listens on (confirmations of its pushes).
    pub(crate) fn node_channel(&self, node: &str) -> String {
        self.channel(&format!("node:{node}"))
    }

    /// A number for a publication (or command) whose outcome `pending` waits for.
    fn next_publication(&mut self, pending: Pending) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        id
    }

    pub(crate) fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn user_channel(&self, user: &UserId) -> String {
        self.channel(&format!("user:{}", user.as_str()))
    }

    fn room_channel(&self, room: &str) -> String {
        self.channel(&format!("room:{room}"))
    }

    fn expiry(&self) -> Duration {
        self.config.heartbeat * BEATS_TO_EXPIRY
    }

    /// Marks what is known of `node` (every node: `None`) as unconfirmed: each entry
    /// is dropped at `now` + two beats unless a `here` or `join` confirms it meanwhile.
    /// Until then it still counts, so a user who stayed does not flap.
    fn resync(&mut self, now: Instant, node: Option<&str>) {
        let deadline = now + self.config.heartbeat * 2;
        let mut any = false;
        for users in self.remote.values_mut() {
            for nodes in users.values_mut() {
                for (n, stale) in nodes.iter_mut() {
                    if node.is_none_or(|node| node == n) {
                        *stale = Some(deadline);
                        any = true;
                    }
                }
            }
        }
        if any {
            self.sweeps.insert(deadline);
        }
    }

    /// When the layer must act next: a heartbeat, a node to expire, or a push whose
    /// confirmations are late.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.nodes.values().min().map(|at| *at + self.expiry());
        let sweep = self.sweeps.first().copied();
        let confirm = self.confirms.poll_timeout();
        [self.next_beat, expiry, sweep, confirm]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether another node holds `user` in `room`.
    fn present_elsewhere(&self, room: &str, user: &UserId) -> bool {
        self.remote
            .get(room)
            .is_some_and(|users| users.contains_key(user))
    }

    /// Whether `node` is this node.
    pub(crate) fn is_self(&self, node: &str) -> bool {
        self.node == node
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether `node` was heard from within three beats.
    pub(crate) fn is_alive(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up
    }

    pub(crate) fn gauges(&self) -> ClusterGauges {
        ClusterGauges {
            up: self.up,
            subscriptions: self.confirmed.len() as u64,
            nodes: self.nodes.len() as u64,
        }
    }
}

/// An envelope: `{"node":…,"t":kind, …fields}`; `fields` are JSON members already
/// written (`,"user":"kim"`).
pub(crate) fn envelope(node: &str, kind: &str, fields: &str) -> Bytes {
    let node = serde_json::Value::from(node).to_string();
    Bytes::from(format!("{{\"node\":{node},\"t\":\"{kind}\"{fields}}}"))
}

/// A message's envelope (`msg`): who sent it, if a client did; the push number the
/// receivers confirm (`cluster_confirm.rs`), if a push; and the JSON data.
fn message_envelope(node: &str, from: Option<&UserId>, data: &[u8], confirm: Option<u64>) -> Bytes {
    let data = std::str::from_utf8(data).unwrap_or("null");
    let mut fields = String::with_capacity(data.len() + 32);
    if let Some(from) = from {
        fields.push_str(&member("from", from.as_str()));
    }
    if let Some(n) = confirm {
        fields.push_str(&format!(",\"ack\":{n}"));
    }
    fields.push_str(",\"data\":");
    fields.push_str(data);
    envelope(node, "msg", &fields)
}

fn member(name: &str, value: &str) -> String {
    format!(",\"{name}\":{}", serde_json::Value::from(value))
}

impl Server {
    // ----- inputs from the runtime's backend connections -----

    /// The backend (Redis) is reachable, on both the publishing and the subscribing
    /// connection, with no subscriptions yet (or the ones it had): the layer asks
    /// ([`Action::Subscribe`]) for every channel it needs. Drain
    /// [`poll_action`](Self::poll_action) afterwards.
    pub fn handle_cluster_up(&mut self, now: Instant) {
        self.observe(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.up {
            return;
        }
        cluster.up = true;
        cluster.next_beat = Some(now);
        // What was learnt before may be out of date: confirmed again by the answers to
        // this node's syncs, or dropped. The others hear the same of this node.
        cluster.resync(now, None);
        let reset = envelope(&cluster.node, "reset", "");
        let nodes = cluster.channel("nodes");
        let wanted: Vec<String> = cluster.wanted.iter().cloned().collect();
        self.publish(nodes, reset, Pending::Fire);
        for channel in wanted {
            self.actions.push_back(Action::Subscribe(channel));
        }
        // This node's counts of its users' connections, which Redis may have lost.
        let mut counts: BTreeMap<UserId, usize> = BTreeMap::new();
        for conn in self.hub.connections() {
            if let Some(user) = self.hub.user_of(conn) {
                *counts.entry(user.clone()).or_default() += 1;
            }
        }
        for (user, count) in counts {
            self.publish_count(&user, count);
        }
        self.log(Level::Info, "cluster: redis reachable".to_string());
        self.handle_timeout(now);
    }

    /// The backend is unreachable (either connection failed): until
    /// [`handle_cluster_up`](Self::handle_cluster_up), pushes are answered 503, client
    /// messages reach this node's connections only, and `/healthz` says so. The
    /// runtime still answers every [`Action::Publish`] it was given (with `Err`).
    pub fn handle_cluster_down(&mut self, now: Instant, reason: &str) {
        self.observe(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.up {
            return;
        }
        cluster.up = false;
        cluster.confirmed.clear();
        cluster.next_beat = None;
        self.metrics.cluster_outages += 1;
        self.log(
            Level::Warn,
            format!("cluster: redis unreachable ({reason}); serving this node's connections only"),
        );
        self.settle();
    }

    /// The backend confirmed this node's subscription to `channel`. A room's channel
    /// asks the other nodes who is there.
    pub fn handle_subscribed(&mut self, now: Instant, channel: &str) {
        self.observe(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.up || !cluster.wanted.contains(channel) {
            return;
        }
        cluster.confirmed.insert(channel.to_string());
        let room_prefix = cluster.channel("room:");
        let user_prefix = cluster.channel("user:");
        if let Some(user) = channel.strip_prefix(&user_prefix) {
            // Reachable from now on: what was stored before is in the mailbox.
            let user = UserId(user.to_string());
            if self.hub.is_online(&user) {
                self.fetch_mail(&user);
            }
        } else if let Some(room) = channel.strip_prefix(&room_prefix) {
            // Who is here, and who is there: the other nodes answer with `here`.
            let room = room.to_string();
            let sync = envelope(&cluster.node, "sync", "");
            self.publish(channel.to_string(), sync, Pending::Fire);
            self.answer_sync(&room);
        }
        self.settle();
    }

    /// The outcome of the [`Action::Publish`] numbered `id`: how many subscribers
    /// received it (Redis's answer to `PUBLISH`, this node's own subscription
    /// included), or why it failed. Every publication gets exactly one answer.
    pub fn handle_published(&mut self, now: Instant, id: u64, result: Result<u64, String>) {
        self.observe(now);
        self.on_published(id, result);
        self.settle();
    }

    /// The outcome of publication `id` (reported by the runtime, or by the commit
    /// script that ran it).
    pub(crate) fn on_published(&mut self, id: u64, result: Result<u64, String>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(pending) = cluster.pending.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            self.metrics.cluster_publish_failures += 1;
            self.log(Level::Debug, format!("cluster: publish failed: {e}"));
        }
        match pending {
            Pending::Fire => {}
            Pending::Push { conn, index } => self.push_published(conn, index, &result),
            // Answered by `handle_reply`.
            _ => {}
        }
    }

    /// A message on a channel this node subscribed to.
    pub fn handle_remote(&mut self, now: Instant, channel: &str, payload: &[u8]) {
        self.observe(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(name) = channel.strip_prefix(cluster.config.prefix.as_str()) else {
            return;
        };
        let Ok(object) = plain::raw_object(payload) else {
            return;
        };
        let text = |key: &str| object.get(key).and_then(|raw| plain::as_string(raw));
        let (Some(node), Some(kind)) = (text("node"), text("t")) else {
            return;
        };
        if node == cluster.node {
            // Our own: delivered here when it was published, and durable when this
            // node's answer to the push is (which waits for its own commit). Redis
            // counted this subscription among the receivers, so it confirms.
            if kind == "msg" {
                if let Some(n) = object.get("ack").and_then(|raw| raw.get().parse().ok()) {
                    self.confirmation(n, true);
                    self.settle();
                }
            }
            return;
        }
        let heard = self.now;
        cluster.nodes.insert(node.clone(), heard);
        let target = if name == "all" {
            Some(Target::Everyone)
        } else if let Some(user) = name.strip_prefix("user:") {
            Some(Target::User(UserId(user.to_string())))
        } else {
            name.strip_prefix("room:")
                .map(|room| Target::Room(room.to_string()))
        };
        match (kind.as_str(), target) {
            ("msg", Some(target)) => {
                let Some(data) = object.get("data") else {
                    return;
                };
                self.metrics.cluster_received += 1;
                let from = text("from").map(UserId);
                let data = Bytes::from(data.get().to_string());
                let confirm = object.get("ack").and_then(|raw| raw.get().parse().ok());
                self.hub.relay(self.now, &target, from, data);
                self.deliver();
                if let Some(n) = confirm {
                    // A push from `node`: it learns once what it caused here is durable.
                    self.owe_confirmation(node, n);
                }
            }
            ("got", None) => {
                let own = self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.node_channel(c.node_id()) == channel);
                let n = object.get("ack").and_then(|raw| raw.get().parse().ok());
                let ok = object.get("ok").is_some_and(|raw| raw.get() == "true");
                if let (true, Some(n)) = (own, n) {
                    self.confirmation(n, ok);
                }
            }
            ("join" | "leave", Some(Target::Room(room))) => {
                if let Some(user) = text("user") {
                    self.remote_presence(&room, UserId(user), &node, kind == "join");
                }
            }
            ("here", Some(Target::Room(room))) => {
                // Everyone `node` holds in the room: who is not listed left.
                let users: BTreeSet<UserId> = object
                    .get("users")
                    .and_then(|raw| serde_json::from_str::<Vec<String>>(raw.get()).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(UserId)
                    .collect();
                let gone: Vec<UserId> = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.remote.get(&room))
                    .map(|known| {
                        known
                            .iter()
                            .filter(|(u, nodes)| nodes.contains_key(&node) && !users.contains(*u))
                            .map(|(u, _)| u.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for user in gone {
                    self.remote_presence(&room, user, &node, false);
                }
                for user in users {
                    self.remote_presence(&room, user, &node, true);
                }
            }
            ("reset", _) => {
                // `node` is back after losing Redis: what it holds comes again as
                // `here`s; what it no longer holds is dropped after two beats.
                let now = self.now;
                if let Some(cluster) = &mut self.cluster {
                    cluster.resync(now, Some(&node));
                }
            }
            ("sync", Some(Target::Room(room))) => self.answer_sync(&room),
            ("taken", _) => {
                // `node` took a session over: this node's copy, if it has one, goes.
                if let Some(session) = text("session").as_deref().and_then(parse_session) {
                    self.drop_taken(session);
                }
            }
            ("bye", _) => self.node_gone(&node),
            _ => {}
        }
        self.settle();
    }

    // ----- the layer's own decisions -----

    /// Queues a publication; one caused by records that wait for Redis runs in their
    /// commit's script.
    fn publish(&mut self, channel: String, payload: Bytes, pending: Pending) {
        if !self.defers() {
            return self.publish_now(channel, payload, pending);
        }
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let id = cluster.next_publication(pending);
        self.metrics.cluster_published += 1;
        let channel = Bytes::from(channel);
        self.defer(id, DeferredOp::Publish { channel, payload });
    }

    /// Queues a publication at once, whatever waits for a commit.
    pub(crate) fn publish_now(&mut self, channel: String, payload: Bytes, pending: Pending) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let id = cluster.next_publication(pending);
        self.metrics.cluster_published += 1;
        self.actions.push_back(Action::Publish {
            id,
            channel,
            payload,
        });
    }

    /// Queues a Redis command, answered by [`Server::handle_reply`]; a publication
    /// caused by records that wait for Redis runs in their commit's script instead.
    pub(crate) fn command(&mut self, args: Vec<Bytes>, pending: Pending) {
        match Self::deferrable(&args) {
            Some(store) if self.defers() => {
                let Some(cluster) = &mut self.cluster else {
                    return;
                };
                let id = cluster.next_publication(pending);
                self.defer(id, DeferredOp::Store(store));
            }
            _ => self.command_now(args, pending),
        }
    }

    /// Queues a Redis command at once, answered by [`Server::handle_reply`].
    pub(crate) fn command_now(&mut self, args: Vec<Bytes>, pending: Pending) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let id = cluster.next_publication(pending);
        self.actions.push_back(Action::Command { id, args });
    }

    /// This node took `session` over: its old owner drops its copy.
    pub(crate) fn announce_taken(&mut self, session: SessionId) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let fields = member("session", &session.to_string());
        let payload = envelope(&cluster.node, "taken", &fields);
        let channel = cluster.channel("nodes");
        self.publish(channel, payload, Pending::Fire);
    }

    /// The channel of a target.
    fn target_channel(&self, target: &Target) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        Some(match target {
            Target::User(user) => cluster.user_channel(user),
            Target::Room(room) => cluster.room_channel(room),
            Target::Everyone => cluster.channel("all"),
        })
    }

    /// How many other nodes received a publication to `target`: Redis's count less this
    /// node's own subscription. `None` if it failed.
    pub(crate) fn remote_receivers(
        &self,
        target: &Target,
        result: &Result<u64, String>,
    ) -> Option<u64> {
        let received = *result.as_ref().ok()?;
        let own = self
            .target_channel(target)
            .zip(self.cluster.as_ref())
            .is_some_and(|(channel, cluster)| cluster.confirmed.contains(&channel));
        Some(received.saturating_sub(u64::from(own)))
    }

    /// Whether the layer works with a backend that is down now (pushes are refused).
    pub(crate) fn cluster_down(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.up)
    }

    /// Whether Redis confirmed this node's own channel, which the confirmations of its
    /// pushes come on (no backend: true).
    pub(crate) fn cluster_hears_confirmations(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.confirmed.contains(&c.node_channel(c.node_id())))
    }

    /// Whether a backend is configured and up.
    pub(crate) fn cluster_up(&self) -> bool {
        self.cluster.as_ref().is_some_and(Cluster::is_up)
    }

    pub(crate) fn cluster_gauges(&self) -> Option<ClusterGauges> {
        self.cluster.as_ref().map(Cluster::gauges)
    }

    /// A message this node delivered to its own connections goes to the other nodes:
    /// `from` a client of this node (or the backend), to `target`.
    /// `confirm`: a push's number, for the nodes that receive it to confirm
    /// (`cluster_confirm.rs`).
    pub(crate) fn publish_message(
        &mut self,
        target: &Target,
        from: Option<&UserId>,
        data: &[u8],
        pending: Option<(ConnId, usize)>,
        confirm: Option<u64>,
    ) {
        let Some(channel) = self.target_channel(target) else {
            return;
        };
        let Some(cluster) = &self.cluster else {
            return;
        };
        let payload = message_envelope(&cluster.node, from, data, confirm);
        let pending = match pending {
            Some((conn, index)) => Pending::Push { conn, index },
            None => Pending::Fire,
        };
        self.publish(channel, payload, pending);
    }

    /// A direct message from a client to a user with no connection on this node: to
    /// their connections on the other nodes, or their mailbox in Redis if they have
    /// none, in one step (`cluster_mail.rs`).
    pub(crate) fn publish_direct(&mut self, to: &UserId, from: Option<UserId>, data: Bytes) {
        self.deliver_or_store(to.clone(), from, data, None, None);
    }

    /// The envelope of a message, and the channel of `to`.
    pub(crate) fn user_message(
        &self,
        to: &UserId,
        from: Option<&UserId>,
        data: &[u8],
        confirm: Option<u64>,
    ) -> Option<(String, Bytes)> {
        let cluster = self.cluster.as_ref()?;
        Some((
            cluster.user_channel(to),
            message_envelope(&cluster.node, from, data, confirm),
        ))
    }

    /// Whether a presence message the hub made for this node's members says nothing
    /// new: the user is present in the room on another node.
    pub(crate) fn cluster_hides(&self, message: &OutMessage) -> bool {
        match (message, &self.cluster) {
            (OutMessage::Presence { room, user, .. }, Some(cluster)) => {
                !cluster.announcing && cluster.present_elsewhere(room, user)
            }
            _ => false,
        }
    }

    /// The users present in `room` on this node and on the others: the first `limit`
    /// in name order, and how many in all.
    ///
    /// Both lists are in name order: the page merges their heads, and the count comes
    /// from the sizes and [`Cluster::shared`], so a join costs the page, not the room.
    pub(crate) fn members_page(&self, room: &str, limit: usize) -> (Vec<UserId>, usize) {
        let Some(cluster) = &self.cluster else {
            return self.hub.members_page(room, limit);
        };
        let Some(remote) = cluster.remote.get(room).filter(|r| !r.is_empty()) else {
            return self.hub.members_page(room, limit);
        };
        // `shared` accounts the local changes drained so far; a join answered in this
        // input has its own still pending.
        let mut shared = cluster.shared.get(room).copied().unwrap_or(0);
        for change in self.hub.pending_changes() {
            match change {
                HubChange::Arrived { room: r, user } if r == room && remote.contains_key(user) => {
                    shared += 1
                }
                HubChange::Departed { room: r, user } if r == room && remote.contains_key(user) => {
                    shared = shared.saturating_sub(1)
                }
                _ => {}
            }
        }
        let count = self.hub.user_count(room) + remote.len() - shared;
        debug_assert_eq!(
            count,
            self.hub
                .users_in(room)
                .chain(remote.keys())
                .collect::<BTreeSet<_>>()
                .len(),
            "the count of users in {room} across nodes drifted"
        );
        let mut page = Vec::with_capacity(limit.min(count));
        let (mut here, mut there) = (self.hub.users_in(room).peekable(), remote.keys().peekable());
        while page.len() < limit {
            let next = match (here.peek(), there.peek()) {
                (Some(a), Some(b)) if a == b => {
                    there.next();
                    here.next()
                }
                (Some(a), Some(b)) if a < b => here.next(),
                (Some(_), Some(_)) | (None, Some(_)) => there.next(),
                (Some(_), None) => here.next(),
                (None, None) => None,
            };
            match next {
                Some(user) => page.push(user.clone()),
                None => break,
            }
        }
        (page, count)
    }

    /// A user's presence in `room` on this node changed: keep [`Cluster::shared`] and
    /// the hub's count of users only elsewhere current.
    fn local_presence_changed(&mut self, room: &str, user: &UserId, present: bool) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.present_elsewhere(room, user) {
            return;
        }
        let shared = cluster.shared.entry(room.to_string()).or_default();
        *shared = if present {
            *shared + 1
        } else {
            shared.saturating_sub(1)
        };
        self.sync_elsewhere(room);
    }

    /// Tells the hub how many of `room`'s users are present only on other nodes.
    fn sync_elsewhere(&mut self, room: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let remote = cluster.remote.get(room).map_or(0, BTreeMap::len);
        let shared = cluster.shared.get(room).copied().unwrap_or(0);
        self.hub
            .set_present_elsewhere(room, remote.saturating_sub(shared));
    }

    /// After every input: what changed in who is where becomes subscriptions and
    /// announcements.
    pub(crate) fn cluster_changes(&mut self) {
        while let Some(change) = self.hub.poll_change() {
            match &change {
                HubChange::Arrived { room, user } => self.local_presence_changed(room, user, true),
                HubChange::Departed { room, user } => {
                    self.local_presence_changed(room, user, false)
                }
                _ => {}
            }
            let Some(cluster) = &mut self.cluster else {
                continue;
            };
            let up = cluster.up;
            match change {
                HubChange::UserOnline(user) => {
                    let channel = cluster.user_channel(&user);
                    self.want(channel, true);
                }
                HubChange::Connections { user, count } if up => self.publish_count(&user, count),
                HubChange::UserOffline(user) => {
                    let channel = cluster.user_channel(&user);
                    self.want(channel, false);
                }
                HubChange::RoomOpened(room) => {
                    let channel = cluster.room_channel(&room);
                    self.want(channel, true);
                }
                HubChange::RoomClosed(room) => {
                    cluster.remote.remove(&room);
                    cluster.shared.remove(&room);
                    self.hub.set_present_elsewhere(&room, 0);
                    let Some(cluster) = &mut self.cluster else {
                        continue;
                    };
                    let channel = cluster.room_channel(&room);
                    self.want(channel, false);
                }
                HubChange::Arrived { room, user } if up => {
                    let payload = envelope(&cluster.node, "join", &member("user", user.as_str()));
                    let channel = cluster.room_channel(&room);
                    self.publish(channel, payload, Pending::Fire);
                }
                HubChange::Departed { room, user } if up => {
                    let payload = envelope(&cluster.node, "leave", &member("user", user.as_str()));
                    let channel = cluster.room_channel(&room);
                    self.publish(channel, payload, Pending::Fire);
                }
                _ => {}
            }
        }
    }

    /// Subscribes to (or leaves) `channel`, telling the backend.
    fn want(&mut self, channel: String, wanted: bool) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let changed = if wanted {
            cluster.wanted.insert(channel.clone())
        } else {
            cluster.confirmed.remove(&channel);
            cluster.wanted.remove(&channel)
        };
        // An unsubscription goes out even while the backend is down: the subscribing
        // connection may be the one still up, and a channel left subscribed would count
        // this node as a receiver of the user's messages.
        if changed && (cluster.up || !wanted) {
            self.actions.push_back(if wanted {
                Action::Subscribe(channel)
            } else {
                Action::Unsubscribe(channel)
            });
        }
    }

    /// `user` arrived in (or left) `room` on `node`: this node's members hear it if it
    /// is the user's first connection anywhere (or last).
    fn remote_presence(&mut self, room: &str, user: UserId, node: &str, joined: bool) {
        let local = self.hub.is_present(room, &user);
        // Whether `shared` counts the user as here: as the hub was before the changes
        // not drained yet (each pending arrival or departure of theirs flips it).
        let toggles = self
            .hub
            .pending_changes()
            .filter(|c| match c {
                HubChange::Arrived { room: r, user: u }
                | HubChange::Departed { room: r, user: u } => r == room && *u == user,
                _ => false,
            })
            .count();
        let accounted = local ^ (toggles % 2 == 1);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.wanted.contains(&cluster.room_channel(room)) {
            return;
        }
        let users = cluster.remote.entry(room.to_string()).or_default();
        let listed = users.contains_key(&user);
        let was = local || listed;
        if joined {
            // Known and confirmed.
            users
                .entry(user.clone())
                .or_default()
                .insert(node.to_string(), None);
        } else if let Some(nodes) = users.get_mut(&user) {
            nodes.remove(node);
            if nodes.is_empty() {
                users.remove(&user);
            }
        }
        let is = local || users.contains_key(&user);
        if accounted && listed != users.contains_key(&user) {
            let shared = cluster.shared.entry(room.to_string()).or_default();
            *shared = if listed {
                shared.saturating_sub(1)
            } else {
                *shared + 1
            };
        }
        // Before announcing: the room's size across nodes decides whether presence goes
        // out at all.
        self.sync_elsewhere(room);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if was != is {
            cluster.announcing = true;
            self.hub.announce_presence(room, &user, is);
            self.deliver();
            if let Some(cluster) = &mut self.cluster {
                cluster.announcing = false;
            }
        }
    }

    /// Another node asked who is in `room`: the users present here.
    fn answer_sync(&mut self, room: &str) {
        let members = self.hub.members(room);
        let Some(cluster) = &self.cluster else {
            return;
        };
        if members.is_empty() {
            return;
        }
        let users: Vec<&str> = members.iter().map(UserId::as_str).collect();
        let fields = format!(",\"users\":{}", serde_json::Value::from(users));
        let payload = envelope(&cluster.node, "here", &fields);
        let channel = cluster.room_channel(room);
        self.publish(channel, payload, Pending::Fire);
    }

    /// `node` said goodbye or stopped beating: its users leave every room.
    fn node_gone(&mut self, node: &str) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.nodes.remove(node);
        let mut left = Vec::new();
        for (room, users) in &cluster.remote {
            for (user, nodes) in users {
                if nodes.contains_key(node) {
                    left.push((room.clone(), user.clone()));
                }
            }
        }
        for (room, user) in left {
            self.remote_presence(&room, user, node, false);
        }
        self.log(
            Level::Info,
            format!("cluster: node {node} is gone; its users left their rooms"),
        );
    }

    /// Heartbeats and dead nodes, at their time.
    pub(crate) fn cluster_timeout(&mut self, now: Instant) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.next_beat.is_some_and(|at| at <= now) {
            // At each beat: sessions idle for half a resume window are kept in Redis.
            let age = self.config.session_expiry / 2;
            self.durable.refresh(now, age);
        }
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let expiry = cluster.expiry();
        let dead: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|(_, at)| **at + expiry <= now)
            .map(|(node, _)| node.clone())
            .collect();
        if cluster.next_beat.is_some_and(|at| at <= now) {
            cluster.next_beat = Some(now + cluster.config.heartbeat);
            let beat = envelope(&cluster.node, "beat", "");
            let channel = cluster.channel("nodes");
            self.publish(channel, beat, Pending::Fire);
        }
        for node in dead {
            self.node_gone(&node);
        }
        self.sweep(now);
        self.confirmations_timeout(now);
    }

    /// Drops what a resynchronisation did not confirm by its deadline.
    fn sweep(&mut self, now: Instant) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.sweeps.first().is_none_or(|at| *at > now) {
            return;
        }
        cluster.sweeps.retain(|at| *at > now);
        let mut stale = Vec::new();
        for (room, users) in &cluster.remote {
            for (user, nodes) in users {
                for (node, deadline) in nodes {
                    if deadline.is_some_and(|d| d <= now) {
                        stale.push((room.clone(), user.clone(), node.clone()));
                    }
                }
            }
        }
        for (room, user, node) in stale {
            self.remote_presence(&room, user, &node, false);
        }
    }

    /// A graceful shutdown: the other nodes hear at once that this one's users left.
    pub(crate) fn cluster_bye(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if cluster.up {
            let bye = envelope(&cluster.node, "bye", "");
            let channel = cluster.channel("nodes");
            self.publish(channel, bye, Pending::Fire);
        }
    }
}
