//! Echoes every text and binary message back, on any path.
//!
//! ```text
//! cargo run --release -p sockeye-std --example echo_server -- 127.0.0.1:9001
//! ```
//!
//! `Config::default()` accepts a 16 MiB message, enough for the Autobahn testsuite.

use sockeye_std::{Config, Server};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let server = Server::bind(&addr, Config::default())?;
    println!("echo_server listening on ws://{}", server.local_addr()?);
    server.serve(|mut ws| {
        // recv() answers pings and completes the closing handshake itself; the loop ends
        // when the connection is over, cleanly (Ok(None)) or not (Err).
        while let Ok(Some(message)) = ws.recv() {
            if ws.send(message).is_err() {
                break;
            }
        }
    })
}
