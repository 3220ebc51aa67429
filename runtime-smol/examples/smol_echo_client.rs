//! Connects to a `ws://` URL, sends messages and prints their echoes: the async twin of
//! `sockeye-std`'s `echo_client`, with the same command line.
//!
//! ```text
//! cargo run -p sockeye-smol --example smol_echo_client -- ws://127.0.0.1:9001/ hello world
//! echo hi | cargo run -p sockeye-smol --example smol_echo_client -- ws://127.0.0.1:9001/
//! ```
//!
//! With messages after the URL it sends those; otherwise one message per line of stdin.

use std::io::BufRead;

use sockeye_smol::{Client, CloseCode, Config, Message};

fn main() {
    if let Err(e) = smol::block_on(run()) {
        eprintln!("smol_echo_client: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), sockeye_smol::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_string());
    let given: Vec<String> = args.collect();
    let lines: Box<dyn Iterator<Item = String>> = if given.is_empty() {
        Box::new(std::io::stdin().lock().lines().map_while(Result::ok))
    } else {
        Box::new(given.into_iter())
    };

    let mut ws = Client::connect(&url, Config::default()).await?;
    for line in lines {
        ws.send(Message::text(line)).await?;
        match ws.recv().await? {
            Some(echo) => match echo.as_text() {
                Some(text) => println!("{text}"),
                None => println!("<{} binary bytes>", echo.payload().len()),
            },
            None => break,
        }
    }
    ws.close(CloseCode::NORMAL, "").await?;
    while ws.recv().await?.is_some() {}
    Ok(())
}
