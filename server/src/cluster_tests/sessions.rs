//! Reliable sessions in Redis: reliable clients on the in-memory broker, which runs the
//! commit and take-over scripts as Redis would (`cluster_sessions.rs`).

use bytes::Bytes;
use core::time::Duration;
use sockeye_core::handshake::ClientRequest;
use sockeye_core::session::{ClientSession, SUBPROTOCOL};
use sockeye_core::{
    ClientHandshake, Connection, Event, Instant, Message, SeededEntropy, SessionConfig,
    SessionEvent,
};

use super::{Delivery, Net};
use crate::cluster_sessions::{CLAIM, COMMIT};
use crate::{ConnId, Reply};

/// A reliable client: its session lives across its connections, to any node.
pub(super) struct RClient {
    node: usize,
    conn: ConnId,
    /// The handshake and the bytes of its answer so far, until the 101 is whole.
    hs: Option<(ClientHandshake, Vec<u8>)>,
    ws: Option<Connection>,
    session: ClientSession,
    /// What the session delivered (`data` of each `message`), in order.
    got: Vec<serde_json::Value>,
    /// Numbers of its own messages the server acknowledged.
    acked: Vec<u64>,
    /// The server closed the connection.
    closed: bool,
}

impl Net {
    /// A reliable client of `user` connecting to `node`: its index.
    fn rconnect(&mut self, node: usize, user: &str) -> usize {
        let session = ClientSession::new(SessionConfig::default(), self.now);
        self.rclients.push(RClient {
            node,
            conn: ConnId(0),
            hs: None,
            ws: None,
            session,
            got: Vec::new(),
            acked: Vec::new(),
            closed: false,
        });
        let rc = self.rclients.len() - 1;
        self.reconnect(rc, node, user);
        rc
    }

    /// Reliable client `rc` (cut) connects to `node` again, resuming its session.
    fn reconnect(&mut self, rc: usize, node: usize, user: &str) {
        let now = self.now;
        self.seed += 1;
        let mut entropy = SeededEntropy::new(self.seed);
        let resume = self.rclients[rc].session.resume_header_value();
        let headers: Vec<(&str, &str)> = resume
            .as_deref()
            .map(|v| ("Sockeye-Resume", v))
            .into_iter()
            .collect();
        let path = format!("/ws?user={user}");
        let request = ClientRequest {
            host: "x",
            path: &path,
            protocols: &[SUBPROTOCOL],
            origin: None,
            headers: &headers,
        };
        let ws_config = sockeye_core::Config::default();
        let mut hs = ClientHandshake::new(&ws_config, now, request, &mut entropy);
        let head = hs.poll_transmit().unwrap();
        let conn = self.nodes[node].handle_accept(now);
        let client = &mut self.rclients[rc];
        client.node = node;
        client.conn = conn;
        client.hs = Some((hs, Vec::new()));
        client.ws = None;
        client.closed = false;
        self.nodes[node].handle_bytes(now, conn, &head);
        self.pump();
    }

    /// Reliable client `rc`'s connection ends (the node sees it unless it is dead).
    fn cut(&mut self, rc: usize) {
        let now = self.now;
        let client = &mut self.rclients[rc];
        client.session.handle_disconnected(now);
        client.ws = None;
        client.hs = None;
        let (node, conn) = (client.node, client.conn);
        if !self.dead.contains(&node) {
            self.nodes[node].handle_eof(now, conn);
        }
        self.pump();
    }

    /// Reliable client `rc` sends `json`.
    fn rsend(&mut self, rc: usize, json: &str) -> u64 {
        let now = self.now;
        let seq = self.rclients[rc]
            .session
            .send(now, Bytes::from(json.to_string()), true)
            .unwrap();
        self.pump();
        seq.0
    }

