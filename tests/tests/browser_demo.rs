//! End to end in a real browser: headless Chromium pages open the demo page at `/`, which
//! speaks reliable mode (`sockeye.v1`) through the `/sockeye.js` the server serves, each
//! page behind its own [`FaultProxy`] to the `sockeye` server.
//!
//! - `reliable_chat_through_cutting_proxies`: two pages chat in one room (with a plain-mode
//!   client, a bare browser `WebSocket`, in the room too); then their connections are cut
//!   repeatedly while both send (a few unacknowledged messages each at a time, as people
//!   chat), first on the client's side only (the server has not
//!   noticed, so it keeps what it sends in the session: every message is shown exactly once
//!   on both pages, in order per sender, and the server gives nothing up), then both ways (the server sees the end at once,
//!   and a room message published while a page's session has no connection is not kept for
//!   it, `docs/PROTOCOL.md` §10: each page still shows its own messages once each, all
//!   acknowledged, and the other's at most once and in order; direct messages, which wait
//!   for a session without a connection, close the phase).
//! - `reload_resumes_from_session_storage`: a page whose connection hangs sends messages that
//!   cannot be acknowledged, is sent room and direct messages, and is reloaded; more direct
//!   messages are sent to it while it reloads. The reloaded page resumes its session from
//!   `sessionStorage`: every message is shown exactly once, its own acknowledged.
//!
//! Nothing waits on the clock: each step waits, with a bounded deadline, for what the page
//! shows. Cut offsets are seeded (`SOCKEYE_SEED` replays; the test prints its seed).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sockeye_tests::browser::{chromium, Browser, Entry, Page};
use sockeye_tests::proxy::{Cut, FaultProxy};
use sockeye_tests::server::{body, get, metric, server_config, start_server};
use sockeye_tests::{bounded, test_seed};

/// How long any one condition may take to hold (a guard against hangs, not a measurement).
const LIMIT: Duration = Duration::from_secs(90);

/// `value` as a JavaScript literal, for building page expressions.
fn js(value: Value) -> String {
    value.to_string()
}

/// A page expression: the page shows a chat message with each of `texts`.
fn shows_all(texts: &[String]) -> String {
    format!(
        "window.demo !== undefined && (() => {{ const shown = new Set(demo.entries.filter((e) => e.kind === 'msg').map((e) => e.text)); return {}.every((t) => shown.has(t)); }})()",
        js(json!(texts))
    )
}

/// A page expression: every message the page sent is acknowledged.
const ALL_ACKED: &str =
    "window.demo !== undefined && demo.entries.filter((e) => e.mine).every((e) => e.state === 'acknowledged')";

/// Sends `text` from `page` (to the room, or to user `to`); the page must accept it.
fn say(page: &mut Page, text: &str, to: Option<&str>) {
    let sent = page.eval(&format!("demo.say({}, {})", js(json!(text)), js(json!(to))));
    assert!(
        sent.is_string(),
        "the page refused to send {text:?}: {sent}"
    );
}

/// The texts of the chat messages on a page from `who` (its own if `who` is the page's user).
fn texts_from(entries: &[Entry], who: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.kind == "msg" && e.from.as_deref() == Some(who))
        .map(|e| e.text.clone())
        .collect()
}

