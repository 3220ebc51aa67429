//! Echoes every text and binary message back, on any path.
//!
//! ```text
//! cargo run --release -p sockeye-std --features deflate --example echo_server -- 127.0.0.1:9001
//! cargo run --release -p sockeye-std --features deflate --example echo_server -- --no-deflate
//! cargo run --release -p sockeye-std --features deflate --example echo_server -- --deflate-level 1
//! ```
//!
//! `Config::default()` accepts a 16 MiB message, enough for the Autobahn testsuite. Built
//! with the `deflate` feature it answers permessage-deflate offers (RFC 7692) and
//! compresses every echo, however small, so the Autobahn suite's groups 12 and 13 go
//! through the codec at every size; `--no-deflate` declines every offer, and
//! `--deflate-level N` compresses at level N (0–10, default 6; `scripts/autobahn.sh` uses 1,
//! the fast path, because at 6 the echo server's compressing costs as much CPU as the
//! whole of the suite's side of groups 12 and 13).

use sockeye_std::{Config, Server};

fn main() -> sockeye_std::Result<()> {
    let mut addr = "127.0.0.1:9001".to_string();
    let mut deflate = true;
    let mut level = 6u8;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-deflate" => deflate = false,
            "--deflate-level" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => level = n,
                None => {
                    eprintln!("echo_server: --deflate-level takes a number, 0 to 10");
                    std::process::exit(2);
                }
            },
            _ => addr = arg,
        }
    }
    let server = Server::bind(&addr, Config::default())?;
    #[cfg(feature = "deflate")]
    let server = if deflate {
        let mut policy = sockeye_std::DeflateConfig::on();
        policy.min_compress_bytes = 0;
        policy.level = level;
        server.deflate(policy)
    } else {
        server
    };
    #[cfg(not(feature = "deflate"))]
    if deflate || level != 6 {
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
