//! A TCP proxy on `127.0.0.1` in front of several nodes, as a load balancer that sends a
//! client elsewhere: every connection goes to the current upstream, and
//! [`SwitchProxy::switch`] changes it and cuts the connections open at that moment (both
//! ends see them end), so a client that reconnects lands on the new node.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// See the [module docs](self).
#[derive(Debug)]
pub struct SwitchProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    /// Both sockets of each connection open now.
    open: Vec<(TcpStream, TcpStream)>,
    connections: usize,
}

impl SwitchProxy {
    /// Starts forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            upstream,
            open: Vec::new(),
            connections: 0,
        }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let upstream = shared.lock().unwrap().upstream;
                let Ok(server) = TcpStream::connect(upstream) else {
                    // The node is gone: the client sees the connection end.
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                {
                    let mut st = shared.lock().unwrap();
                    st.connections += 1;
                    st.open.retain(|(c, _)| c.peer_addr().is_ok());
                    st.open.push((c1, s1));
                }
                thread::spawn(move || copy(client, s2));
                thread::spawn(move || copy(server, c2));
            }
        });
        SwitchProxy { addr, state }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// New connections go to `upstream` from now on; the open ones are cut.
    pub fn switch(&self, upstream: SocketAddr) {
        let mut st = self.state.lock().unwrap();
        st.upstream = upstream;
        for (client, server) in st.open.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

/// Copies `from` → `to` until either ends, then ends both.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
