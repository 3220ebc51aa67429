//! Serves `sockeye.v1` and prints the payload of each delivered reliable message on its
//! own line, flushed at once: exactly once and in order per session, across reconnects.
//!
//! ```text
//! cargo run --release -p sockeye-std --example reliable_sink -- 127.0.0.1:9001
//! ```
//!
//! Only payloads go to stdout; session events (established, resumed, lost, dead
//! letters) are reported on stderr.

use std::io::Write;

use sockeye_std::{Config, ReliableServer, SessionConfig, SessionEvent};

fn main() -> sockeye_std::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let server = ReliableServer::bind(&addr, Config::default(), SessionConfig::default())?;
    eprintln!("reliable_sink listening on ws://{}", server.local_addr()?);
    let sessions = server.registry();
    let _accepting = server.spawn()?;
    let stdout = std::io::stdout();
    while let Some((id, event)) = sessions.next_event(None) {
        match event {
            SessionEvent::Delivered { payload, .. } => {
                let mut out = stdout.lock();
                out.write_all(&payload)?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
            SessionEvent::Acked { .. } => {}
            other => eprintln!("session {id:?}: {other:?}"),
        }
    }
    Ok(())
}
