//! A TCP proxy on `127.0.0.1` that breaks the connections it carries on cue, in the ways
//! a network does: cut both ways at a byte offset (both ends see the connection die), cut
//! only the client's side (the server goes on writing into a connection nobody reads, as
//! after a NAT or Wi-Fi drop it has not noticed), or freeze every open connection (nothing
//! gets through either way until an end gives up). New connections are forwarded as usual.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// How an armed cut breaks the connections open at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Both sockets are shut down: the client and the server see the connection end.
    Both,
    /// Only the client's socket is shut down; the server's stays open and what it sends is
    /// read and dropped, until the server closes it (it has not seen the cut).
    ClientSide,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes forwarded so far, both directions, every connection.
    forwarded: u64,
    /// Offsets (in `forwarded`) still to cut at, ascending, and how.
    cuts: VecDeque<(u64, Cut)>,
    cuts_done: usize,
    connections: usize,
    links: Vec<Arc<Link>>,
}

/// One forwarded connection.
#[derive(Debug)]
struct Link {
    client: TcpStream,
    server: TcpStream,
    /// Nothing is forwarded any more (a client-side cut or a freeze); bytes are dropped.
    dark: AtomicBool,
    /// Once dark, whether the client's end closing closes the server's too (a freeze:
    /// the client gave up) or not (a client-side cut: the server has not noticed).
    propagate_close: AtomicBool,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`, with no cut armed.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let link = Arc::new(Link {
                    client: c,
                    server: s,
                    dark: AtomicBool::new(false),
                    propagate_close: AtomicBool::new(true),
                });
                {
                    let mut st = shared.lock().unwrap();
                    st.connections += 1;
                    st.links.retain(|l| l.server.peer_addr().is_ok());
                    st.links.push(Arc::clone(&link));
                }
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                for (from, to, from_client) in [(client, s2, true), (server, c2, false)] {
                    let shared = Arc::clone(&shared);
                    let link = Arc::clone(&link);
                    thread::spawn(move || pump(from, to, from_client, &link, &shared));
                }
            }
        });
        FaultProxy { addr, state }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms cuts at these byte offsets from now (bytes forwarded both ways from here on).
    pub fn arm(&self, offsets: &[u64], how: Cut) {
        let mut st = self.state.lock().unwrap();
        let base = st.forwarded;
        let mut cuts: Vec<(u64, Cut)> = st.cuts.drain(..).collect();
        cuts.extend(offsets.iter().map(|&o| (base + o, how)));
        cuts.sort_by_key(|&(at, _)| at);
        st.cuts = cuts.into();
    }

    /// Freezes every connection open now: from here on nothing of theirs is forwarded
    /// either way; when the client closes one, its server side is closed too.
    pub fn freeze(&self) {
        let st = self.state.lock().unwrap();
        for link in &st.links {
            link.propagate_close.store(true, Ordering::SeqCst);
            link.dark.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts made so far.
    pub fn cuts_done(&self) -> usize {
        self.state.lock().unwrap().cuts_done
    }

    /// Cuts armed and not made yet.
    pub fn cuts_pending(&self) -> usize {
        self.state.lock().unwrap().cuts.len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.state.lock().unwrap().forwarded
    }
}

/// Copies `from` → `to` for `link`, making the armed cuts as the shared count reaches them.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    from_client: bool,
    link: &Link,
    state: &Mutex<State>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut st = state.lock().unwrap();
        if link.dark.load(Ordering::SeqCst) {
            continue; // dropped: nobody is listening at the other end any more
        }
        let (keep, cut) = match st.cuts.front() {
            Some(&(at, how)) if st.forwarded + n as u64 >= at => {
                ((at - st.forwarded.min(at)) as usize, Some(how))
            }
            _ => (n, None),
        };
        // Written under the lock, so a cut cannot fall between a write and its count.
        if to.write_all(&buf[..keep]).is_err() {
            break;
        }
        st.forwarded += keep as u64;
        if let Some(how) = cut {
            st.cuts.pop_front();
            st.cuts_done += 1;
            for l in st.links.drain(..) {
                match how {
                    Cut::Both => {
                        let _ = l.client.shutdown(Shutdown::Both);
                        let _ = l.server.shutdown(Shutdown::Both);
                    }
                    Cut::ClientSide => {
                        l.propagate_close.store(false, Ordering::SeqCst);
                        l.dark.store(true, Ordering::SeqCst);
                        let _ = l.client.shutdown(Shutdown::Both);
                    }
                }
            }
            // This chunk's rest is dropped; a client-side cut keeps the server's side read.
            if how == Cut::Both {
                break;
            }
        }
    }
    // The end this pump reads from is gone. A dark link whose client went away keeps its
    // server side open after a client-side cut (the server has not noticed).
    if from_client
        && link.dark.load(Ordering::SeqCst)
        && !link.propagate_close.load(Ordering::SeqCst)
    {
        return;
    }
    let _ = link.client.shutdown(Shutdown::Both);
    let _ = link.server.shutdown(Shutdown::Both);
}