/// Byte offsets for `n` cuts, seeded: the first in `first`, each next one `gap` bytes after
/// the one before, more or less half of it. The gap keeps a cut from landing in the resume
/// after the one before, over and over: a message that goes unacknowledged across many
/// connections runs out of tries (`resend_max_tries` counts them over the session's life)
/// and becomes a dead letter, which is the protocol working, not what this test is after.
fn offsets(seed: &mut u64, n: usize, first: std::ops::Range<u64>, gap: u64) -> Vec<u64> {
    let mut next = || {
        // xorshift64*
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut at = first.start + next() % (first.end - first.start);
    let mut all = vec![at];
    for _ in 1..n {
        at += gap / 2 + next() % gap;
        all.push(at);
    }
    all
}

/// The server's counts of dead letters, resends and resumes, for failure messages.
fn counts(server: SocketAddr) -> String {
    let page = get(server, "/metrics");
    let page = body(&page);
    format!(
        "server: {} dead letters, {} resends, {} resumes",
        metric(page, "sockeye_dead_letters_total"),
        metric(page, "sockeye_resends_total"),
        metric(page, "sockeye_resumes_total")
    )
}

/// The server's dead letters so far.
fn dead_letters(server: SocketAddr) -> u64 {
    metric(body(&get(server, "/metrics")), "sockeye_dead_letters_total")
}

/// Waits until `expression` holds on `page`; a failure says what the server counted.
fn wait(page: &mut Page, expression: &str, server: SocketAddr) {
    page.wait_for_else(expression, LIMIT, &|| counts(server));
}

/// Opens the demo page for `user` in room `lobby` behind `proxy`, and waits until it joined.
fn open(browser: &Browser, proxy: &FaultProxy, user: &str, server: SocketAddr) -> Page {
    let mut page = browser.open(&format!("http://{}/?user={user}&room=lobby", proxy.addr()));
    wait(
        &mut page,
        "window.demo !== undefined && demo.joined",
        server,
    );
    page
}

#[test]
fn reliable_chat_through_cutting_proxies() {
    bounded(Duration::from_secs(420), || {
        let seed = test_seed();
        println!("seed {seed} (SOCKEYE_SEED={seed} replays the cut offsets)");
        let mut rng = seed | 1;
        let bin = chromium();
        let server = start_server(server_config());
        let srv = server.local_addr();
        let (pa, pb) = (
            FaultProxy::start(server.local_addr()),
            FaultProxy::start(server.local_addr()),
        );
        let browser = Browser::start(&bin, "chat");
        let mut alice = open(&browser, &pa, "alice", srv);
        let mut bob = open(&browser, &pb, "bob", srv);
        wait(&mut alice, "demo.members.has('bob')", srv);
        assert_eq!(alice.eval("demo.state"), "connected");
        assert_eq!(alice.eval("demo.me"), "alice");

        // A plain-mode client in the same room: a bare browser WebSocket, no sockeye.js.
        alice.eval(
            "window.carol = { got: [], joined: false };
             carol.ws = new WebSocket('ws://' + location.host + '/ws?user=carol');
             carol.ws.onmessage = (ev) => {
               const m = JSON.parse(ev.data);
               if (m.type === 'welcome') carol.ws.send(JSON.stringify({ type: 'join', room: 'lobby' }));
               if (m.type === 'joined') carol.joined = true;
               if (m.type === 'message') carol.got.push(m.from + ': ' + (m.data.text ?? m.data));
             }; true",
        );
        wait(&mut alice, "carol.joined", srv);
        wait(&mut bob, "demo.members.has('carol')", srv);
        say(&mut alice, "hello from alice", None);
        say(&mut bob, "hi alice, bob here", None);
        alice.eval("carol.ws.send(JSON.stringify({ type: 'message', room: 'lobby', data: 'carol, plain mode' })); true");
        for page in [&mut alice, &mut bob] {
            wait(
                page,
                &shows_all(
                    &[
                        "hello from alice",
                        "hi alice, bob here",
                        "carol, plain mode",
                    ]
                    .map(String::from),
                ),
                srv,
            );
            wait(page, ALL_ACKED, srv);
        }
        wait(&mut alice, "['alice: hello from alice', 'bob: hi alice, bob here', 'carol: carol, plain mode'].every((t) => carol.got.includes(t))", srv);
        // What the page shows is the DOM, not only the script's record of it.
        assert_eq!(
            bob.eval(
                "document.getElementById('log').innerText.includes('alice: hello from alice')"
            ),
            Value::Bool(true)
        );
        assert_eq!(
            alice.eval(
                "[...document.querySelectorAll('#log .badge')].map((b) => b.textContent).join()"
            ),
            "acknowledged",
            "alice's one message shows as acknowledged"
        );
        alice.eval("carol.ws.close(); true");
        wait(&mut bob, "!demo.members.has('carol')", srv);

        // Phase 1: cuts on the client's side only, while both pages send.
        pa.arm(&offsets(&mut rng, CUTS, 300..1_000, GAP), Cut::ClientSide);
        pb.arm(&offsets(&mut rng, CUTS, 300..1_000, GAP), Cut::ClientSide);
        let (sent_a, sent_b) = chat(&mut alice, &mut bob, (&pa, &pb), "1", srv);
        // Markers in each sender's order close the phase: whatever a page shows of the
        // other's messages, it shows before the other's marker.
        let end = |who: &str| format!("{who}: end of phase 1");
        say(&mut alice, &end("alice"), None);
        say(&mut bob, &end("bob"), None);
        for page in [&mut alice, &mut bob] {
            wait(page, &shows_all(&[end("alice"), end("bob")]), srv);
            wait(page, ALL_ACKED, srv);
        }
        assert_eq!(
            (pa.cuts_done(), pb.cuts_done()),
            (CUTS, CUTS),
            "all cuts made"
        );
        assert_eq!(
            dead_letters(srv),
            0,
            "nothing was given up ({})",
            counts(srv)
        );
        // Each sender's whole stream so far: its first message, phase 1's, its marker.
        let stream = |first: &str, phase: &[String], who: &str| -> Vec<String> {
            let mut all = vec![first.to_string()];
            all.extend(phase.iter().cloned());
            all.push(end(who));
            all
        };
        let stream_a = stream("hello from alice", &sent_a, "alice");
        let stream_b = stream("hi alice, bob here", &sent_b, "bob");
        for (page, me, other, mine, theirs) in [
            (&mut alice, "alice", "bob", &stream_a, &stream_b),
            (&mut bob, "bob", "alice", &stream_b, &stream_a),
        ] {
            let entries = page.entries();
            assert_eq!(
                &texts_from(&entries, me),
                mine,
                "{me} shows its own messages once each, in order"
            );
            assert_eq!(
                &texts_from(&entries, other),
                theirs,
                "{me} shows {other}'s messages exactly once each, in order"
            );
            assert!(entries
                .iter()
                .filter(|e| e.mine)
                .all(|e| e.state.as_deref() == Some("acknowledged")));
            assert_eq!(
                page.eval("demo.states.includes('refused')"),
                Value::Bool(false)
            );
        }

        // Phase 2: cuts both ways. The server notices each cut, and a page's session keeps
        // its place in the room while it has no connection: the same holds.
        pa.arm(&offsets(&mut rng, CUTS, 300..1_000, GAP), Cut::Both);
        pb.arm(&offsets(&mut rng, CUTS, 300..1_000, GAP), Cut::Both);
        let (sent_a, sent_b) = chat(&mut alice, &mut bob, (&pa, &pb), "2", srv);
        // The markers are direct messages: one for a page whose session has no connection
        // waits for it in the server, and arrives after the sender's earlier messages.
        let end = |who: &str| format!("{who}: end of phase 2");
        say(&mut alice, &end("alice"), Some("bob"));
        say(&mut bob, &end("bob"), Some("alice"));
        for page in [&mut alice, &mut bob] {
            wait(page, &shows_all(&[end("alice"), end("bob")]), srv);
            wait(page, ALL_ACKED, srv);
        }
        assert_eq!((pa.cuts_done(), pb.cuts_done()), (2 * CUTS, 2 * CUTS));
        for (page, me, other, mine, theirs) in [
            (&mut alice, "alice", "bob", &sent_a, &sent_b),
            (&mut bob, "bob", "alice", &sent_b, &sent_a),
        ] {
            let entries = page.entries();
            let mut expected = mine.clone();
            expected.push(end(me));
            let own = texts_from(&entries, me);
            assert_eq!(
                own[own.len() - expected.len()..],
                expected[..],
                "{me}'s own messages once each, in order"
            );
            assert!(entries
                .iter()
                .filter(|e| e.mine)
                .all(|e| e.state.as_deref() == Some("acknowledged")));
            let mut expected = vec![format!("{other}: end of phase 1")];
            expected.extend(theirs.iter().cloned());
            expected.push(end(other));
            let got = texts_from(&entries, other);
            let start = got
                .iter()
                .position(|t| *t == expected[0])
                .expect("phase 1's marker");
            assert_eq!(
                &got[start..],
                &expected[..],
                "{me} shows {other}'s messages exactly once each, in order"
            );
        }
        assert_eq!(
            dead_letters(srv),
            0,
            "nothing was given up ({})",
            counts(srv)
        );
    });
}

/// Messages each page sends per phase, at least (more while cuts are pending).
const N: usize = 40;
/// Cuts per proxy per phase.
const CUTS: usize = 6;
/// The mean distance between two cuts, in bytes through the proxy (see [`offsets`]).
const GAP: u64 = 1_500;
/// A page expression: at most a few of the page's messages are unacknowledged.
const FEW_UNACKED: &str = "demo.entries.filter((e) => e.mine && e.state === 'sent').length <= 4";

/// Both pages send to the room, alternately, `N` messages each or more while `proxies`
/// have cuts pending, with at most a few unacknowledged each (as people chat, not as a
/// benchmark: a burst sent through a cut lands in every resume after it, and a message
/// that goes unacknowledged across many connections runs out of tries); then waits until
/// all are acknowledged. Returns what each sent, in order.
fn chat(
    alice: &mut Page,
    bob: &mut Page,
    proxies: (&FaultProxy, &FaultProxy),
    phase: &str,
    srv: SocketAddr,
) -> (Vec<String>, Vec<String>) {
    let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
    let (before_a, before_b) = (proxies.0.forwarded(), proxies.1.forwarded());
    let mut i = 0;
    while i < N || proxies.0.cuts_pending() + proxies.1.cuts_pending() > 0 {
        assert!(i < 10 * N, "cuts still pending after {i} messages each");
        for (page, sent, who) in [
            (&mut *alice, &mut sent_a, "alice"),
            (&mut *bob, &mut sent_b, "bob"),
        ] {
            let text = format!("{who} {phase}.{i}");
            say(page, &text, None);
            sent.push(text);
        }
        wait(alice, FEW_UNACKED, srv);
        wait(bob, FEW_UNACKED, srv);
        i += 1;
    }
    wait(alice, ALL_ACKED, srv);
    wait(bob, ALL_ACKED, srv);
    println!(
        "phase {phase}: {i} messages each, {} and {} bytes through the proxies, {} and {} connections so far",
        proxies.0.forwarded() - before_a,
        proxies.1.forwarded() - before_b,
        proxies.0.connections(),
        proxies.1.connections()
    );
    (sent_a, sent_b)
}

#[test]
fn reload_resumes_from_session_storage() {
    bounded(Duration::from_secs(300), || {
        let bin = chromium();
        let server = start_server(server_config());
        let srv = server.local_addr();
        let (pa, pb) = (
            FaultProxy::start(server.local_addr()),
            FaultProxy::start(server.local_addr()),
        );
        let browser = Browser::start(&bin, "reload");
        let mut alice = open(&browser, &pa, "alice", srv);
        let mut bob = open(&browser, &pb, "bob", srv);
        wait(&mut alice, "demo.members.has('bob')", srv);

        // Before: both chat normally.
        for i in 0..3 {
            say(&mut alice, &format!("a{i}"), None);
            say(&mut bob, &format!("b{i}"), None);
        }
        wait(
            &mut alice,
            &shows_all(&["b0", "b1", "b2"].map(String::from)),
            srv,
        );
        wait(
            &mut bob,
            &shows_all(&["a0", "a1", "a2"].map(String::from)),
            srv,
        );
        wait(&mut alice, ALL_ACKED, srv);
        wait(&mut bob, ALL_ACKED, srv);

        // Bob's connection hangs (the server does not know): what he sends now cannot be
        // acknowledged, and what is sent to him sits unacknowledged in his session.
        pb.freeze();
        for i in 3..6 {
            say(&mut bob, &format!("b{i}"), None);
        }
        for i in 3..6 {
            say(&mut alice, &format!("a{i}"), None);
        }
        for i in 0..3 {
            say(&mut alice, &format!("d{i}"), Some("bob"));
        }
        wait(&mut alice, ALL_ACKED, srv);
        let unacked = bob.eval("JSON.stringify(demo.entries.filter((e) => e.mine && e.state !== 'acknowledged').map((e) => e.text))");
        assert_eq!(
            unacked, r#"["b3","b4","b5"]"#,
            "bob's last messages are not acknowledged before the reload"
        );

        // The reload; more direct messages for bob while it happens.
        bob.reload();
        for i in 3..6 {
            say(&mut alice, &format!("d{i}"), Some("bob"));
        }
        wait(&mut alice, ALL_ACKED, srv);
        wait(
            &mut bob,
            "window.demo !== undefined && demo.state === 'resumed'",
            srv,
        );
        assert_eq!(
            bob.eval("JSON.stringify(demo.states)"),
            r#"["resuming","connected","resumed"]"#,
            "the reloaded page resumed its session"
        );
        say(&mut alice, "a end", None);
        say(&mut bob, "b end", None);
        let from_alice: Vec<String> = [
            "a0", "a1", "a2", "a3", "a4", "a5", "d0", "d1", "d2", "d3", "d4", "d5", "a end",
        ]
        .map(String::from)
        .to_vec();
        let from_bob: Vec<String> = ["b0", "b1", "b2", "b3", "b4", "b5", "b end"]
            .map(String::from)
            .to_vec();
        wait(&mut bob, &shows_all(&from_alice), srv);
        wait(&mut alice, &shows_all(&from_bob), srv);
        wait(&mut bob, ALL_ACKED, srv);
        wait(&mut alice, ALL_ACKED, srv);

        let entries = bob.entries();
        assert_eq!(
            texts_from(&entries, "alice"),
            from_alice,
            "bob shows alice's messages once each, in order"
        );
        assert_eq!(
            texts_from(&entries, "bob"),
            from_bob,
            "bob shows his own once each, in order"
        );
        let direct: Vec<&str> = entries
            .iter()
            .filter(|e| e.to.as_deref() == Some("bob"))
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(
            direct,
            ["d0", "d1", "d2", "d3", "d4", "d5"],
            "the direct messages are shown as such"
        );
        let entries = alice.entries();
        assert_eq!(
            texts_from(&entries, "bob"),
            from_bob,
            "alice shows bob's messages once each, in order"
        );
        assert_eq!(texts_from(&entries, "alice"), from_alice, "and her own");
        assert_eq!(
            dead_letters(srv),
            0,
            "nothing was given up ({})",
            counts(srv)
        );
        // The page shows the restored states, not only the script's record of them.
        assert_eq!(
            bob.eval(
                "[...document.querySelectorAll('#log .badge')].map((b) => b.textContent).join()"
            ),
            Value::String(vec!["acknowledged"; from_bob.len()].join(","))
        );
    });
}

/// The demo page against the server with `--deflate`: Chromium always offers
/// permessage-deflate, so the page's reliable connection and a bare `WebSocket` beside it
/// both agree to it (the server counts them; the browser shows the agreed header), a
/// 40 KB direct message crosses the page's proxy compressed both ways, and chat messages
/// flow between the demo and the bare socket, acknowledged.
#[test]
fn the_demo_page_agrees_to_deflate() {
    bounded(Duration::from_secs(180), || {
        let bin = chromium();
        let mut config = server_config();
        config.deflate = true;
        let server = start_server(config);
        let srv = server.local_addr();
        let deflated = || metric(body(&get(srv, "/metrics")), "sockeye_deflate_connections");
        let proxy = FaultProxy::start(srv);
        let browser = Browser::start(&bin, "deflate");
        let mut alice = open(&browser, &proxy, "alice", srv);
        assert_eq!(deflated(), 1, "the demo's reliable connection");

        alice.eval(
            "window.carol = { got: [], open: false };
             carol.ws = new WebSocket('ws://' + location.host + '/ws?user=carol');
             carol.ws.onmessage = (ev) => {
               const m = JSON.parse(ev.data);
               if (m.type === 'welcome') carol.open = true;
               if (m.type === 'message') carol.got.push(m.data.text ?? m.data);
             }; true",
        );
        wait(&mut alice, "carol.open", srv);
        let extensions = alice.eval("carol.ws.extensions");
        assert!(
            extensions
                .as_str()
                .is_some_and(|e| e.starts_with("permessage-deflate")),
            "the bare WebSocket agreed to {extensions}"
        );
        assert_eq!(deflated(), 2);

        // 40 KB to itself: up to the server and back down, 80 KB of payload.
        const BIG: &str = "'the quick brown fox jumps over the lazy dog. '.repeat(900)";
        let before = proxy.forwarded();
        alice.eval(&format!(
            "carol.ws.send(JSON.stringify({{ type: 'message', to: 'carol', data: {BIG} }})); true"
        ));
        wait(&mut alice, &format!("carol.got.includes({BIG})"), srv);
        let wire = proxy.forwarded() - before;
        assert!(
            wire * 4 < 2 * 40_500,
            "{wire} bytes crossed the proxy for 81,000 bytes of payload"
        );
        let memory = metric(body(&get(srv, "/metrics")), "sockeye_deflate_memory_bytes");
        assert!(
            memory > 0,
            "the connections hold their compression contexts"
        );

        // Chat between the demo (reliable mode) and the bare socket, both compressed.
        let hello = "hello carol, from the demo, compressed ".repeat(10);
        say(&mut alice, &hello, Some("carol"));
        wait(
            &mut alice,
            &format!("carol.got.includes({})", js(json!(hello))),
            srv,
        );
        wait(&mut alice, ALL_ACKED, srv);
        let answer = "hi alice, carol here, compressed too ".repeat(10);
        alice.eval(&format!(
            "carol.ws.send(JSON.stringify({{ type: 'message', to: 'alice', data: {} }})); true",
            js(json!(answer))
        ));
        wait(&mut alice, &shows_all(&[answer]), srv);
        alice.eval("carol.ws.close(); true");
        drop(alice);
        server.shutdown();
    });
}
