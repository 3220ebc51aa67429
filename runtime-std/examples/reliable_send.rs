//! Sends the text messages `0` … `N-1` reliably, reconnecting and resuming as needed,
//! and exits 0 once every one is acknowledged; non-zero, listing the dead letters, if
//! any message was given up.
//!
//! ```text
//! cargo run --release -p sockeye-std --example reliable_send -- ws://127.0.0.1:9001 10000
//! ```

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use sockeye_std::{Error, ReliableClient, ReliableOptions, SessionEvent};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_string());
    let Some(count) = args.next().and_then(|n| n.parse::<u64>().ok()) else {
        eprintln!("usage: reliable_send ws://HOST:PORT N");
        return ExitCode::from(2);
    };
    match run(&url, count) {
        Ok(dead) if dead.is_empty() => ExitCode::SUCCESS,
        Ok(dead) => {
            eprintln!("{} dead letters:", dead.len());
            for line in dead {
                eprintln!("  {line}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("reliable_send: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends everything; returns the dead letters, one description each.
fn run(url: &str, count: u64) -> Result<Vec<String>, Error> {
    let mut client = ReliableClient::connect(url, ReliableOptions::default())?;
    let mut dead = Vec::new();
    let mut next = 0;
    while next < count {
        match client.send(Bytes::from(next.to_string()), true) {
            Ok(_) => next += 1,
            // Backpressure: let acks arrive and make room.
            Err(Error::Reliable(e)) if e.is_full() => {
                if let Some(event) = client.next_event(Some(Duration::from_millis(50)))? {
                    note(event, &mut dead);
                }
            }
            Err(e) => return Err(e),
        }
    }
    while !client.wait_acked(Some(Duration::from_secs(1)))? {}
    while let Some(event) = client.next_event(Some(Duration::ZERO))? {
        note(event, &mut dead);
    }
    eprintln!(
        "reliable_send: {count} messages acknowledged or given up over {} connections",
        client.connections()
    );
    let _ = client.close();
    Ok(dead)
}

fn note(event: SessionEvent, dead: &mut Vec<String>) {
    match event {
        SessionEvent::DeadLetter {
            seq,
            payload,
            reason,
            possibly_delivered,
            ..
        } => dead.push(format!(
            "{} ({seq}): {reason}{}",
            String::from_utf8_lossy(&payload),
            if possibly_delivered {
                ", possibly delivered"
            } else {
                ""
            }
        )),
        SessionEvent::Acked { .. } | SessionEvent::Delivered { .. } => {}
        other => eprintln!("reliable_send: {other:?}"),
    }
}
