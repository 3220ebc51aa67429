//! Echoes every text and binary message back, on any path.
//!
//! ```text
//! cargo run --release -p sockeye-std --features deflate --example echo_server -- 127.0.0.1:9001
//! cargo run --release -p sockeye-std --features deflate --example echo_server -- --no-deflate
//! ```
//!
//! `Config::default()` accepts a 16 MiB message, enough for the Autobahn testsuite. Built
//! with the `deflate` feature it answers permessage-deflate offers (RFC 7692) and
//! compresses every echo, however small, so the Autobahn suite's groups 12 and 13 go
//! through the codec at every size; `--no-deflate` declines every offer.

use sockeye_std::{Config, Server};

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:9001".to_string();
    let mut deflate = true;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-deflate" => deflate = false,
            _ => addr = arg,
        }
    }
    let server = Server::bind(&addr, Config::default())?;
    #[cfg(feature = "deflate")]
    let server = if deflate {
        let mut policy = sockeye_std::DeflateConfig::on();
        policy.min_compress_bytes = 0;
        server.deflate(policy)
    } else {
        server
    };
    #[cfg(not(feature = "deflate"))]
    if deflate {
        eprintln!("echo_server: built without the `deflate` feature; no compression");
    }
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
