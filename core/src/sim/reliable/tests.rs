//! The seed sweep and the scenario stories of reliable delivery under cuts.

use super::*;
use crate::session::DeadLetterReason;
use std::time::Instant as WallClock;

const MS: Duration = Duration::from_millis(1);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `SOCKEYE_SEED=<n>` replays one seed; `SOCKEYE_SEEDS=<count>` widens the sweep
/// (default 1000; the soak run is `SOCKEYE_SEEDS=100000 cargo test --release -p
/// sockeye-core --features sim seed_sweep`).
#[test]
fn seed_sweep() {
    let seeds: Vec<u64> = match env_u64("SOCKEYE_SEED") {
        Some(seed) => alloc::vec![seed],
        None => (0..env_u64("SOCKEYE_SEEDS").unwrap_or(1000)).collect(),
    };
    let started = WallClock::now();
    let mut total = Stats::default();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(s) => {
                total.steps += s.steps;
                total.cuts += s.cuts;
                total.connects += s.connects;
                total.messages.0 += s.messages.0;
                total.messages.1 += s.messages.1;
                total.backpressure += s.backpressure;
                total.certain_dead += s.certain_dead;
                total.possibly_delivered_dead += s.possibly_delivered_dead;
                total.sessions_lost += s.sessions_lost;
                // Summed virtual time of all runs.
                total.end = Instant::from_nanos(total.end.as_nanos() + s.end.as_nanos());
            }
            Err(e) => panic!(
                "seed {seed} failed: {e}\n  replay: SOCKEYE_SEED={seed} cargo test -p sockeye-core --features sim seed_sweep"
            ),
        }
    }
    std::eprintln!(
        "{} seeds in {:?}: {total:?}",
        seeds.len(),
        started.elapsed()
    );
}

fn quiet_config() -> SessionConfig {
    SessionConfig {
        window_messages: 8,
        window_bytes: 64 * 1024,
        ack_delay: 10 * MS,
        ack_every_messages: 4,
        rto_initial: 200 * MS,
        rto_min: 50 * MS,
        rto_max: 2_000 * MS,
        resend_max_tries: 4,
        message_max_age: Duration::from_secs(60),
        session_expiry: Duration::from_secs(5),
        max_sessions: 16,
        confirm_deliveries: false,
    }
}

fn connected(config: SessionConfig) -> ReliableSim {
    let mut sim = ReliableSim::new(config, 7);
    sim.connect().unwrap();
    sim.settle_links().unwrap();
    sim
}

#[test]
fn resume_after_cut_mid_frame() {
    let mut sim = connected(quiet_config());
    // A 3000-byte message: its frame is half-way to the server when the cable is cut.
    sim.client_send_len(3000, false).unwrap();
    sim.deliver(true, 1500).unwrap();
    assert_eq!(sim.c2s.deliveries, 0);
    sim.cut().unwrap();
    sim.reconnect_at = Some(sim.now + 100 * MS);
    sim.advance(Duration::from_secs(1)).unwrap();
    assert!(sim.is_connected());
    assert_eq!(
        sim.c2s.deliveries, 1,
        "resent after the resume, delivered once"
    );
    assert!(sim.is_settled());
    assert!(sim
        .client_log
        .iter()
        .any(|e| matches!(e, SessionEvent::Resumed { .. })));
    sim.finish().unwrap();
}

#[test]
fn slow_reader_hits_window() {
    let mut config = quiet_config();
    config.rto_initial = 1_000 * MS; // the stall is shorter than giving up
    let mut sim = connected(config);
    // The client stops reading: the server's window fills and `send` pushes back.
    sim.stall_client_reader(Duration::from_millis(800));
    let mut accepted = 0;
    while sim.server_send(100, true).unwrap() {
        accepted += 1;
    }
    assert_eq!(accepted, 8, "exactly window_messages in flight");
    assert_eq!(sim.stats.backpressure, 1);
    // The reader catches up; acks free the window and sending resumes.
    sim.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.s2c.deliveries, 8);
    assert!(sim.server_send(100, true).unwrap());
    sim.advance(Duration::from_secs(1)).unwrap();
    sim.finish().unwrap();
}

