//! What several of these test files need: the echo a test server runs per connection.

use sockeye_smol::Incoming;

/// Upgrades `incoming` and echoes every message back until the connection ends.
pub(crate) async fn echo(incoming: Incoming) {
    let Ok(mut ws) = incoming.upgrade().await else {
        return;
    };
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}
