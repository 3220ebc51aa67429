//! Many `sockeye` nodes on one real `redis-server` (`--redis`): pushes, room messages,
//! presence, direct messages and `{"everyone":true}` cross nodes; while Redis is down a
//! node serves its own connections, refuses pushes with 503 and says so on `/healthz`,
//! and it recovers once Redis is back. Runs on the runtime `SOCKEYE_RUNTIME` names.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sockeye::RunningServer;
use sockeye_tests::bounded;
use sockeye_tests::redis::{wait_until, RedisServer};
use sockeye_tests::server::{
    body, get, metric, push, server_config, start_server, status, JsonClient,
};

/// Every test's bound: a hang fails instead.
const LIMIT: Duration = Duration::from_secs(60);
/// How long a condition that depends on Redis may take to hold.
const SETTLE: Duration = Duration::from_secs(15);

fn node(redis: &RedisServer) -> RunningServer {
    let mut config = server_config();
    config.redis = Some(redis.url());
    config.redis_prefix = "test:".into();
    start_server(config)
}

fn metrics(addr: SocketAddr) -> String {
    body(&get(addr, "/metrics")).to_string()
}

/// Waits until node `addr` has `count` confirmed subscriptions.
fn subscribed(addr: SocketAddr, count: u64) {
    wait_until(
        SETTLE,
        &format!("{addr} subscribed to {count} channels"),
        || metric(&metrics(addr), "sockeye_cluster_subscriptions") == count,
    );
}

/// The next `message` (presence and the like skipped).
fn message(client: &mut JsonClient) -> Value {
    client.recv_type("message")
}

fn accepted(response: &str) -> Value {
    assert_eq!(status(response), 202, "{response}");
    serde_json::from_str(body(response)).expect("a JSON answer")
}

#[test]
fn two_nodes_share_users_rooms_and_everyone() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let (a, b) = (node(&redis), node(&redis));
        let (a, b) = (a.local_addr(), b.local_addr());
        // `all`, `nodes` and its own `node:<id>` on each.
        subscribed(a, 3);
        subscribed(b, 3);

        // A user on both nodes: a push through either reaches both connections once.
        let mut kim_a = JsonClient::connect(a, "user=kim");
        let mut kim_b = JsonClient::connect(b, "user=kim");
        subscribed(a, 4);
        subscribed(b, 4);
        let answer = accepted(&push(b, "", r#"{"user":"kim","data":1}"#));
        assert_eq!(answer["queued"]["connections"], 1);
        assert_eq!(answer["queued"]["remote_nodes"], 1);
        assert_eq!(message(&mut kim_a)["data"], 1);
        assert_eq!(message(&mut kim_b)["data"], 1);

        // A room across the two nodes: one sender's order at the other node, and its
        // own echo once.
        let mut alice = JsonClient::connect(a, "user=alice");
        let mut bob = JsonClient::connect(b, "user=bob");
        alice.join("r");
        bob.join("r");
        subscribed(a, 6);
        subscribed(b, 6);
        for n in 0..20 {
            alice.send(json!({"type": "message", "room": "r", "data": n}));
        }
        for n in 0..20 {
            let got = message(&mut bob);
            assert_eq!(
                (got["room"].clone(), got["from"].clone()),
                (json!("r"), json!("alice"))
            );
            assert_eq!(got["data"], n, "bob sees alice's messages in her order");
        }
        // Everyone, through node b: every connection on both nodes, and alice's own
        // messages came back to her exactly once before it.
        let answer = accepted(&push(b, "", r#"{"everyone":true,"data":"end"}"#));
        assert_eq!(answer["queued"]["remote_nodes"], 1);
        for n in 0..20 {
            assert_eq!(message(&mut alice)["data"], n);
        }
        assert_eq!(message(&mut alice)["data"], "end");
        assert_eq!(message(&mut bob)["data"], "end");
        assert_eq!(message(&mut kim_a)["data"], "end");
        assert_eq!(message(&mut kim_b)["data"], "end");
        let page = metrics(a);
        assert!(
            metric(&page, "sockeye_cluster_received_total") >= 2,
            "{page}"
        );
        assert_eq!(metric(&page, "sockeye_cluster_up"), 1);
    });
}

#[test]
fn three_nodes_share_presence_and_direct_messages() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let nodes: Vec<RunningServer> = (0..3).map(|_| node(&redis)).collect();
        let addr: Vec<SocketAddr> = nodes.iter().map(RunningServer::local_addr).collect();
        for &n in &addr {
            subscribed(n, 3);
        }
        let mut alice = JsonClient::connect(addr[0], "user=alice");
        let mut bob = JsonClient::connect(addr[1], "user=bob");
        let mut carol = JsonClient::connect(addr[2], "user=carol");
        alice.join("lobby");
        subscribed(addr[0], 5);
        bob.join("lobby");
        subscribed(addr[1], 5);
        carol.join("lobby");
        subscribed(addr[2], 5);
        // alice hears of bob and of carol, each once, whichever node they are on.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let presence = alice.recv_type("presence");
            assert_eq!(presence["joined"], true, "{presence}");
            seen.push(presence["user"].as_str().unwrap().to_string());
        }
        seen.sort();
        assert_eq!(seen, ["bob", "carol"]);

        // A direct message to a user on another node, and to one on two nodes.
        bob.send(json!({"type": "message", "to": "carol", "data": "hi"}));
        let got = message(&mut carol);
        assert_eq!(
            (got["from"].clone(), got["data"].clone()),
            (json!("bob"), json!("hi"))
        );
        let mut dave_0 = JsonClient::connect(addr[0], "user=dave");
        let mut dave_2 = JsonClient::connect(addr[2], "user=dave");
        subscribed(addr[0], 6);
        subscribed(addr[2], 6);
        carol.send(json!({"type": "message", "to": "dave", "data": "both"}));
        assert_eq!(message(&mut dave_0)["data"], "both");
        assert_eq!(message(&mut dave_2)["data"], "both");

        // carol's last connection anywhere ends: the others hear that she left.
        drop(carol);
        let left = alice.recv_type("presence");
        assert_eq!(
            (left["user"].clone(), left["joined"].clone()),
            (json!("carol"), json!(false))
        );
        // bob heard of carol arriving (she joined after him) and leaving, once each.
        let mut about_carol = Vec::new();
        while about_carol.last() != Some(&json!(false)) {
            let p = bob.recv_type("presence");
            if p["user"] == "carol" {
                about_carol.push(p["joined"].clone());
            }
        }
        assert_eq!(about_carol, [json!(true), json!(false)]);
    });
}

