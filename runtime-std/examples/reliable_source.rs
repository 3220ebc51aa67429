//! Serves `sockeye.v1` and sends the text messages `0` … `N-1` to the first session that
//! is established, across that client's reconnects, then exits 0 once every one is
//! acknowledged; non-zero, listing the dead letters, if any message was given up.
//!
//! The counterpart of `reliable_sink` for a client that receives (`reliable_send` is a
//! client, so a receiving client such as `clients/js/examples/reliable_sink.mjs` needs a
//! server that sends):
//!
//! ```text
//! cargo run --release -p sockeye-std --example reliable_source -- 127.0.0.1:9001 10000
//! node clients/js/examples/reliable_sink.mjs ws://127.0.0.1:9001
//! ```
//!
//! An optional third argument sets `resend_max_tries` (default 8): a run through many
//! cuts transmits a message once per connection and would rightly give it up after
//! eight (`docs/PROTOCOL.md` §7).

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use sockeye_std::{Config, Error, ReliableServer, SessionConfig, SessionEvent, SessionId};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let Some(count) = args.next().and_then(|n| n.parse::<u64>().ok()) else {
        eprintln!("usage: reliable_source HOST:PORT N [RESEND_MAX_TRIES]");
        return ExitCode::from(2);
    };
    let mut session = SessionConfig::default();
    if let Some(tries) = args.next().and_then(|n| n.parse().ok()) {
        session.resend_max_tries = tries;
    }
    match run(&addr, count, session) {
        Ok(dead) if dead.is_empty() => ExitCode::SUCCESS,
        Ok(dead) => {
            eprintln!("{} dead letters:", dead.len());
            for line in dead {
                eprintln!("  {line}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("reliable_source: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for a session, sends everything to it; returns the dead letters.
fn run(addr: &str, count: u64, session: SessionConfig) -> sockeye_std::Result<Vec<String>> {
    let server = ReliableServer::bind(addr, Config::default(), session)?;
    eprintln!("reliable_source listening on ws://{}", server.local_addr()?);
    let sessions = server.registry();
    let _accepting = server.spawn()?;
    let mut target = None;
    let mut dead = Vec::new();
    let (mut next, mut settled) = (0, 0);
    while settled < count {
        if let Some(id) = target {
            while next < count {
                match sessions.send(id, Bytes::from(next.to_string()), true) {
                    Ok(_) => next += 1,
                    // Backpressure: wait for acks to make room.
                    Err(Error::Reliable(e)) if e.is_full() => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let Some((id, event)) = sessions.next_event(Some(Duration::from_millis(50))) else {
            continue;
        };
        if matches!(event, SessionEvent::SessionLost { .. }) && Some(id) == target {
            // Its unacknowledged messages came back as dead letters just before; the
            // ones never queued cannot reach this client any more.
            dead.extend((next..count).map(|i| format!("{i}: never sent, session lost")));
            break;
        }
        settled += note(id, event, &mut target, &mut dead);
    }
    eprintln!("reliable_source: {count} messages acknowledged or given up");
    Ok(dead)
}

/// Follows one event; returns how many of our messages it settled.
fn note(
    id: SessionId,
    event: SessionEvent,
    target: &mut Option<SessionId>,
    dead: &mut Vec<String>,
) -> u64 {
    match event {
        SessionEvent::Established { session_id } if target.is_none() => {
            *target = Some(session_id);
            eprintln!("reliable_source: sending to session {session_id:?}");
            0
        }
        SessionEvent::Acked { .. } if Some(id) == *target => 1,
        SessionEvent::DeadLetter {
            seq,
            payload,
            reason,
            possibly_delivered,
            ..
        } if Some(id) == *target => {
            dead.push(format!(
                "{} ({seq}): {reason}{}",
                String::from_utf8_lossy(&payload),
                if possibly_delivered {
                    ", possibly delivered"
                } else {
                    ""
                }
            ));
            1
        }
        SessionEvent::Delivered { .. } => 0,
        other => {
            eprintln!("session {id:?}: {other:?}");
            0
        }
    }
}
