//! Helpers for driving the `sockeye` server over real sockets: an in-process server on an
//! ephemeral port, plain-mode JSON clients, raw HTTP requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use sockeye::{start, RunningServer, Runtime, ServerConfig};
use sockeye_std::{Client, Config, Message, WebSocket};

/// A server configuration on `127.0.0.1:0` with quiet logs, on the runtime
/// `SOCKEYE_RUNTIME` names (`threads` or `smol`; the binary's own variable), so the
/// scenario suite runs against either (`scripts/test.sh` runs it against both).
pub fn server_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.listen = "127.0.0.1:0".into();
    config.log_level = sockeye::Level::Warn;
    config.runtime = match std::env::var("SOCKEYE_RUNTIME").as_deref() {
        Ok("smol") => Runtime::Smol,
        Ok("threads") => Runtime::Threads,
        Err(_) => config.runtime,
        Ok(other) => panic!("SOCKEYE_RUNTIME={other:?}: threads or smol"),
    };
    config
}

/// Starts a server in this process.
pub fn start_server(config: ServerConfig) -> RunningServer {
    start(config).expect("start the server")
}

/// A plain JSON mode client.
pub struct JsonClient {
    /// The WebSocket.
    pub ws: WebSocket,
    /// The user id the server's welcome named.
    pub user: String,
}

impl JsonClient {
    /// Connects to `/ws` with `query` (for example `user=alice`) and reads the welcome.
    pub fn connect(addr: SocketAddr, query: &str) -> JsonClient {
        let url = format!("ws://{addr}/ws?{query}");
        let ws = Client::connect(&url, Config::default()).expect("connect to /ws");
        let mut client = JsonClient {
            ws,
            user: String::new(),
        };
        let welcome = client.recv();
        assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
        client.user = welcome["user"]
            .as_str()
            .expect("welcome names the user")
            .into();
        client
    }

    /// Sends a JSON value as a text message.
    pub fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .expect("send");
    }

    /// The next message, parsed; panics if the connection ends.
    pub fn recv(&mut self) -> Value {
        match self.ws.recv().expect("recv") {
            Some(Message::Text(text)) => serde_json::from_slice(&text).expect("server sent JSON"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message of type `kind`, skipping others (presence, for example).
    pub fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let value = self.recv();
            if value["type"] == kind {
                return value;
            }
        }
    }

    /// Joins `room` and waits for the answer.
    pub fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"type": "join", "room": room}));
        let joined = self.recv_type("joined");
        assert_eq!(joined["room"], room);
        joined
    }
}

/// Writes `request` raw and returns the whole response (until the server closes).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (and close) before taking all of a too-large request.
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response.
pub fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The body of a raw response.
pub fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

/// `POST /api/push` with `body` and extra header lines; returns the raw response.
pub fn push(addr: SocketAddr, headers: &str, body: &str) -> String {
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_request(addr, request.as_bytes())
}

/// `GET path`; returns the raw response.
pub fn get(addr: SocketAddr, path: &str) -> String {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// The value of metric line `name` (with labels, if any) in a `/metrics` page.
pub fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|line| {
            let (n, v) = line.rsplit_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{page}"))
}
