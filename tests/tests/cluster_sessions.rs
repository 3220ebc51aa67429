//! Reliable sessions in Redis (`--redis`): a `sockeye.v1` client cut from node A resumes
//! on node B, through a proxy that sends it elsewhere as a load balancer would, and gets
//! the rest once, in order, both ways; the same when node A is killed with SIGKILL in
//! the middle of the stream. Runs on the runtime `SOCKEYE_RUNTIME` names.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sockeye::RunningServer;
use sockeye_std::{
    Error, ReconnectConfig, ReliableClient, ReliableError, ReliableOptions, SessionEvent,
};
use sockeye_tests::redis::{wait_until, RedisServer};
use sockeye_tests::server::{body, get, metric, push, server_config, start_server, JsonClient};
use sockeye_tests::switch_proxy::SwitchProxy;
use sockeye_tests::{bounded, test_config};

/// Every test's bound: a hang fails instead.
const LIMIT: Duration = Duration::from_secs(90);
/// How long a condition that depends on Redis or a reconnect may take to hold.
const SETTLE: Duration = Duration::from_secs(20);
/// Messages each way, half before the move and half after.
const N: u64 = 60;
/// What a node is started with in the SIGKILL test's child process.
const NODE_ENV: &str = "SOCKEYE_TEST_NODE_REDIS";

fn config(redis_url: String) -> sockeye::ServerConfig {
    let mut config = server_config();
    config.redis = Some(redis_url);
    config.redis_prefix = "test:".into();
    config
}

fn metrics(addr: SocketAddr) -> String {
    body(&get(addr, "/metrics")).to_string()
}

fn subscribed(addr: SocketAddr, count: u64) {
    wait_until(SETTLE, &format!("{addr} subscribed to {count}"), || {
        metric(&metrics(addr), "sockeye_cluster_subscriptions") == count
    });
}

/// Pushes `data` to kim through `node`: answered 202 only once kim's session (on that
/// node) holds it in Redis.
fn push_to_kim(node: SocketAddr, data: Value) {
    let answer = push(node, "", &json!({"user": "kim", "data": data}).to_string());
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

/// kim, a reliable client, and what its session delivered.
struct Kim {
    client: ReliableClient,
    got: Vec<Value>,
}

impl Kim {
    fn connect(addr: SocketAddr) -> Kim {
        Kim::connect_as(addr, "kim")
    }

    /// A reliable client of `user`.
    fn connect_as(addr: SocketAddr, user: &str) -> Kim {
        let mut reconnect = ReconnectConfig::default();
        reconnect.initial_delay = Duration::from_millis(20);
        reconnect.max_delay = Duration::from_millis(250);
        let options = ReliableOptions {
            config: test_config(),
            reconnect,
            ..ReliableOptions::default()
        };
        let url = format!("ws://{addr}/ws?user={user}");
        let client = ReliableClient::connect(&url, options).expect("connect");
        Kim {
            client,
            got: Vec::new(),
        }
    }

    /// Drives the client for up to `span`, keeping what it delivers.
    fn pump(&mut self, span: Duration) {
        let end = Instant::now() + span;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.client.next_event(Some(left)) {
                Ok(Some(SessionEvent::Delivered { payload, .. })) => {
                    let text: Value = serde_json::from_slice(&payload).expect("JSON");
                    if text["type"] == "message" {
                        self.got.push(text["data"].clone());
                    }
                }
                Ok(Some(SessionEvent::DeadLetter { seq, reason, .. })) => {
                    panic!("kim's message {seq} was given up: {reason:?}")
                }
                Ok(Some(SessionEvent::SessionLost { reason, .. })) => {
                    panic!("kim's session was lost: {reason:?}")
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => panic!("kim: {e}"),
            }
        }
    }

    /// Sends `data` to the plain user `sink`, waiting for room in the window.
    fn send(&mut self, data: Value) {
        self.send_to("sink", data);
    }

    /// Sends `data` to user `to`, waiting for room in the window.
    fn send_to(&mut self, to: &str, data: Value) {
        let text = json!({"type": "message", "to": to, "data": data}).to_string();
        let deadline = Instant::now() + SETTLE;
        loop {
            match self.client.send(Bytes::from(text.clone()), true) {
                Ok(_) => return,
                Err(Error::Reliable(ReliableError::Send(_))) if Instant::now() < deadline => {
                    self.pump(Duration::from_millis(20))
                }
                Err(e) => panic!("kim cannot send: {e}"),
            }
        }
    }

    /// Drives the client until `what` holds (bounded).
    fn until(&mut self, what: &str, mut done: impl FnMut(&Kim) -> bool) {
        let deadline = Instant::now() + SETTLE;
        while !done(self) {
            assert!(Instant::now() < deadline, "not within {SETTLE:?}: {what}");
            self.pump(Duration::from_millis(20));
        }
    }

    /// Until the `end` push arrived and every message kim sent is acknowledged.
    fn finish(&mut self) {
        self.until("kim has the end and every ACK", |k| {
            k.got.last() == Some(&json!("end")) && k.client.unacked_messages() == 0
        });
    }
}

/// What the sink received up to `end`.
fn sink_until_end(sink: &mut JsonClient) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let message = sink.recv_type("message");
        assert_eq!(message["from"], "kim", "{message}");
        if message["data"] == "end" {
            return got;
        }
        got.push(message["data"].clone());
    }
}

