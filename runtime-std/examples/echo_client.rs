//! Connects to a `ws://` URL, sends messages and prints their echoes.
//!
//! ```text
//! cargo run -p sockeye-std --example echo_client -- ws://127.0.0.1:9001/ hello world
//! echo hi | cargo run -p sockeye-std --example echo_client -- ws://127.0.0.1:9001/
//! ```
//!
//! With messages after the URL it sends those; otherwise one message per line of stdin.

use std::io::BufRead;

use sockeye_std::{Client, CloseCode, Config, Message};

fn main() {
    if let Err(e) = run() {
        eprintln!("echo_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), sockeye_std::Error> {
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

    let mut ws = Client::connect(&url, Config::default())?;
    for line in lines {
        ws.send(Message::text(line))?;
        match ws.recv()? {
            Some(echo) => match echo.as_text() {
                Some(text) => println!("{text}"),
                None => println!("<{} binary bytes>", echo.payload().len()),
            },
            None => break,
        }
    }
    ws.close(CloseCode::NORMAL, "")?;
    while ws.recv()?.is_some() {}
    Ok(())
}
