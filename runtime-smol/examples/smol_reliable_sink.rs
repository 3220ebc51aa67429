//! The async twin of `sockeye-std`'s `reliable_sink`, with the same command line and
//! output: serves `sockeye.v1` and prints the payload of each delivered reliable message
//! on its own line, flushed at once: exactly once and in order per session, across
//! reconnects.
//!
//! ```text
//! cargo run --release -p sockeye-smol --example smol_reliable_sink -- 127.0.0.1:9001
//! ```
//!
//! Only payloads go to stdout; session events (established, resumed, lost, dead
//! letters) are reported on stderr.

use std::io::Write;

use sockeye_smol::{Config, Server, SessionConfig, SessionEvent, SessionRegistry, Upgrade};

fn main() -> sockeye_smol::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let server = Server::bind(&addr, Config::default())?;
    eprintln!(
        "smol_reliable_sink listening on ws://{}",
        server.local_addr()?
    );
    let sessions = SessionRegistry::new(SessionConfig::default())?;
    let registry = sessions.clone();
    smol::block_on(async {
        smol::spawn(async move {
            while let Ok(incoming) = server.accept().await {
                let registry = registry.clone();
                smol::spawn(async move {
                    match registry.upgrade(incoming).await {
                        Ok(Upgrade::Reliable(conn)) => {
                            let _ = conn.run().await;
                        }
                        Ok(Upgrade::Plain(mut ws)) => {
                            let _ = ws
                                .close(
                                    sockeye_smol::CloseCode::POLICY_VIOLATION,
                                    "sockeye.v1 required",
                                )
                                .await;
                            while let Ok(Some(_)) = ws.recv().await {}
                        }
                        Err(_) => {}
                    }
                })
                .detach();
            }
        })
        .detach();
        let stdout = std::io::stdout();
        while let Some((id, event)) = sessions.next_event(None).await {
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
    })
}