fn numbers() -> Vec<Value> {
    (0..N).map(|i| json!(i)).collect()
}

/// The first half of the stream both ways, kim on `a` (the pushes through `a`, whose
/// 202 says kim's session holds them in Redis).
fn first_half(kim: &mut Kim, a: SocketAddr) {
    for i in 0..N / 2 {
        kim.send(json!(i));
        push_to_kim(a, json!(i));
        kim.pump(Duration::from_millis(1));
    }
}

/// The second half, kim on `b` once `b` has taken its session over (kim's messages
/// from `sent`, the pushes from `pushed` on), then the ends.
fn second_half(kim: &mut Kim, b: SocketAddr, sent: u64, pushed: u64) {
    kim.until("node b took kim's session over", |_| {
        metric(&metrics(b), "sockeye_cluster_session_takeovers_total") == 1
    });
    for i in N / 2..N {
        if i >= sent {
            kim.send(json!(i));
        }
        if i >= pushed {
            push_to_kim(b, json!(i));
        }
        kim.pump(Duration::from_millis(1));
    }
    kim.send(json!("end"));
    push_to_kim(b, json!("end"));
    kim.finish();
}

/// kim got every push and the sink every message of kim's, once each, in order.
fn all_once_in_order(kim: &Kim, sink: &mut JsonClient) {
    assert_eq!(kim.got[..kim.got.len() - 1], numbers()[..], "to kim");
    assert_eq!(sink_until_end(sink), numbers(), "from kim");
}

fn redis_up(addr: SocketAddr, up: u64) {
    wait_until(SETTLE, &format!("{addr} sees redis up={up}"), || {
        metric(&metrics(addr), "sockeye_cluster_up") == up
    });
}

#[test]
fn a_reliable_client_cut_from_one_node_resumes_on_another_with_nothing_lost_or_doubled() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let (node_a, node_b) = (
            start_server(config(redis.url())),
            start_server(config(redis.url())),
        );
        let (a, b) = (node_a.local_addr(), node_b.local_addr());
        subscribed(a, 3);
        subscribed(b, 3);
        let mut sink = JsonClient::connect(b, "user=sink");
        subscribed(b, 4);
        let proxy = SwitchProxy::start(a);
        let mut kim = Kim::connect(proxy.addr());
        first_half(&mut kim, a);
        // The load balancer sends kim to node b.
        proxy.switch(b);
        second_half(&mut kim, b, N / 2, N / 2);
        all_once_in_order(&kim, &mut sink);
        // Node a dropped its copy when b took it over: it holds no session.
        assert!(proxy.connections() >= 2);
        wait_until(SETTLE, "node a let kim's session go", || {
            metric(&metrics(a), "sockeye_sessions") == 0
        });
        assert_eq!(metric(&metrics(b), "sockeye_sessions"), 1);
        drop((node_a, node_b));
    });
}

#[test]
fn reliable_sessions_on_one_node_message_each_other_through_the_commit_script() {
    // Each of kim's messages to ann puts a message into ann's session on the same node,
    // so each commit carries the conditional void of `cluster_sessions::COMMIT` (run by
    // a real Redis here): nothing is voided, as nobody takes kim over.
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let node = start_server(config(redis.url()));
        let a = node.local_addr();
        subscribed(a, 3);
        let mut ann = Kim::connect_as(a, "ann");
        let mut kim = Kim::connect(a);
        for i in 0..N {
            kim.send_to("ann", json!(i));
            kim.pump(Duration::from_millis(1));
            ann.pump(Duration::from_millis(1));
        }
        let all = numbers();
        ann.until("ann has every message", |k| k.got.len() >= all.len());
        kim.until("every message of kim acknowledged", |k| {
            k.client.unacked_messages() == 0
        });
        assert_eq!(ann.got, all, "each once, in order");
        assert_eq!(
            metric(&metrics(a), "sockeye_cluster_session_commit_failures_total"),
            0
        );
        drop(node);
    });
}

