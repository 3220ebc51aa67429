//! Headless Chromium for the end-to-end tests of the demo page: a browser started with a
//! DevTools endpoint, pages opened in it, and `Runtime.evaluate` to drive and read them.
//!
//! Chromium (Debian's `chromium`) is installed by `scripts/install-chromium.sh` if missing;
//! if it cannot be installed the tests fail rather than skip. The pages are driven over the
//! DevTools protocol with this repository's own std WebSocket client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sockeye_std::{Client, Config, Message, WebSocket};

/// The Chromium binary, installed first if need be.
pub fn chromium() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-chromium.sh");
    let out = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/install-chromium.sh");
    assert!(
        out.status.success(),
        "chromium is required and could not be installed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A headless Chromium, killed (and its profile removed) when dropped.
pub struct Browser {
    child: Child,
    devtools: String,
    profile: PathBuf,
}

impl Browser {
    pub fn start(bin: &Path, name: &str) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("sockeye-chromium-{}-{name}", std::process::id()));
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium announces its DevTools endpoint");
        // ws://127.0.0.1:PORT/devtools/browser/ID → 127.0.0.1:PORT
        let devtools = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        Browser {
            child,
            devtools,
            profile,
        }
    }

    /// Opens `url` in a new page and returns a DevTools connection to it.
    pub fn open(&self, url: &str) -> Page {
        let target: Value = serde_json::from_str(&http(&self.devtools, "PUT", "/json/new"))
            .expect("DevTools /json/new answers JSON");
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .expect("a page target has a webSocketDebuggerUrl");
        let mut page = Page {
            ws: Client::connect(ws_url, Config::default()).expect("connect to the page"),
            next_id: 1,
        };
        // Navigating over the protocol keeps the URL's query intact (`/json/new?URL` cuts
        // it at the first `&`).
        page.call("Page.navigate", json!({ "url": url }));
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A minimal HTTP/1.1 request to the DevTools server; returns the body.
fn http(host: &str, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(host).expect("connect to DevTools");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// One page, driven with `Runtime.evaluate`.
pub struct Page {
    ws: WebSocket,
    next_id: u64,
}

impl Page {
    pub fn eval(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        reply["result"]["value"].clone()
    }

    /// Calls a DevTools method and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(request.to_string())).unwrap();
        loop {
            let Some(Message::Text(text)) = self.ws.recv().unwrap() else {
                panic!("DevTools connection ended");
            };
            let reply: Value = serde_json::from_slice(&text).unwrap();
            if reply["id"] == id {
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` until it is `true`, at most `limit`.
    pub fn wait_for(&mut self, expression: &str, limit: Duration) {
        self.wait_for_else(expression, limit, &String::new);
    }

    /// [`Page::wait_for`], adding what `context` says to the failure.
    pub fn wait_for_else(
        &mut self,
        expression: &str,
        limit: Duration,
        context: &dyn Fn() -> String,
    ) {
        let deadline = Instant::now() + limit;
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "page never satisfied `{expression}` ({}); lines: {}",
                context(),
                self.eval(
                    "JSON.stringify([location.href, window.demo && demo.state, window.demo && demo.entries])"
                )
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Page {
    /// Reloads the page, as its user would (the page's `sessionStorage` stays).
    pub fn reload(&mut self) {
        self.call("Page.reload", json!({}));
    }

    /// The demo page's log (`demo.entries`): what it shows, in order.
    pub fn entries(&mut self) -> Vec<Entry> {
        let json = self.eval("JSON.stringify(window.demo ? demo.entries : null)");
        let value: Value =
            serde_json::from_str(json.as_str().unwrap_or("null")).expect("entries are JSON");
        let text = |e: &Value, k: &str| e[k].as_str().map(String::from);
        value
            .as_array()
            .expect("the demo page is loaded")
            .iter()
            .map(|e| Entry {
                kind: text(e, "kind").unwrap_or_default(),
                from: text(e, "from"),
                to: text(e, "to"),
                text: text(e, "text").unwrap_or_default(),
                mine: e["mine"] == Value::Bool(true),
                state: text(e, "state"),
            })
            .collect()
    }
}

/// One line of the demo page's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `msg` (a chat message), `sys` (joins, presence) or `err`.
    pub kind: String,
    /// Who sent it (the page's own user for its own messages).
    pub from: Option<String>,
    /// The addressee of a direct message.
    pub to: Option<String>,
    /// The text shown.
    pub text: String,
    /// Whether this page sent it.
    pub mine: bool,
    /// An own message's state: `sent`, `acknowledged` or `dead letter`.
    pub state: Option<String>,
}