    /// Bytes node `node` wrote to `conn`, if a reliable client's: fed to it.
    pub(super) fn feed_rclient(&mut self, node: usize, conn: ConnId, bytes: &[u8]) -> bool {
        let now = self.now;
        let Some(client) = self
            .rclients
            .iter_mut()
            .find(|c| c.node == node && c.conn == conn)
        else {
            return false;
        };
        let mut bytes = bytes.to_vec();
        if let Some((mut hs, mut head)) = client.hs.take() {
            head.extend_from_slice(&bytes);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                client.hs = Some((hs, head));
                return true;
            };
            let Ok(Some(response)) = hs.handle_bytes(now, &head[..end + 4]) else {
                // Refused (a 503): the client is cut.
                client.closed = true;
                return true;
            };
            let ws_config = sockeye_core::Config::default();
            client.ws = Some(response.into_connection(now, ws_config, SeededEntropy::new(9)));
            client.session.handle_connected(now);
            bytes = head[end + 4..].to_vec();
        }
        let Some(ws) = &mut client.ws else {
            return true;
        };
        ws.handle_bytes(now, &bytes);
        while let Some(event) = ws.poll_event() {
            match event {
                Event::Message(Message::Binary(payload)) => {
                    client.session.handle_message(now, payload)
                }
                Event::Closed(_) => client.closed = true,
                _ => {}
            }
        }
        true
    }

    /// Every reliable client's session events and envelopes: whether anything moved.
    pub(super) fn drive_rclients(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for c in 0..self.rclients.len() {
            let client = &mut self.rclients[c];
            while let Some(event) = client.session.poll_event() {
                match event {
                    SessionEvent::Delivered { payload, .. } => {
                        let text: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                        if text["type"] == "message" {
                            client.got.push(text["data"].clone());
                        }
                    }
                    SessionEvent::Acked { seq } => client.acked.push(seq.0),
                    _ => {}
                }
            }
            if client.closed {
                continue;
            }
            let Some(ws) = &mut client.ws else {
                continue;
            };
            while let Some(envelope) = client.session.poll_outgoing() {
                let _ = ws.send(now, Message::Binary(envelope));
            }
            let mut out = Vec::new();
            while let Some(bytes) = ws.poll_transmit() {
                out.extend_from_slice(&bytes);
            }
            let (node, conn) = (client.node, client.conn);
            if !out.is_empty() && !self.dead.contains(&node) {
                moved = true;
                self.nodes[node].handle_bytes(now, conn, &out);
            }
        }
        moved
    }

    pub(super) fn rclient_timeout(&self) -> Option<Instant> {
        self.rclients
            .iter()
            .flat_map(|c| {
                [
                    c.session.poll_timeout(),
                    c.ws.as_ref().and_then(|w| w.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    pub(super) fn rclient_timeouts(&mut self) {
        let now = self.now;
        for client in &mut self.rclients {
            client.session.handle_timeout(now);
            if let Some(ws) = &mut client.ws {
                ws.handle_timeout(now);
            }
        }
    }

    /// What the `COMMIT` and `CLAIM` scripts do in Redis.
    pub(super) fn session_script(&mut self, args: &[Bytes]) -> Result<Reply, String> {
        let keys: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
        let (keys, argv) = args[3..].split_at(keys);
        if &args[1][..] == CLAIM.as_bytes() {
            let items: Vec<Reply> = self
                .lists
                .get(&keys[0])
                .map(|l| l.iter().cloned().map(Reply::Data).collect())
                .unwrap_or_default();
            if items.is_empty() {
                return Ok(Reply::Nil);
            }
            let old = self.strings.insert(keys[1].clone(), argv[0].clone());
            return Ok(Reply::List(vec![
                Reply::Data(old.unwrap_or_default()),
                Reply::List(items),
            ]));
        }
        assert_eq!(&args[1][..], COMMIT.as_bytes());
        let node = &argv[0];
        let n: usize = std::str::from_utf8(&argv[2]).unwrap().parse().unwrap();
        let mut refused = Vec::new();
        let mut skip = vec![false; n + 1];
        let mut taken = vec![false; n + 1];
        for i in 1..=n {
            let (list, owner) = (&keys[2 * i - 2], &keys[2 * i - 1]);
            let (kind, blob) = (&argv[1 + 2 * i][..], &argv[2 + 2 * i]);
            let held = self.strings.get(owner);
            if held.is_some_and(|h| h != node) {
                refused.push(Reply::Int(i as i64));
                skip[i] = true;
                taken[i] = true;
            } else if kind == b"d" {
                self.lists.remove(list);
                self.strings.remove(owner);
            } else if kind != b"r" && !self.lists.contains_key(list) {
                refused.push(Reply::Int(-(i as i64)));
                skip[i] = true;
            } else {
                if kind == b"r" {
                    self.lists.remove(list);
                }
                self.touches += usize::from(kind == b"t");
                if kind != b"t" {
                    self.lists
                        .entry(list.clone())
                        .or_default()
                        .push_back(blob.clone());
                }
                self.strings.insert(owner.clone(), node.clone());
            }
        }
        let mut results = Vec::new();
        let mut at = 3 + 2 * n;
        while at < argv.len() {
            let store = &argv[at][..] == b"s";
            let width = if store { 8 } else { 4 };
            let cause: usize = std::str::from_utf8(&argv[at + width - 1])
                .unwrap()
                .parse()
                .unwrap();
            let result = if &argv[at][..] == b"v" {
                let si: usize = std::str::from_utf8(&argv[at + 1]).unwrap().parse().unwrap();
                let list = &keys[2 * si - 2];
                if taken[cause] && !skip[si] && self.lists.contains_key(list) {
                    let list = self.lists.entry(list.clone()).or_default();
                    list.push_back(argv[at + 2].clone());
                    self.voids += 1;
                    1
                } else {
                    0
                }
            } else if skip[cause] {
                -2
            } else {
                let channel = String::from_utf8_lossy(&argv[at + 1]).into_owned();
                let payload = if store { &argv[at + 3] } else { &argv[at + 2] };
                let received = self.broker_publish(&channel, payload) as i64;
                if received > 0 || !store {
                    received
                } else {
                    let max: usize = std::str::from_utf8(&argv[at + 5]).unwrap().parse().unwrap();
                    self.broker_store(&argv[at + 2], &argv[at + 4], max)
                }
            };
            results.push(Reply::Int(result));
            at += width;
        }
        Ok(Reply::List(vec![
            Reply::List(refused),
            Reply::List(results),
        ]))
    }

    /// Redis answers the commits it held.
    fn release_commits(&mut self) {
        self.hold_commits = false;
        let held = std::mem::take(&mut self.held_commits);
        self.queue.extend(held);
        self.pump();
    }

    /// Lets every timer run for a while (delayed ACKs, resends).
    fn settle_for(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }
}

fn to_sink(i: u64) -> String {
    format!(r#"{{"type":"message","to":"sink","data":{i}}}"#)
}

fn numbers(values: &[serde_json::Value]) -> Vec<u64> {
    values.iter().filter_map(|v| v.as_u64()).collect()
}

/// Two nodes, a plain receiver `sink` on node 1 and a reliable `kim` on node 0 who has
/// sent and been pushed `0..n`.
fn streaming(n: u64) -> (Net, usize, usize) {
    let mut net = Net::new(2);
    let sink = net.connect(1, "sink");
    let kim = net.rconnect(0, "kim");
    for i in 0..n {
        net.rsend(kim, &to_sink(i));
        let (status, _) = net.push(1, &format!(r#"{{"user":"kim","data":{i}}}"#));
        assert_eq!(status, 202);
    }
    net.settle_for(500);
    (net, sink, kim)
}

#[test]
fn a_reliable_session_resumes_on_another_node_and_gets_the_rest_once_in_order() {
    let (mut net, sink, kim) = streaming(5);
    assert_eq!(numbers(&net.rclients[kim].got), (0..5).collect::<Vec<_>>());
    assert_eq!(numbers(&net.data(sink)), (0..5).collect::<Vec<_>>());
    net.cut(kim);
    // While cut: node 0 keeps the session (its ghost takes kim's pushes into it, and
    // Redis gets them), and kim's own messages wait in its session.
    for i in 5..10 {
        let (status, _) = net.push(1, &format!(r#"{{"user":"kim","data":{i}}}"#));
        assert_eq!(status, 202);
        net.rsend(kim, &to_sink(i));
    }
    net.reconnect(kim, 1, "kim");
    net.settle_for(1_000);
    for i in 10..15 {
        net.rsend(kim, &to_sink(i));
        net.push(0, &format!(r#"{{"user":"kim","data":{i}}}"#));
    }
    net.settle_for(1_000);
    let all: Vec<u64> = (0..15).collect();
    assert_eq!(numbers(&net.rclients[kim].got), all, "to kim");
    assert_eq!(numbers(&net.data(sink)), all, "from kim");
    assert_eq!(
        net.rclients[kim].acked.len(),
        15,
        "every message acknowledged"
    );
    // The old owner dropped its copy: node 0 holds no session, node 1 holds kim's.
    assert!(net.nodes[0].owners.is_empty() && net.nodes[0].store.is_empty());
    assert_eq!(net.nodes[1].store.len(), 1);
    assert!(net.nodes[1]
        .metrics_text()
        .contains("sockeye_cluster_session_takeovers_total 1"));
}

#[test]
fn a_node_killed_mid_stream_leaves_in_redis_exactly_what_it_acted_on() {
    let (mut net, sink, kim) = streaming(3);
    // Node 0 acts on three more messages and Redis runs their commit, but the answer
    // never reaches it: it dies first. kim got no ACK for them, and resends them.
    net.hold_commits = true;
    for i in 3..6 {
        net.rsend(kim, &to_sink(i));
    }
    net.dead.insert(0);
    net.held_commits.clear();
    net.hold_commits = false;
    net.cut(kim);
    // And three that node 0 never saw.
    for i in 6..9 {
        net.rsend(kim, &to_sink(i));
    }
    net.reconnect(kim, 1, "kim");
    net.settle_for(1_000);
    for i in 3..9 {
        net.push(1, &format!(r#"{{"user":"kim","data":{i}}}"#));
    }
    net.settle_for(1_000);
    let all: Vec<u64> = (0..9).collect();
    assert_eq!(numbers(&net.data(sink)), all, "each of kim's messages once");
    assert_eq!(numbers(&net.rclients[kim].got), all, "each push once");
    assert_eq!(net.rclients[kim].acked.len(), 9);
}

#[test]
fn an_ack_waits_for_redis() {
    let (mut net, sink, kim) = streaming(1);
    net.hold_commits = true;
    net.rsend(kim, &to_sink(1));
    net.settle_for(1_000);
    assert_eq!(net.rclients[kim].acked.len(), 1, "only the first");
    // The command's publication runs in the same script: Redis has it, the sink too.
    assert_eq!(numbers(&net.data(sink)), [0, 1]);
    net.release_commits();
    net.settle_for(1_000);
    assert_eq!(net.rclients[kim].acked.len(), 2);
}

#[test]
fn a_commit_redis_fails_is_no_ack_and_nothing_is_done_twice() {
    let (mut net, sink, kim) = streaming(1);
    net.fail_commits = true;
    net.rsend(kim, &to_sink(1));
    net.settle_for(500);
    assert_eq!(
        net.rclients[kim].acked.len(),
        1,
        "no ACK for a failed commit"
    );
    assert_eq!(numbers(&net.data(sink)), [0], "nor its publication");
    let page = net.nodes[0].metrics_text();
    assert!(!page.contains("sockeye_cluster_session_commit_failures_total 0"));
    net.fail_commits = false;
    if net.rclients[kim].closed {
        // The node closed the connection (1011): kim resumes there.
        net.cut(kim);
        net.reconnect(kim, 0, "kim");
    }
    net.settle_for(3_000);
    assert_eq!(net.rclients[kim].acked.len(), 2);
    assert_eq!(numbers(&net.data(sink)), [0, 1]);
}

#[test]
fn a_resume_of_a_session_redis_does_not_have_is_refused_as_unknown() {
    let (mut net, _sink, kim) = streaming(1);
    net.cut(kim);
    // Its keys are gone (expired, or Redis lost them).
    net.lists.retain(|k, _| !k.starts_with(b"test:sess:"));
    net.strings.clear();
    net.reconnect(kim, 1, "kim");
    net.settle_for(500);
    assert_eq!(net.nodes[1].store.len(), 1, "a new session");
    assert!(net.rclients[kim].ws.is_some());
}

#[test]
fn a_redis_that_forgot_every_session_gets_them_written_whole_again() {
    let (mut net, sink, kim) = streaming(2);
    // Redis restarted without persistence.
    net.lists.clear();
    net.strings.clear();
    net.rsend(kim, &to_sink(2));
    net.settle_for(200);
    if net.rclients[kim].closed {
        // Its first commit found the list gone (no ACK; closed 1011): kim resumes.
        net.cut(kim);
        net.reconnect(kim, 0, "kim");
    }
    net.settle_for(3_000);
    net.push(0, r#"{"user":"kim","data":2}"#);
    net.settle_for(1_000);
    assert_eq!(
        numbers(&net.data(sink)),
        [0, 1, 2],
        "once, after the rewrite"
    );
    assert_eq!(net.rclients[kim].acked.len(), 3);
    assert_eq!(numbers(&net.rclients[kim].got), [0, 1, 2]);
    // Redis has the session again: another node can take it over.
    net.cut(kim);
    net.reconnect(kim, 1, "kim");
    net.settle_for(1_000);
    assert_eq!(net.nodes[1].store.len(), 1);
    assert!(net.nodes[0].store.is_empty());
}

#[test]
fn a_message_the_old_node_took_after_a_take_over_is_a_dead_letter_not_lost_silently() {
    let (mut net, _sink, kim) = streaming(1);
    net.cut(kim);
    // Node 0 takes a push into kim's session, but Redis runs its commit only after
    // node 1 took the session over.
    net.stall_commits = true;
    let push = net.http_start(
        1,
        "POST /api/push HTTP/1.1",
        r#"{"user":"kim","data":"late"}"#,
    );
    assert_eq!(
        net.http_answer(1, push),
        None,
        "no 202 before node 0 recorded it"
    );
    net.stall_commits = false;
    net.reconnect(kim, 1, "kim");
    for (i, id, args) in std::mem::take(&mut net.stalled) {
        let result = net.session_script(&args);
        net.queue.push_back(Delivery::Replied(i, id, result));
    }
    net.pump();
    net.settle_for(500);
    // Node 0's commit ran: it confirmed the push, and reports it as a dead letter.
    assert_eq!(net.http_answer(1, push).map(|(s, _)| s), Some(202));
    let dead: Vec<_> = net
        .dead_letters
        .iter()
        .filter(|(node, d)| *node == 0 && d.user == "kim")
        .collect();
    assert_eq!(dead.len(), 1, "{:?}", net.dead_letters);
    assert!(dead[0].1.reason.contains("taken over"));
    assert!(!dead[0].1.possibly_delivered);
    assert!(net.nodes[0].store.is_empty());
    assert_eq!(numbers(&net.rclients[kim].got), [0]);
}

#[test]
fn an_idle_session_is_kept_alive_in_redis() {
    let (mut net, _sink, _kim) = streaming(1);
    let before = net.touches;
    // Half a resume window (the default, 120 s) without a record of kim's.
    net.settle_for(65_000);
    assert!(net.touches > before, "kim's keys were refreshed");
}

#[test]
fn a_resume_while_redis_is_down_is_503_not_unknown() {
    let (mut net, _sink, kim) = streaming(1);
    net.cut(kim);
    net.up = false;
    for i in 0..2 {
        net.nodes[i].handle_cluster_down(net.now, "test");
    }
    net.pump();
    net.reconnect(kim, 1, "kim");
    assert!(net.rclients[kim].closed, "refused for now");
    assert!(net.nodes[1].store.is_empty());
    assert!(net.nodes[1].metrics_text().contains("sockeye_cluster_up 0"));
}

#[test]
fn a_message_a_taken_over_session_sent_to_a_session_of_its_old_node_arrives_once() {
    let mut net = Net::new(2);
    let ann = net.rconnect(0, "ann");
    let kim = net.rconnect(0, "kim");
    net.settle_for(500);
    // Node 0 delivers kim's message into ann's session, but Redis runs that commit only
    // after node 1 took kim over: kim's delivery is refused there, and node 1 acts on
    // kim's resend of the message again.
    net.stall_commits = true;
    net.rsend(kim, r#"{"type":"message","to":"ann","data":"hello"}"#);
    // And one that waits for the next commit, which node 0 has not begun when it hears
    // of the take-over: voided at once.
    net.rsend(kim, r#"{"type":"message","to":"ann","data":"again"}"#);
    net.stall_commits = false;
    net.cut(kim);
    net.reconnect(kim, 1, "kim");
    for (i, id, args) in std::mem::take(&mut net.stalled) {
        let result = net.session_script(&args);
        net.queue.push_back(Delivery::Replied(i, id, result));
    }
    net.pump();
    net.settle_for(2_000);
    assert_eq!(
        net.rclients[ann].got,
        ["hello", "again"],
        "once each, in order"
    );
    assert_eq!(net.voids, 1, "the first copy is void in Redis too");
    assert_eq!(net.rclients[kim].acked.len(), 2);
    // Ann resumes on node 1 from Redis: the void copies stay void.
    net.cut(ann);
    net.reconnect(ann, 1, "ann");
    net.settle_for(2_000);
    assert_eq!(net.rclients[ann].got, ["hello", "again"]);
}

#[test]
fn a_push_to_a_session_on_another_node_is_202_only_once_that_node_recorded_it() {
    let (mut net, _sink, kim) = streaming(1);
    net.hold_commits = true;
    let body = r#"{"user":"kim","data":"held"}"#;
    let push = net.http_start(1, "POST /api/push HTTP/1.1", body);
    net.settle_for(1_000);
    assert_eq!(
        net.http_answer(1, push),
        None,
        "Redis has not answered node 0's commit of it"
    );
    net.release_commits();
    let (status, body) = net.http_answer(1, push).expect("answered");
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(r#""remote_nodes":1"#), "{body}");
    net.settle_for(1_000);
    assert_eq!(net.rclients[kim].got.last().unwrap(), "held");
}

#[test]
fn a_push_whose_receiving_node_died_before_recording_it_is_503_not_202() {
    let (mut net, _sink, kim) = streaming(1);
    // Node 0 takes the push into kim's session, then dies before Redis ran its commit.
    net.stall_commits = true;
    let body = r#"{"user":"kim","data":"lost"}"#;
    let push = net.http_start(1, "POST /api/push HTTP/1.1", body);
    assert_eq!(
        net.http_answer(1, push),
        None,
        "not before node 0 recorded it"
    );
    net.dead.insert(0);
    net.stalled.clear();
    net.stall_commits = false;
    net.cut(kim);
    net.settle_for(6_000);
    let (status, body) = net.http_answer(1, push).expect("answered");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not confirmed by every node"), "{body}");
    // What the 503 says: kim, resumed on node 1, never got it.
    net.reconnect(kim, 1, "kim");
    net.settle_for(1_000);
    assert_eq!(numbers(&net.rclients[kim].got), [0]);
    assert!(!net.rclients[kim].closed);
}

/// One seeded run over three nodes: kim sends to the sink and is pushed to through any
/// node, is cut and resumes on any node, again and again. At the end every message has
/// arrived once and in order, both ways, and only the last node holds the session.
fn seeded_moves(seed: u64) {
    let mut rng = SeededEntropy::new(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let mut net = Net::new(3);
    let sink = net.connect(2, "sink");
    let kim = net.rconnect(0, "kim");
    let (mut sent, mut pushed) = (0u64, 0u64);
    let mut connected = true;
    for step in 0..150 {
        let choice = below(10);
        match choice {
            0..=3 => {
                net.rsend(kim, &to_sink(sent));
                sent += 1;
            }
            // (A push to kim waits for its commit: not while Redis answers late.)
            4 | 5 if !net.hold_commits => {
                let node = below(3) as usize;
                let (status, body) =
                    net.push(node, &format!(r#"{{"user":"kim","data":{pushed}}}"#));
                assert_eq!(status, 202, "seed {seed} step {step}: {body}");
                pushed += 1;
            }
            6 if connected => {
                net.cut(kim);
                connected = false;
            }
            7 if !connected => {
                net.reconnect(kim, below(3) as usize, "kim");
                connected = true;
            }
            // Redis answers commits late: ACKs and DATA wait across cuts and moves.
            8 if net.hold_commits => net.release_commits(),
            8 => net.hold_commits = true,
            _ => net.settle_for(below(400)),
        }
    }
    net.release_commits();
    if !connected {
        net.reconnect(kim, below(3) as usize, "kim");
    }
    net.settle_for(3_000);
    let at = format!("seed {seed}");
    assert_eq!(
        numbers(&net.data(sink)),
        (0..sent).collect::<Vec<_>>(),
        "{at}: from kim"
    );
    assert_eq!(
        numbers(&net.rclients[kim].got),
        (0..pushed).collect::<Vec<_>>(),
        "{at}: to kim"
    );
    assert_eq!(net.rclients[kim].session.unacked_messages(), 0, "{at}");
    let holders = net.nodes.iter().filter(|n| !n.store.is_empty()).count();
    assert_eq!(holders, 1, "{at}: one node holds the session");
    assert!(net.dead_letters.is_empty(), "{at}: {:?}", net.dead_letters);
}

#[test]
fn seeded_moves_between_nodes_deliver_once_in_order_both_ways() {
    for seed in 1..=100 {
        seeded_moves(seed);
    }
}
