//! Many layers on one in-memory pub/sub broker that behaves as Redis's does (a
//! channel's messages reach its subscribers in publish order; `PUBLISH` answers how many
//! received it): the cluster decisions without a Redis.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use sockeye_core::handshake::ClientRequest;
use sockeye_core::{ClientHandshake, Connection, Event, Instant, Message, SeededEntropy};

use crate::cluster_mail::PUBLISH_OR_STORE;
use crate::{Action, ClusterConfig, Config, ConnId, Reply, Server};

mod seeded;
mod sessions;

/// What the broker hands back, in order.
enum Delivery {
    Remote(usize, String, Bytes),
    Published(usize, u64, Result<u64, String>),
    Subscribed(usize, String),
    Replied(usize, u64, Result<Reply, String>),
}

struct Client {
    node: usize,
    conn: ConnId,
    ws: Connection,
    texts: Vec<serde_json::Value>,
}

struct Net {
    nodes: Vec<Server>,
    /// Nodes that are cut off from everything (a node that died without a word).
    dead: BTreeSet<usize>,
    subs: BTreeMap<String, BTreeSet<usize>>,
    /// Subscriptions Redis has not processed yet, while `hold` is set.
    hold: bool,
    held: Vec<(usize, String)>,
    /// Redis's hashes (the per-user connection counts).
    hashes: BTreeMap<Bytes, BTreeMap<Bytes, Bytes>>,
    /// Redis's lists (the mailboxes, the sessions).
    lists: BTreeMap<Bytes, VecDeque<Bytes>>,
    /// Redis's strings (the sessions' owners).
    strings: BTreeMap<Bytes, Bytes>,
    /// Commits Redis fails (`sessions.rs`).
    fail_commits: bool,
    /// Commit answers Redis has not sent yet, while `hold_commits` is set.
    hold_commits: bool,
    held_commits: Vec<Delivery>,
    /// Commits Redis has not run yet, while `stall_commits` is set.
    stall_commits: bool,
    stalled: Vec<(usize, u64, Vec<Bytes>)>,
    /// Touches (`t`) the commit script ran.
    touches: usize,
    /// Conditional voids (`v`) the commit script appended.
    voids: usize,
    /// Dead letters each node reported.
    dead_letters: Vec<(usize, crate::DeadLetter)>,
    /// Reliable clients (`sessions.rs`).
    rclients: Vec<sessions::RClient>,
    up: bool,
    queue: VecDeque<Delivery>,
    clients: Vec<Client>,
    /// HTTP answers by (node, conn).
    http: BTreeMap<(usize, ConnId), Vec<u8>>,
    now: Instant,
    seed: u64,
}

impl Net {
    fn new(count: usize) -> Net {
        Net::with_config(count, Config::default())
    }

    fn with_config(count: usize, base: Config) -> Net {
        let now = Instant::ZERO;
        let nodes = (0..count)
            .map(|i| {
                let config = Config {
                    cluster: Some(ClusterConfig::new("test:")),
                    ..base.clone()
                };
                let entropy = Box::new(SeededEntropy::new(100 + i as u64));
                Server::new(config, now, 1_700_000_000_000, entropy, None)
            })
            .collect();
        let mut net = Net {
            nodes,
            dead: BTreeSet::new(),
            subs: BTreeMap::new(),
            lists: BTreeMap::new(),
            strings: BTreeMap::new(),
            fail_commits: false,
            hold_commits: false,
            held_commits: Vec::new(),
            stall_commits: false,
            stalled: Vec::new(),
            dead_letters: Vec::new(),
            touches: 0,
            voids: 0,
            rclients: Vec::new(),
            hashes: BTreeMap::new(),
            hold: false,
            held: Vec::new(),
            up: true,
            queue: VecDeque::new(),
            clients: Vec::new(),
            http: BTreeMap::new(),
            now,
            seed: 1,
        };
        for i in 0..count {
            net.nodes[i].handle_cluster_up(now);
        }
        net.pump();
        net
    }

