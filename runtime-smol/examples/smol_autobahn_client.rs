//! The client side of the Autobahn testsuite on the async runtime: echoes every case of
//! a fuzzing server, like `sockeye-std`'s `autobahn_client`.
//!
//! Reads `AUTOBAHN_URL` (default `ws://127.0.0.1:9001`) and `AUTOBAHN_AGENT` (default
//! `sockeye`), asks `/getCaseCount`, runs `/runCase?case=i&agent=…` for every case by
//! echoing each message until the connection closes, then asks `/updateReports`. Built
//! with the `deflate` feature it offers permessage-deflate to every case and compresses
//! every echo, however small, at level `AUTOBAHN_DEFLATE_LEVEL` if set (0–10, default 6;
//! `scripts/autobahn.sh` sets 1).

use sockeye_smol::{Client, ClientOptions, Config};

fn main() -> Result<(), sockeye_smol::Error> {
    smol::block_on(run())
}

async fn run() -> Result<(), sockeye_smol::Error> {
    let base = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/');
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "sockeye".into());

    let mut ws = Client::connect(&format!("{base}/getCaseCount"), Config::default()).await?;
    let count: u32 = match ws.recv().await? {
        Some(message) => message
            .as_text()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        None => 0,
    };
    while ws.recv().await?.is_some() {}
    eprintln!("smol_autobahn_client: {count} cases");

    #[cfg(feature = "deflate")]
    let policy = {
        let mut policy = sockeye_smol::DeflateConfig::on();
        policy.min_compress_bytes = 0;
        if let Some(level) = std::env::var("AUTOBAHN_DEFLATE_LEVEL")
            .ok()
            .and_then(|l| l.parse().ok())
        {
            policy.level = level;
        }
        policy
    };
    let options = ClientOptions {
        #[cfg(feature = "deflate")]
        deflate: Some(&policy),
        ..ClientOptions::default()
    };
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // Errors are part of the tests (the server breaks the protocol on purpose); the
        // verdict is the server's to give, so just move on to the next case.
        if let Ok(mut ws) = Client::connect_with(&url, Config::default(), options).await {
            while let Ok(Some(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
    }

    let mut ws = Client::connect(
        &format!("{base}/updateReports?agent={agent}"),
        Config::default(),
    )
    .await?;
    while ws.recv().await?.is_some() {}
    Ok(())
}
