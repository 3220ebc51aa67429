//! Echoes every text and binary message back, on any path: the async twin of
//! `sockeye-std`'s `echo_server`, a task per connection on one thread.
//!
//! ```text
//! cargo run --release -p sockeye-smol --features deflate --example smol_echo_server -- 127.0.0.1:9001
//! cargo run --release -p sockeye-smol --features deflate --example smol_echo_server -- --no-deflate
//! cargo run --release -p sockeye-smol --features deflate --example smol_echo_server -- --deflate-level 1
//! ```
//!
//! `Config::default()` accepts a 16 MiB message, enough for the Autobahn testsuite. Built
//! with the `deflate` feature it answers permessage-deflate offers and compresses every
//! echo, however small, as `echo_server` does; `--no-deflate` declines every offer, and
//! `--deflate-level N` compresses at level N (0–10, default 6; `scripts/autobahn.sh` uses
//! 1, as for `echo_server`).

use std::rc::Rc;

use async_executor::LocalExecutor;
use sockeye_smol::{Config, Server};

fn main() -> sockeye_smol::Result<()> {
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
                    eprintln!("smol_echo_server: --deflate-level takes a number, 0 to 10");
                    std::process::exit(2);
                }
            },
            _ => addr = arg,
        }
    }
    let server = Server::bind(&addr, Config::default())?;
    #[cfg(feature = "deflate")]
    let server = if deflate {
        let mut policy = sockeye_smol::DeflateConfig::on();
        policy.min_compress_bytes = 0;
        policy.level = level;
        server.deflate(policy)
    } else {
        server
    };
    #[cfg(not(feature = "deflate"))]
    if deflate || level != 6 {
        eprintln!("smol_echo_server: built without the `deflate` feature; no compression");
    }
    println!(
        "smol_echo_server listening on ws://{}",
        server.local_addr()?
    );
    let ex = Rc::new(LocalExecutor::new());
    async_io::block_on(ex.run(async {
        loop {
            let incoming = server.accept().await?;
            ex.spawn(async move {
                let Ok(mut ws) = incoming.upgrade().await else {
                    return;
                };
                // recv() answers pings and completes the closing handshake itself; the
                // loop ends when the connection is over, cleanly (Ok(None)) or not.
                while let Ok(Some(message)) = ws.recv().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    }))
}