    /// Runs every action and broker delivery until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(action) = self.nodes[i].poll_action() {
                    moved = true;
                    self.act(i, action);
                }
            }
            if let Some(delivery) = self.queue.pop_front() {
                moved = true;
                let now = self.now;
                match delivery {
                    Delivery::Remote(i, channel, payload) => {
                        self.nodes[i].handle_remote(now, &channel, &payload)
                    }
                    Delivery::Published(i, id, result) => {
                        self.nodes[i].handle_published(now, id, result)
                    }
                    Delivery::Subscribed(i, channel) => {
                        self.nodes[i].handle_subscribed(now, &channel)
                    }
                    Delivery::Replied(i, id, result) => self.nodes[i].handle_reply(now, id, result),
                }
            }
            moved |= self.drive_rclients();
            if !moved {
                return;
            }
        }
        panic!("the nodes never settled");
    }

    fn act(&mut self, i: usize, action: Action) {
        match action {
            Action::Wake(conn) | Action::Close(conn) => {
                let mut bytes = Vec::new();
                while let Some(chunk) = self.nodes[i].poll_transmit(conn) {
                    bytes.extend_from_slice(&chunk);
                }
                let now = self.now;
                if self.feed_rclient(i, conn, &bytes) {
                    // A reliable client's.
                } else if let Some(client) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.node == i && c.conn == conn)
                {
                    client.ws.handle_bytes(now, &bytes);
                    while let Some(event) = client.ws.poll_event() {
                        if let Event::Message(Message::Text(text)) = event {
                            client.texts.push(serde_json::from_slice(&text).unwrap());
                        }
                    }
                } else {
                    self.http.entry((i, conn)).or_default().extend(bytes);
                }
            }
            Action::Publish {
                id,
                channel,
                payload,
            } => {
                if !self.up || self.dead.contains(&i) {
                    let failed = Err("connection refused".to_string());
                    self.queue.push_back(Delivery::Published(i, id, failed));
                    return;
                }
                let count = self.broker_publish(&channel, &payload) as u64;
                self.queue.push_back(Delivery::Published(i, id, Ok(count)));
            }
            Action::Command { id, args } => {
                let result = if !self.up || self.dead.contains(&i) {
                    Err("connection refused".to_string())
                } else if &args[0][..] == b"EVAL" && &args[1][..] != PUBLISH_OR_STORE.as_bytes() {
                    let commit = &args[1][..] == crate::cluster_sessions::COMMIT.as_bytes();
                    if commit && self.stall_commits {
                        self.stalled.push((i, id, args));
                        return;
                    }
                    if commit && self.fail_commits {
                        // Refused before it ran: nothing of it happened.
                        let refused = "READONLY You can't write against a read only replica";
                        self.queue
                            .push_back(Delivery::Replied(i, id, Err(refused.to_string())));
                        return;
                    }
                    let result = self.session_script(&args);
                    if commit && self.hold_commits {
                        self.held_commits.push(Delivery::Replied(i, id, result));
                        return;
                    } else {
                        result
                    }
                } else if &args[0][..] == b"EVAL" {
                    Ok(self.publish_or_store(&args))
                } else {
                    Ok(self.run(&args))
                };
                self.queue.push_back(Delivery::Replied(i, id, result));
            }
            Action::Subscribe(channel) if self.up && self.hold => self.held.push((i, channel)),
            Action::Subscribe(channel) if self.up => {
                self.subs.entry(channel.clone()).or_default().insert(i);
                self.queue.push_back(Delivery::Subscribed(i, channel));
            }
            Action::DeadLetter(dead) => self.dead_letters.push((i, dead)),
            Action::Unsubscribe(channel) => {
                if let Some(s) = self.subs.get_mut(&channel) {
                    s.remove(&i);
                }
            }
            _ => {}
        }
    }

    /// What `cluster_mail::PUBLISH_OR_STORE` does in Redis: `EVAL script 2 channel key
    /// envelope record max age`.
    fn publish_or_store(&mut self, args: &[Bytes]) -> Reply {
        assert_eq!(&args[1][..], PUBLISH_OR_STORE.as_bytes());
        let channel = std::str::from_utf8(&args[3]).unwrap();
        let receivers = self.broker_publish(channel, &args[5]);
        if receivers > 0 {
            return Reply::Int(receivers as i64);
        }
        let max: usize = std::str::from_utf8(&args[7]).unwrap().parse().unwrap();
        Reply::Int(self.broker_store(&args[4], &args[6], max))
    }

    /// A `PUBLISH` on the broker: queued for every live node subscribed to `channel`;
    /// how many those are.
    fn broker_publish(&mut self, channel: &str, payload: &Bytes) -> usize {
        let receivers: Vec<usize> = self
            .subs
            .get(channel)
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|n| !self.dead.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        for &to in &receivers {
            let delivery = Delivery::Remote(to, channel.to_string(), payload.clone());
            self.queue.push_back(delivery);
        }
        receivers.len()
    }

    /// A mailbox append as the scripts make it: 0 stored, -1 the list already holds
    /// `max`.
    fn broker_store(&mut self, list: &Bytes, entry: &Bytes, max: usize) -> i64 {
        let list = self.lists.entry(list.clone()).or_default();
        if list.len() >= max {
            return -1;
        }
        list.push_back(entry.clone());
        0
    }

    /// Redis processes the subscriptions it held.
    fn release(&mut self) {
        self.hold = false;
        for (i, channel) in std::mem::take(&mut self.held) {
            self.subs.entry(channel.clone()).or_default().insert(i);
            self.queue.push_back(Delivery::Subscribed(i, channel));
        }
        self.pump();
    }

    /// The few list commands the mailboxes use, as Redis answers them.
    fn run(&mut self, args: &[Bytes]) -> Reply {
        match &args[0][..] {
            b"HSET" => {
                let hash = self.hashes.entry(args[1].clone()).or_default();
                hash.insert(args[2].clone(), args[3].clone());
                return Reply::Int(1);
            }
            b"HDEL" => {
                let hash = self.hashes.entry(args[1].clone()).or_default();
                let removed = args[2..]
                    .iter()
                    .filter(|f| hash.remove(*f).is_some())
                    .count();
                self.hashes.retain(|_, h| !h.is_empty());
                return Reply::Int(removed as i64);
            }
            b"HGETALL" => {
                let hash = self.hashes.get(&args[1]).cloned().unwrap_or_default();
                let items = hash
                    .into_iter()
                    .flat_map(|(field, value)| [Reply::Data(field), Reply::Data(value)])
                    .collect();
                return Reply::List(items);
            }
            _ => {}
        }
        let list = self.lists.entry(args[1].clone()).or_default();
        let reply = match &args[0][..] {
            b"RPUSH" => {
                list.push_back(args[2].clone());
                Reply::Int(list.len() as i64)
            }
            b"RPOP" => list.pop_back().map_or(Reply::Nil, Reply::Data),
            b"LPOP" => {
                let count: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
                let items: Vec<Reply> = (0..count.min(list.len()))
                    .filter_map(|_| list.pop_front().map(Reply::Data))
                    .collect();
                if items.is_empty() {
                    Reply::Nil
                } else {
                    Reply::List(items)
                }
            }
            b"PEXPIRE" => Reply::Int(1),
            other => panic!("unexpected command {other:?}"),
        };
        self.lists.retain(|_, l| !l.is_empty());
        reply
    }

    /// A plain client of `user` on node `node`: its index.
    fn connect(&mut self, node: usize, user: &str) -> usize {
        let now = self.now;
        let ws_config = sockeye_core::Config::default();
        let path = format!("/ws?user={user}");
        let request = ClientRequest {
            host: "x",
            path: &path,
            protocols: &[],
            origin: None,
            headers: &[],
        };
        self.seed += 1;
        let mut entropy = SeededEntropy::new(self.seed);
        let mut handshake = ClientHandshake::new(&ws_config, now, request, &mut entropy);
        let conn = self.nodes[node].handle_accept(now);
        self.nodes[node].handle_bytes(now, conn, &handshake.poll_transmit().unwrap());
        // Until the client exists, what the node writes to it collects with the HTTP
        // answers (the upgrade may wait for Redis to admit it).
        self.pump();
        let answer = self.http.remove(&(node, conn)).unwrap_or_default();
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let response = handshake
            .handle_bytes(now, &answer[..end])
            .unwrap()
            .unwrap();
        let ws = response.into_connection(now, ws_config, SeededEntropy::new(self.seed * 7));
        self.clients.push(Client {
            node,
            conn,
            ws,
            texts: Vec::new(),
        });
        let index = self.clients.len() - 1;
        let client = &mut self.clients[index];
        client.ws.handle_bytes(now, &answer[end..]);
        while let Some(event) = client.ws.poll_event() {
            if let Event::Message(Message::Text(text)) = event {
                client.texts.push(serde_json::from_slice(&text).unwrap());
            }
        }
        self.pump();
        index
    }

    /// Client `c` sends `json`.
    fn send(&mut self, c: usize, json: &str) {
        let now = self.now;
        let client = &mut self.clients[c];
        client
            .ws
            .send(now, Message::text(json.to_string()))
            .unwrap();
        let (node, conn) = (client.node, client.conn);
        while let Some(bytes) = self.clients[c].ws.poll_transmit() {
            self.nodes[node].handle_bytes(now, conn, &bytes);
        }
        self.pump();
    }

    /// Client `c`'s connection ends.
    fn drop_client(&mut self, c: usize) {
        let (node, conn) = (self.clients[c].node, self.clients[c].conn);
        self.nodes[node].handle_eof(self.now, conn);
        self.pump();
    }

    /// An HTTP request to node `node`: the status and body of its answer.
    fn http(&mut self, node: usize, head: &str, body: &str) -> (u16, String) {
        let conn = self.http_start(node, head, body);
        self.http_answer(node, conn)
            .expect("an answer once the nodes settled")
    }

    /// Sends an HTTP request to node `node`, on the connection returned.
    fn http_start(&mut self, node: usize, head: &str, body: &str) -> ConnId {
        let now = self.now;
        let conn = self.nodes[node].handle_accept(now);
        let request = format!(
            "{head}\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.nodes[node].handle_bytes(now, conn, request.as_bytes());
        self.pump();
        conn
    }

    /// The status and body of the answer on `conn` (then closed), if it came.
    fn http_answer(&mut self, node: usize, conn: ConnId) -> Option<(u16, String)> {
        let now = self.now;
        let bytes = self.http.remove(&(node, conn))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let status = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        self.nodes[node].handle_closed(now, conn);
        self.pump();
        Some((status, body))
    }

    fn push(&mut self, node: usize, body: &str) -> (u16, String) {
        self.http(node, "POST /api/push HTTP/1.1", body)
    }

    /// The messages (`type` `message`) client `c` received: their `data`.
    fn data(&self, c: usize) -> Vec<serde_json::Value> {
        self.clients[c]
            .texts
            .iter()
            .filter(|t| t["type"] == "message")
            .map(|t| t["data"].clone())
            .collect()
    }

    /// The presence lines client `c` received, as `(user, joined)`.
    fn presence(&self, c: usize) -> Vec<(String, bool)> {
        self.clients[c]
            .texts
            .iter()
            .filter(|t| t["type"] == "presence")
            .map(|t| (t["user"].as_str().unwrap().to_string(), t["joined"] == true))
            .collect()
    }

    /// The presence lines about `user` client `c` received, as `joined`.
    fn presence_of(&self, c: usize, user: &str) -> Vec<bool> {
        self.presence(c)
            .into_iter()
            .filter(|(u, _)| u == user)
            .map(|(_, joined)| joined)
            .collect()
    }

    /// Moves the clock forward by `span`, running every deadline on the way.
    fn advance(&mut self, span: core::time::Duration) {
        let end = self.now + span;
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.dead.contains(i))
                .filter_map(|(_, n)| n.poll_timeout())
                .chain(self.rclient_timeout())
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    for i in 0..self.nodes.len() {
                        if !self.dead.contains(&i) {
                            self.nodes[i].handle_timeout(self.now);
                        }
                    }
                    self.rclient_timeouts();
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

#[test]
fn a_push_reaches_every_connection_of_the_user_on_every_node_once() {
    let mut net = Net::new(3);
    let a = net.connect(0, "kim");
    let b = net.connect(1, "kim");
    let c = net.connect(1, "kim");
    let (status, body) = net.push(2, r#"{"user":"kim","data":{"n":1}}"#);
    assert_eq!(status, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["queued"]["remote_nodes"], 2, "{body}");
    assert_eq!(answer["queued"]["mailboxed"], 0);
    for client in [a, b, c] {
        assert_eq!(net.data(client), [serde_json::json!({"n":1})]);
    }
    // Pushed where kim is: delivered there at once, not again from Redis.
    let (status, _) = net.push(0, r#"{"user":"kim","data":2}"#);
    assert_eq!(status, 202);
    for client in [a, b, c] {
        assert_eq!(net.data(client).len(), 2);
    }
}

#[test]
fn mail_for_a_user_online_nowhere_waits_in_redis_for_any_node() {
    let mut net = Net::new(3);
    let (status, body) = net.push(0, r#"{"user":"bob","data":"hi"}"#);
    assert_eq!(status, 202);
    assert!(body.contains(r#""mailboxed":1"#), "{body}");
    let alice = net.connect(2, "alice");
    net.send(
        alice,
        r#"{"type":"message","to":"bob","data":"from alice"}"#,
    );
    assert_eq!(net.lists.values().map(VecDeque::len).sum::<usize>(), 2);
    let bob = net.connect(1, "bob");
    assert_eq!(net.data(bob), ["hi", "from alice"]);
    let dm = net.clients[bob].texts.last().unwrap().clone();
    assert_eq!(dm["from"], "alice");
    assert!(net.lists.is_empty(), "taken once");
    let again = net.connect(0, "bob");
    assert!(net.data(again).is_empty());
}

#[test]
fn a_full_mailbox_in_redis_refuses_the_new_message_as_a_dead_letter() {
    let mut net = Net::new(2);
    let size = Config::default().mailbox_size;
    for n in 0..size {
        let (status, _) = net.push(0, &format!(r#"{{"user":"bob","data":{n}}}"#));
        assert_eq!(status, 202);
    }
    let (status, body) = net.push(1, r#"{"user":"bob","data":"one too many"}"#);
    assert_eq!(status, 202);
    assert!(body.contains(r#""dead_lettered":1"#), "{body}");
    let bob = net.connect(1, "bob");
    let got = net.data(bob);
    assert_eq!(got.len(), size);
    assert_eq!(got[0], 0);
    assert_eq!(got[size - 1], size - 1);
}

#[test]
fn mail_older_than_the_mailbox_age_is_a_dead_letter_when_taken() {
    let mut net = Net::new(2);
    let (status, _) = net.push(0, r#"{"user":"bob","data":"stale"}"#);
    assert_eq!(status, 202);
    net.advance(Config::default().mailbox_age + core::time::Duration::from_secs(1));
    let bob = net.connect(1, "bob");
    assert!(net.data(bob).is_empty());
    let (_, metrics) = net.http(1, "GET /metrics HTTP/1.1", "");
    assert!(
        metrics.contains("sockeye_dead_letters_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn room_messages_cross_nodes_in_order_and_once() {
    let mut net = Net::new(3);
    let alice = net.connect(0, "alice");
    let bob = net.connect(1, "bob");
    let carol = net.connect(2, "carol");
    for c in [alice, bob, carol] {
        net.send(c, r#"{"type":"join","room":"r"}"#);
    }
    for n in 0..20 {
        net.send(
            alice,
            &format!(r#"{{"type":"message","room":"r","data":{n}}}"#),
        );
    }
    let (status, _) = net.push(2, r#"{"room":"r","data":"from the backend"}"#);
    assert_eq!(status, 202);
    let mut expected: Vec<serde_json::Value> = (0..20).map(serde_json::Value::from).collect();
    expected.push("from the backend".into());
    for c in [alice, bob, carol] {
        assert_eq!(net.data(c), expected, "client {c}");
    }
    let from_alice = net.clients[bob]
        .texts
        .iter()
        .find(|t| t["type"] == "message")
        .unwrap();
    assert_eq!(from_alice["from"], "alice");
    assert_eq!(from_alice["room"], "r");
}

#[test]
fn presence_is_a_users_first_connection_anywhere_and_last_anywhere() {
    let mut net = Net::new(2);
    let bob = net.connect(1, "bob");
    net.send(bob, r#"{"type":"join","room":"r"}"#);
    let kim0 = net.connect(0, "kim");
    net.send(kim0, r#"{"type":"join","room":"r"}"#);
    let joined = net.clients[kim0]
        .texts
        .iter()
        .find(|t| t["type"] == "joined")
        .unwrap()
        .clone();
    // The first member on its node learns of the others as they answer its sync.
    assert_eq!(joined["count"], 1);
    assert_eq!(net.presence(bob), [("kim".to_string(), true)]);
    // kim's second connection, on bob's node: nothing new for bob.
    let kim1 = net.connect(1, "kim");
    net.send(kim1, r#"{"type":"join","room":"r"}"#);
    assert_eq!(net.presence(bob).len(), 1);
    // A later joiner on node 0 is told of everyone, both nodes' users.
    let lee = net.connect(0, "lee");
    net.send(lee, r#"{"type":"join","room":"r"}"#);
    let joined = net.clients[lee]
        .texts
        .iter()
        .find(|t| t["type"] == "joined")
        .unwrap()
        .clone();
    assert_eq!(joined["count"], 3, "{joined}");
    assert_eq!(joined["members"], serde_json::json!(["bob", "kim", "lee"]));
    net.drop_client(lee);
    // kim0 learnt of bob by asking the room when it subscribed.
    assert_eq!(net.presence_of(kim0, "bob"), [true]);
    net.drop_client(kim0);
    assert_eq!(
        net.presence_of(bob, "kim"),
        [true],
        "kim is still on node 1"
    );
    net.drop_client(kim1);
    assert_eq!(net.presence_of(bob, "kim"), [true, false]);
    assert_eq!(net.presence_of(bob, "lee"), [true, false]);
}

#[test]
fn everyone_and_direct_messages_cross_nodes() {
    let mut net = Net::new(3);
    let a = net.connect(0, "a");
    let b = net.connect(1, "b");
    let c = net.connect(2, "c");
    let (status, body) = net.push(1, r#"{"everyone":true,"data":"all"}"#);
    assert_eq!(status, 202, "{body}");
    for client in [a, b, c] {
        assert_eq!(net.data(client), ["all"]);
    }
    net.send(a, r#"{"type":"message","to":"c","data":"psst"}"#);
    assert_eq!(net.data(c), ["all", "psst"]);
    let dm = net.clients[c].texts.last().unwrap().clone();
    assert_eq!(dm["from"], "a");
    assert_eq!(net.data(b), ["all"]);
    // To someone online nowhere: the sender's node keeps it.
    net.send(a, r#"{"type":"message","to":"zed","data":"later"}"#);
    let zed = net.connect(0, "zed");
    assert_eq!(net.data(zed), ["later"]);
}

#[test]
fn while_redis_is_down_pushes_are_refused_and_local_service_goes_on() {
    let mut net = Net::new(2);
    let a = net.connect(0, "a");
    let a2 = net.connect(0, "a2");
    let b = net.connect(1, "b");
    for c in [a, a2, b] {
        net.send(c, r#"{"type":"join","room":"r"}"#);
    }
    net.up = false;
    net.subs.clear();
    for i in 0..2 {
        net.nodes[i].handle_cluster_down(net.now, "connection refused");
    }
    net.pump();
    let (status, body) = net.push(0, r#"{"user":"a","data":"x"}"#);
    assert_eq!(status, 503, "{body}");
    assert!(
        net.data(a).is_empty(),
        "nothing delivered for a refused push"
    );
    let (status, body) = net.http(0, "GET /healthz HTTP/1.1", "");
    assert_eq!(status, 503);
    assert!(body.contains("redis"), "{body}");
    let (_, metrics) = net.http(0, "GET /metrics HTTP/1.1", "");
    assert!(metrics.contains("sockeye_cluster_up 0\n"), "{metrics}");
    assert!(metrics.contains("sockeye_cluster_refused_total 1\n"));
    // The node's own connections still talk; the sender hears it stayed here.
    net.send(a, r#"{"type":"message","room":"r","data":"local"}"#);
    assert_eq!(net.data(a2), ["local"]);
    assert!(net.data(b).is_empty());
    assert!(net.clients[a].texts.last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .contains("this node only"));
    // Redis is back: subscriptions again, and pushes cross again.
    net.up = true;
    for i in 0..2 {
        net.nodes[i].handle_cluster_up(net.now);
    }
    net.pump();
    let (status, _) = net.http(0, "GET /healthz HTTP/1.1", "");
    assert_eq!(status, 200);
    let (status, body) = net.push(0, r#"{"room":"r","data":"again"}"#);
    assert_eq!(status, 202, "{body}");
    assert_eq!(net.data(b), ["again"]);
}

#[test]
fn a_publication_redis_fails_is_answered_503() {
    let mut net = Net::new(2);
    let _b = net.connect(1, "b");
    // Redis fails the publish but the node has not noticed it is down yet.
    net.up = false;
    let (status, body) = net.push(0, r#"{"user":"b","data":1}"#);
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = net.http(0, "GET /metrics HTTP/1.1", "");
    assert!(metrics.contains("sockeye_cluster_publish_failures_total 1\n"));
}

#[test]
fn a_node_that_stops_beating_takes_its_users_out_of_their_rooms() {
    let mut net = Net::new(2);
    let a = net.connect(0, "a");
    let b = net.connect(1, "b");
    net.send(a, r#"{"type":"join","room":"r"}"#);
    net.send(b, r#"{"type":"join","room":"r"}"#);
    assert_eq!(net.presence(a), [("b".to_string(), true)]);
    net.advance(core::time::Duration::from_secs(5));
    assert_eq!(net.presence(a).len(), 1, "beats keep node 1 alive");
    net.dead.insert(1);
    net.advance(core::time::Duration::from_secs(7));
    assert_eq!(
        net.presence(a),
        [("b".to_string(), true), ("b".to_string(), false)]
    );
}

#[test]
fn without_a_backend_the_layer_publishes_nothing() {
    let now = Instant::ZERO;
    let mut server = Server::new(
        Config::default(),
        now,
        0,
        Box::new(SeededEntropy::new(1)),
        None,
    );
    let conn = server.handle_accept(now);
    let body = r#"{"user":"kim","data":1}"#;
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    server.handle_bytes(now, conn, request.as_bytes());
    server.handle_cluster_up(now);
    while let Some(action) = server.poll_action() {
        assert!(
            !matches!(
                action,
                Action::Publish { .. } | Action::Subscribe(_) | Action::Unsubscribe(_)
            ),
            "{action:?}"
        );
    }
}

#[test]
fn a_user_who_left_during_an_outage_is_not_counted_as_online_after_it() {
    let mut net = Net::new(2);
    let bob = net.connect(1, "bob");
    // Only the publishing connection failed: the subscriptions stay with Redis.
    net.up = false;
    for i in 0..2 {
        net.nodes[i].handle_cluster_down(net.now, "publisher lost");
    }
    net.pump();
    net.drop_client(bob);
    net.up = true;
    for i in 0..2 {
        net.nodes[i].handle_cluster_up(net.now);
    }
    net.pump();
    let (status, body) = net.push(0, r#"{"user":"bob","data":"kept"}"#);
    assert_eq!(status, 202);
    assert!(
        body.contains(r#""mailboxed":1"#),
        "not lost to a stale subscription: {body}"
    );
}

#[test]
fn presence_heals_after_an_outage_without_flapping_for_who_stayed() {
    let mut net = Net::new(2);
    let alice = net.connect(0, "alice");
    let bob = net.connect(1, "bob");
    let dave = net.connect(1, "dave");
    for c in [alice, bob, dave] {
        net.send(c, r#"{"type":"join","room":"r"}"#);
    }
    assert_eq!(net.presence_of(alice, "bob"), [true]);
    assert_eq!(net.presence_of(alice, "dave"), [true]);
    // Redis goes away; meanwhile bob leaves and carol arrives on node 1.
    net.up = false;
    net.subs.clear();
    for i in 0..2 {
        net.nodes[i].handle_cluster_down(net.now, "connection reset");
    }
    net.pump();
    net.send(bob, r#"{"type":"leave","room":"r"}"#);
    let carol = net.connect(1, "carol");
    net.send(carol, r#"{"type":"join","room":"r"}"#);
    net.up = true;
    for i in 0..2 {
        net.nodes[i].handle_cluster_up(net.now);
    }
    net.pump();
    net.advance(core::time::Duration::from_secs(5));
    assert_eq!(net.presence_of(alice, "bob"), [true, false]);
    assert_eq!(net.presence_of(alice, "carol"), [true]);
    assert_eq!(
        net.presence_of(alice, "dave"),
        [true],
        "dave stayed: no flap"
    );
    // carol's node knew of alice already: she is in carol's `joined` answer.
    let joined = net.clients[carol]
        .texts
        .iter()
        .find(|t| t["type"] == "joined")
        .unwrap()
        .clone();
    assert_eq!(
        joined["members"],
        serde_json::json!(["alice", "carol", "dave"])
    );
    assert!(net.presence_of(carol, "alice").is_empty());
}

#[test]
fn a_push_in_the_moment_before_a_subscription_is_kept_for_that_connection() {
    let mut net = Net::new(2);
    net.hold = true;
    let bob = net.connect(1, "bob");
    // Redis has not seen node 1's SUBSCRIBE yet: nobody receives it, so it is stored.
    let (status, body) = net.push(0, r#"{"user":"bob","data":"just in time"}"#);
    assert_eq!(status, 202);
    assert!(body.contains(r#""mailboxed":1"#), "{body}");
    assert!(net.data(bob).is_empty());
    // Subscribed: node 1 takes the mailbox for the connection that is already there.
    net.release();
    assert_eq!(net.data(bob), ["just in time"]);
}

#[test]
fn a_push_redis_counted_this_node_for_before_it_heard_of_its_subscription_is_202() {
    let mut net = Net::new(2);
    net.hold = true;
    let ann = net.connect(0, "ann");
    let bob = net.connect(1, "ann");
    // Redis runs node 0's SUBSCRIBE, but node 0 has not heard it confirmed yet: its own
    // subscription is among the receivers Redis counts, and confirms when its copy
    // comes back, as node 1's does with a `got`.
    for (node, channel) in std::mem::take(&mut net.held) {
        net.subs.entry(channel).or_default().insert(node);
    }
    net.hold = false;
    let (status, body) = net.push(0, r#"{"user":"ann","data":1}"#);
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (net.data(ann), net.data(bob)),
        (vec![1.into()], vec![1.into()])
    );
}

/// Tries an upgrade of `user` on `node`: the status of the answer.
fn upgrade_status(net: &mut Net, node: usize, user: &str) -> u16 {
    let request = format!(
        "GET /ws?user={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let conn = net.nodes[node].handle_accept(net.now);
    net.nodes[node].handle_bytes(net.now, conn, request.as_bytes());
    net.pump();
    let answer = net.http.remove(&(node, conn)).unwrap_or_default();
    String::from_utf8_lossy(&answer)[9..12].parse().unwrap()
}

#[test]
fn the_per_user_limit_counts_the_users_connections_on_every_live_node() {
    let config = Config {
        max_connections_per_user: 2,
        ..Config::default()
    };
    let mut net = Net::with_config(3, config);
    // Heard of each other first (a beat), as nodes are once they run.
    net.advance(core::time::Duration::from_secs(3));
    let _a = net.connect(0, "kim");
    let b = net.connect(1, "kim");
    assert_eq!(
        upgrade_status(&mut net, 2, "kim"),
        503,
        "two already, on two nodes"
    );
    assert_eq!(
        upgrade_status(&mut net, 2, "lee"),
        101,
        "another user is not counted"
    );
    net.drop_client(b);
    let _c = net.connect(2, "kim");
    // A node that dies with kim's connection leaves a count nobody takes for live.
    net.dead.insert(2);
    net.advance(core::time::Duration::from_secs(7));
    assert_eq!(upgrade_status(&mut net, 1, "kim"), 101);
}

/// The first members of a room on one node, while another node holds many of its users:
/// the room's size across nodes decides presence, so they are not sent one presence
/// line per remote user (5,000 of them filled a member's queue, and it was closed as a
/// slow consumer, in the cluster benchmark).
#[test]
fn a_room_large_across_nodes_sends_no_presence_flood_to_a_node_that_joins_late() {
    let mut net = Net::with_config(
        2,
        Config {
            presence_max_recipients: 3,
            ..Config::default()
        },
    );
    for i in 0..10 {
        let c = net.connect(0, &format!("u{i}"));
        net.send(c, r#"{"type":"join","room":"big"}"#);
    }
    let ann = net.connect(1, "ann");
    net.send(ann, r#"{"type":"join","room":"big"}"#);
    let heard = net.presence(ann).len();
    assert!(
        heard <= 3,
        "ann heard {heard} presence lines, more than the limit"
    );
    // A user on both nodes, then a local joiner: counted once, and no presence for a
    // room of 12 users.
    let u0 = net.connect(1, "u0");
    net.send(u0, r#"{"type":"join","room":"big"}"#);
    let bo = net.connect(1, "bo");
    net.send(bo, r#"{"type":"join","room":"big"}"#);
    let joined = net.clients[bo]
        .texts
        .iter()
        .find(|t| t["type"] == "joined")
        .unwrap()
        .clone();
    assert_eq!(joined["count"], 12, "{joined}");
    assert_eq!(joined["members"][0], "ann", "{joined}");
    assert_eq!(joined["members"][1], "bo", "{joined}");
    assert_eq!(joined["members"][2], "u0", "{joined}");
    assert_eq!(net.presence(ann).len(), heard, "bo's join went to ann");
    // u0 leaves node 1 but stays on node 0: still 12.
    net.drop_client(u0);
    let cy = net.connect(1, "cy");
    net.send(cy, r#"{"type":"join","room":"big"}"#);
    let joined = net.clients[cy]
        .texts
        .iter()
        .find(|t| t["type"] == "joined")
        .unwrap()
        .clone();
    assert_eq!(joined["count"], 13, "{joined}");
}
