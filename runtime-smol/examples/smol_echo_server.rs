//! Echoes every text and binary message back, on any path: the async twin of
//! `sockeye-std`'s `echo_server`, a task per connection on one thread.
//!
//! ```text
//! cargo run --release -p sockeye-smol --example smol_echo_server -- 127.0.0.1:9001
//! ```
//!
//! `Config::default()` accepts a 16 MiB message, enough for the Autobahn testsuite.

use std::rc::Rc;

use async_executor::LocalExecutor;
use sockeye_smol::{Config, Server};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let server = Server::bind(&addr, Config::default())?;
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