/// A node in a process of its own, so it can be killed with SIGKILL.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    /// This test binary again, running only [`node_process`].
    fn start(redis: &RedisServer) -> NodeProcess {
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args(["node_process", "--exact", "--ignored", "--nocapture"])
            .env(NODE_ENV, redis.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a node process");
        let stdout = child.stdout.take().expect("its stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the node process said where it listens")
                .expect("read its stdout");
            if let Some(addr) = line.strip_prefix("node listening on ") {
                break addr.parse().expect("an address");
            }
        };
        NodeProcess { child, addr }
    }

    /// SIGKILL: no goodbye, no last commit.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore = "a node of the SIGKILL scenario, which runs it in a process of its own"]
fn node_process() {
    let Ok(url) = std::env::var(NODE_ENV) else {
        return;
    };
    let server: RunningServer = start_server(config(url));
    println!("node listening on {}", server.local_addr());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_node_killed_mid_stream_loses_nothing_and_doubles_nothing() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let mut node_a = NodeProcess::start(&redis);
        let node_b = start_server(config(redis.url()));
        let (a, b) = (node_a.addr, node_b.local_addr());
        subscribed(a, 3);
        subscribed(b, 3);
        let mut sink = JsonClient::connect(b, "user=sink");
        subscribed(b, 4);
        let proxy = SwitchProxy::start(a);
        let mut kim = Kim::connect(proxy.addr());
        first_half(&mut kim, a);
        // kim goes on sending while node a dies: some of these it acted on (their
        // publications and records are in Redis together), some it never saw.
        for i in N / 2..N / 2 + 10 {
            kim.send(json!(i));
        }
        node_a.kill();
        proxy.switch(b);
        second_half(&mut kim, b, N / 2 + 10, N / 2);
        all_once_in_order(&kim, &mut sink);
    });
}

#[test]
fn redis_restarted_empty_mid_stream_gets_the_sessions_written_again() {
    bounded(LIMIT, || {
        let mut redis = RedisServer::start();
        let (node_a, node_b) = (
            start_server(config(redis.url())),
            start_server(config(redis.url())),
        );
        let (a, b) = (node_a.local_addr(), node_b.local_addr());
        subscribed(a, 3);
        subscribed(b, 3);
        let mut sink = JsonClient::connect(a, "user=sink");
        let proxy = SwitchProxy::start(a);
        let mut kim = Kim::connect(proxy.addr());
        // `all`, `nodes`, its own `node:<id>`, the sink's and kim's channels.
        subscribed(a, 5);
        first_half(&mut kim, a);
        redis.kill();
        redis_up(a, 0);
        // Mid-stream: kim's messages reach node a, which cannot commit them (no ACK).
        for i in N / 2..N / 2 + 10 {
            kim.send(json!(i));
        }
        kim.pump(Duration::from_millis(100));
        redis.restart();
        redis_up(a, 1);
        redis_up(b, 1);
        subscribed(a, 5);
        // Redis came back empty: node a writes kim's session whole again, then ACKs.
        kim.until("kim's messages acknowledged after the restart", |k| {
            k.client.unacked_messages() == 0
        });
        for i in N / 2..N / 2 + 10 {
            push_to_kim(a, json!(i));
        }
        // What Redis holds now is enough for node b to take the session over.
        proxy.switch(b);
        second_half(&mut kim, b, N / 2 + 10, N / 2 + 10);
        all_once_in_order(&kim, &mut sink);
    });
}

#[test]
fn redis_restarted_with_appendfsync_always_keeps_every_acknowledged_session() {
    bounded(LIMIT, || {
        let mut redis = RedisServer::start_persistent();
        let mut node_a = NodeProcess::start(&redis);
        let node_b = start_server(config(redis.url()));
        let (a, b) = (node_a.addr, node_b.local_addr());
        subscribed(a, 3);
        subscribed(b, 3);
        let mut sink = JsonClient::connect(b, "user=sink");
        subscribed(b, 4);
        let proxy = SwitchProxy::start(a);
        let mut kim = Kim::connect(proxy.addr());
        first_half(&mut kim, a);
        kim.until("every ACK", |k| k.client.unacked_messages() == 0);
        // Redis dies, and node a with it: only Redis's append-only file holds kim's
        // session when Redis comes back.
        redis.kill();
        node_a.kill();
        redis.restart();
        redis_up(b, 1);
        subscribed(b, 4);
        proxy.switch(b);
        second_half(&mut kim, b, N / 2, N / 2);
        all_once_in_order(&kim, &mut sink);
    });
}