#[test]
fn expired_session_dead_letters_unacked() {
    let mut sim = connected(quiet_config());
    // One client message arrives (its ack is still delayed), one is cut in flight.
    sim.client_send(50, false).unwrap();
    sim.settle_links().unwrap();
    sim.client_send(50, false).unwrap();
    // The server sends one message the client gets and one it never sees.
    sim.server_send(50, false).unwrap();
    sim.deliver(false, usize::MAX).unwrap();
    sim.stall_client_reader(Duration::from_secs(1));
    sim.server_send(50, false).unwrap();
    sim.cut().unwrap();
    let old = sim.sid.unwrap();
    // The client stays away longer than the server keeps the session.
    sim.reconnect_at = Some(sim.now + Duration::from_secs(6));
    sim.advance(Duration::from_secs(7)).unwrap();
    assert_ne!(sim.sid, Some(old), "a new session");
    // Client: the first message is acked (the tombstone remembered it), the second comes
    // back as a certain dead letter.
    let client_lost: Vec<_> = sim
        .client_log
        .iter()
        .filter_map(|e| match e {
            SessionEvent::DeadLetter {
                reason,
                possibly_delivered,
                ..
            } => Some((*reason, *possibly_delivered)),
            _ => None,
        })
        .collect();
    assert_eq!(client_lost, [(DeadLetterReason::SessionLost, false)]);
    assert_eq!(sim.c2s.deliveries, 1);
    // Server: both its messages come back; the one the client got may have been
    // delivered (the server cannot know), the one that was never sent certainly was not.
    let server_lost: Vec<_> = sim
        .server_log
        .iter()
        .filter_map(|e| match e {
            SessionEvent::DeadLetter {
                possibly_delivered, ..
            } => Some(*possibly_delivered),
            _ => None,
        })
        .collect();
    assert_eq!(server_lost, [true, true]);
    assert!(sim.client_log.iter().any(|e| matches!(
        e,
        SessionEvent::SessionLost {
            reason: crate::session::LostReason::Expired,
            ..
        }
    )));
    sim.finish().unwrap();
}

#[test]
fn duplicate_after_resume_is_delivered_once() {
    let mut sim = connected(quiet_config());
    // The first copy is lost in a cut.
    sim.client_send(40, true).unwrap();
    sim.cut().unwrap();
    sim.connect().unwrap();
    // After the resume the message is resent, but the server is slow to read, so the
    // retransmission timer sends it again on the same connection: two copies in flight.
    sim.stall_server_reader(Duration::from_millis(300));
    sim.deliver(false, usize::MAX).unwrap(); // the WELCOME
    let (before, _) = sim.in_flight();
    assert!(before > 0);
    sim.advance_to(sim.next_deadline().unwrap()).unwrap();
    let (after, _) = sim.in_flight();
    assert!(
        after > before,
        "a second copy went out ({before} -> {after})"
    );
    sim.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.c2s.deliveries, 1, "delivered once");
    sim.finish().unwrap();
}

#[test]
fn rto_backs_off_gives_up_on_the_connection_and_the_next_one_delivers() {
    let mut sim = connected(quiet_config());
    // The server never reads again on this connection.
    sim.stall_server_reader(Duration::from_secs(3600));
    sim.client_send(20, false).unwrap();
    let mut sends = alloc::vec![sim.now];
    let mut last = sim.in_flight().0;
    while sim.is_connected() {
        sim.advance_to(sim.next_deadline().unwrap()).unwrap();
        let now_in_flight = sim.in_flight().0;
        if now_in_flight > last {
            sends.push(sim.now);
        }
        last = now_in_flight;
    }
    // 4 transmissions, 200 ms, then 400, then 800 ms apart; at the next expiry the client
    // gives up on the connection (the server may still hold a copy).
    let gaps: Vec<u64> = sends
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_millis() as u64)
        .collect();
    assert_eq!(gaps, [200, 400, 800]);
    assert!(sim
        .client_log
        .iter()
        .any(|e| matches!(e, SessionEvent::Unresponsive)));
    assert_eq!(
        sim.client_log
            .iter()
            .filter(|e| matches!(e, SessionEvent::DeadLetter { .. }))
            .count(),
        0
    );
    // On reconnect the WELCOME proves the server never got it. The four copies went to
    // one dead connection, which costs the message one try of its `resend_max_tries`
    // (connections), so it is sent again, and delivered.
    sim.stall_server_reader(Duration::ZERO);
    sim.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.c2s.deliveries, 1);
    assert!(!sim
        .client_log
        .iter()
        .any(|e| matches!(e, SessionEvent::DeadLetter { .. })));
    // The session goes on: the next message is delivered.
    sim.client_send(20, false).unwrap();
    sim.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.c2s.deliveries, 2);
    sim.finish().unwrap();
}
