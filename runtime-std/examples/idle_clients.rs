//! Load program for `scripts/footprint.sh`: opens N idle WebSocket connections to a server,
//! prints `connected N` once all are upgraded, holds them for a while, and exits by itself.
//!
//! `idle_clients ADDR COUNT HOLD_SECS` (for example `127.0.0.1:9411 1000 10`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(count), Some(hold)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: idle_clients ADDR COUNT HOLD_SECS");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let hold: u64 = hold.parse().expect("HOLD_SECS is a number");
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr.as_str()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = format!(
            "GET /ws?user=idle{i} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write upgrade");
        // The 101 and the welcome message; only the status line matters.
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).expect("read 101");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 101"),
            "connection {i} refused: {}",
            String::from_utf8_lossy(&buf[..n])
        );
        clients.push(stream);
    }
    println!("connected {}", clients.len());
    std::thread::sleep(Duration::from_secs(hold));
}
