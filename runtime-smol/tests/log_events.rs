//! The crate's notable events reach the application's `log` logger (the crate docs'
//! "Logging" table). The logger is process-wide, so these tests share one that keeps
//! every record and each looks for its own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sockeye_smol::{
    Config, Error, ReconnectConfig, ReliableClient, ReliableError, ReliableOptions, Server,
};

/// A logger that keeps `(level, target, message)` of every record.
struct Capture(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = (
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        );
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn install() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Debug);
}

/// Waits up to 5 s for a record at `level` from this crate whose message contains `text`.
fn logged(level: log::Level, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = CAPTURE
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(l, target, message)| {
                *l == level && target.starts_with("sockeye_smol") && message.contains(text)
            });
        if found || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_refused_handshake_is_logged_at_debug() -> Result<(), Box<dyn std::error::Error>> {
    install();
    let server = Server::bind("127.0.0.1:0", Config::default())?;
    let addr = server.local_addr()?;
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer)?;
        Ok(answer)
    });
    smol::block_on(async {
        let incoming = server.accept().await?;
        assert!(incoming.upgrade().await.is_err());
        Ok::<(), Error>(())
    })?;
    let answer = client.join().unwrap()?;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(logged(log::Level::Debug, "handshake refused"));
    Ok(())
}

#[test]
fn a_reliable_client_logs_each_reconnect_and_giving_up() {
    install();
    // A port nobody listens on: every attempt is refused.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut reconnect = ReconnectConfig::default();
    reconnect.initial_delay = Duration::from_millis(5);
    reconnect.max_delay = Duration::from_millis(10);
    reconnect.max_attempts = Some(2);
    let options = ReliableOptions {
        reconnect,
        ..ReliableOptions::default()
    };
    let result = smol::block_on(ReliableClient::connect(&format!("ws://{addr}/"), options));
    assert!(
        matches!(result, Err(Error::Reliable(ReliableError::GaveUp { .. }))),
        "{result:?}"
    );
    assert!(logged(log::Level::Info, "reconnect attempt 1 in"));
    assert!(logged(log::Level::Warn, "gave up reconnecting"));
}