#[test]
fn redis_killed_and_restarted_mid_run() {
    bounded(LIMIT, || {
        let mut redis = RedisServer::start();
        let (a, b) = (node(&redis), node(&redis));
        let (a, b) = (a.local_addr(), b.local_addr());
        let mut kim = JsonClient::connect(b, "user=kim");
        let mut bob = JsonClient::connect(a, "user=bob");
        kim.join("lobby");
        bob.join("lobby");
        subscribed(b, 5);
        subscribed(a, 5);
        let arrived = bob.recv_type("presence");
        assert_eq!(
            (arrived["user"].clone(), arrived["joined"].clone()),
            (json!("kim"), json!(true))
        );
        accepted(&push(a, "", r#"{"user":"kim","data":"before"}"#));
        assert_eq!(message(&mut kim)["data"], "before");

        redis.kill();
        wait_until(SETTLE, "node a sees redis down", || {
            status(&get(a, "/healthz")) == 503
        });
        let health = get(a, "/healthz");
        assert!(body(&health).contains("redis"), "{health}");
        let refused = push(a, "", r#"{"user":"kim","data":"lost"}"#);
        assert_eq!(status(&refused), 503, "{refused}");
        let page = metrics(a);
        assert_eq!(metric(&page, "sockeye_cluster_up"), 0);
        assert!(metric(&page, "sockeye_cluster_refused_total") >= 1);
        assert!(metric(&page, "sockeye_cluster_outages_total") >= 1);
        // The node still serves its own connections, and says what it could not do.
        bob.join("here");
        bob.send(json!({"type": "message", "room": "here", "data": "local"}));
        assert_eq!(message(&mut bob)["data"], "local");
        let error = bob.recv_type("error");
        assert!(
            error["reason"].as_str().unwrap().contains("this node only"),
            "{error}"
        );

        // kim leaves the lobby while nobody can hear it.
        kim.send(json!({"type": "leave", "room": "lobby"}));
        kim.recv_type("left");

        redis.restart();
        wait_until(SETTLE, "both nodes see redis again", || {
            status(&get(a, "/healthz")) == 200 && status(&get(b, "/healthz")) == 200
        });
        subscribed(b, 4);
        // Presence heals: node a learns that kim left while Redis was away.
        let left = bob.recv_type("presence");
        assert_eq!(
            (left["user"].clone(), left["joined"].clone()),
            (json!("kim"), json!(false))
        );
        let answer = accepted(&push(a, "", r#"{"user":"kim","data":"after"}"#));
        assert_eq!(answer["queued"]["remote_nodes"], 1);
        assert_eq!(
            message(&mut kim)["data"],
            "after",
            "the refused push never arrived"
        );
    });
}

#[test]
fn a_node_that_shuts_down_takes_its_users_out_of_the_rooms_of_the_others() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let (a, b) = (node(&redis), node(&redis));
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        let mut alice = JsonClient::connect(a_addr, "user=alice");
        let mut bob = JsonClient::connect(b_addr, "user=bob");
        alice.join("r");
        subscribed(a_addr, 5);
        bob.join("r");
        let arrived = alice.recv_type("presence");
        assert_eq!(
            (arrived["user"].clone(), arrived["joined"].clone()),
            (json!("bob"), json!(true))
        );
        // A graceful stop: bob's connection closes 1001 and node a hears that he left.
        assert_eq!(b.shutdown(), 0);
        let left = alice.recv_type("presence");
        assert_eq!(
            (left["user"].clone(), left["joined"].clone()),
            (json!("bob"), json!(false))
        );
        drop(bob);
    });
}

#[test]
fn a_redis_that_hangs_gets_pushes_answered_503_instead_of_held() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let (a, b) = (node(&redis), node(&redis));
        let (a, b) = (a.local_addr(), b.local_addr());
        let mut kim = JsonClient::connect(b, "user=kim");
        subscribed(b, 4);
        redis.pause();
        // The publication waits for an answer that never comes, then fails: 503.
        let frozen = push(a, "", r#"{"user":"kim","data":"frozen"}"#);
        assert_eq!(status(&frozen), 503, "{frozen}");
        // Honest about it: Redis may still act on what it was sent once it wakes.
        assert!(body(&frozen).contains("may have reached"), "{frozen}");
        redis.resume();
        wait_until(SETTLE, "node a sees redis again", || {
            status(&get(a, "/healthz")) == 200
        });
        subscribed(b, 4);
        accepted(&push(a, "", r#"{"user":"kim","data":"thawed"}"#));
        let first = message(&mut kim)["data"].clone();
        if first == "frozen" {
            assert_eq!(message(&mut kim)["data"], "thawed");
        } else {
            assert_eq!(first, "thawed");
        }
    });
}

#[test]
fn mail_for_a_user_online_nowhere_waits_in_redis_for_any_node() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let (a, b) = (node(&redis), node(&redis));
        let (a, b) = (a.local_addr(), b.local_addr());
        subscribed(a, 3);
        subscribed(b, 3);
        let answer = accepted(&push(a, "", r#"{"user":"zed","data":"waited"}"#));
        assert_eq!(answer["queued"]["mailboxed"], 1);
        let mut alice = JsonClient::connect(a, "user=alice");
        alice.send(json!({"type": "message", "to": "zed", "data": "from alice"}));
        let answer = accepted(&push(b, "", r#"{"user":"zed","data":"third"}"#));
        assert_eq!(answer["queued"]["mailboxed"], 1);
        // alice's message goes to the mailbox once Redis said nobody took it; wait for
        // all three to be there before zed connects.
        wait_until(SETTLE, "three messages in zed's mailbox", || {
            redis.list_length("test:mail:zed") == 3
        });
        let mut zed = JsonClient::connect(b, "user=zed");
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(message(&mut zed));
        }
        assert_eq!(got[0]["data"], "waited", "oldest first");
        let from_alice = got.iter().find(|m| m["data"] == "from alice").unwrap();
        assert_eq!(from_alice["from"], "alice");
        assert!(got.iter().any(|m| m["data"] == "third"));
        assert_eq!(redis.list_length("test:mail:zed"), 0);
        // Taken once: another connection later, anywhere, gets nothing again.
        let mut again = JsonClient::connect(a, "user=zed");
        subscribed(a, 5);
        accepted(&push(b, "", r#"{"user":"zed","data":"live"}"#));
        assert_eq!(message(&mut again)["data"], "live");
    });
}

#[test]
fn the_per_user_limit_counts_connections_on_every_node() {
    bounded(LIMIT, || {
        let redis = RedisServer::start();
        let limited = || {
            let mut config = server_config();
            config.redis = Some(redis.url());
            config.redis_prefix = "test:".into();
            config.max_connections_per_user = 1;
            start_server(config)
        };
        let (a, b) = (limited(), limited());
        let (a, b) = (a.local_addr(), b.local_addr());
        for n in [a, b] {
            wait_until(SETTLE, "the nodes heard of each other", || {
                metric(&metrics(n), "sockeye_cluster_nodes") == 1
            });
        }
        let kim = JsonClient::connect(a, "user=kim");
        subscribed(a, 4);
        let upgrade = "GET /ws?user=kim HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n";
        let refused = sockeye_tests::server::raw_request(b, upgrade.as_bytes());
        assert_eq!(status(&refused), 503, "{refused}");
        drop(kim);
        wait_until(SETTLE, "redis counts kim gone", || {
            redis.hash_length("test:conns:kim") == 0
        });
        let _kim_b = JsonClient::connect(b, "user=kim");
    });
}
