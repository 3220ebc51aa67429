//! A connection's two threads: one reads and reports what it read, one writes what the
//! driver hands it. Neither decides anything: the driver and the server layer do.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use sockeye_server::ConnId;

use super::driver::Input;
use super::{LINGER, THREAD_STACK_BYTES};

/// Bytes read at most per `read`.
const READ_CHUNK: usize = 16 * 1024;

/// What a connection's writer thread does next.
pub(super) enum WriteJob {
    /// Write these bytes, in order, then report [`Input::Written`].
    Chunks(Vec<Bytes>),
    /// Everything is written: send FIN and stop.
    Close,
}

/// How a connection's bytes look on the wire.
#[derive(Clone)]
enum Session {
    /// As the layer reads and writes them.
    Plain,
    /// Inside TLS: the reader decrypts before reporting, the writer encrypts.
    #[cfg(feature = "tls")]
    Tls(std::sync::Arc<tls::Shared>),
}

/// Starts the reader and writer threads of `stream` as connection `conn` (two
/// descriptors: the socket and one clone), served inside TLS when `tls` is given;
/// returns the writer's queue, or the error with the stream back if it can still be
/// answered.
pub(super) fn spawn(
    conn: ConnId,
    stream: TcpStream,
    inputs: &SyncSender<Input>,
    write_timeout: Duration,
    tls: &crate::TlsConfig,
) -> Result<Sender<WriteJob>, (io::Error, Option<TcpStream>)> {
    let session = match tls {
        #[cfg(feature = "tls")]
        Some(config) => match tls::Shared::new(config) {
            Ok(shared) => Session::Tls(std::sync::Arc::new(shared)),
            Err(e) => return Err((e, Some(stream))),
        },
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
        None => Session::Plain,
    };
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(e) => return Err((e, Some(stream))),
    };
    let reader = stream;
    let _ = writer.set_write_timeout(Some(write_timeout));
    let (jobs, queue) = std::sync::mpsc::channel();
    let to_driver = inputs.clone();
    let write_session = session.clone();
    let spawned = thread::Builder::new()
        .name("sockeye-write".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || write_loop(conn, writer, &write_session, &queue, &to_driver));
    if let Err(e) = spawned {
        return Err((e, Some(reader)));
    }
    let to_driver = inputs.clone();
    let spawned = thread::Builder::new()
        .name("sockeye-read".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || read_loop(conn, reader, &session, &to_driver));
    if let Err(e) = spawned {
        // The stream went down with the closure; the writer ends the socket.
        let _ = jobs.send(WriteJob::Close);
        return Err((e, None));
    }
    Ok(jobs)
}

fn read_loop(conn: ConnId, mut stream: TcpStream, session: &Session, driver: &SyncSender<Input>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let input = match stream.read(&mut buf) {
            Ok(0) => Input::Eof(conn),
            Ok(n) => match session {
                Session::Plain => Input::Read(conn, buf[..n].to_vec()),
                #[cfg(feature = "tls")]
                Session::Tls(tls) => match tls.decrypt(&buf[..n], &stream) {
                    // Records that carried no data (the handshake): nothing to report.
                    Ok((plain, false)) if plain.is_empty() => continue,
                    Ok((plain, false)) => Input::Read(conn, plain),
                    // `close_notify`: what came before it, then the end of stream.
                    Ok((plain, true)) => {
                        if !plain.is_empty() && driver.send(Input::Read(conn, plain)).is_err() {
                            return;
                        }
                        Input::Eof(conn)
                    }
                    Err(_) => Input::Gone(conn),
                },
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Input::Gone(conn),
        };
        let last = !matches!(input, Input::Read(..));
        if driver.send(input).is_err() || last {
            return;
        }
    }
}

fn write_loop(
    conn: ConnId,
    mut stream: TcpStream,
    session: &Session,
    queue: &Receiver<WriteJob>,
    driver: &SyncSender<Input>,
) {
    while let Ok(job) = queue.recv() {
        match job {
            WriteJob::Chunks(chunks) => {
                let ok = match session {
                    Session::Plain => chunks.iter().all(|chunk| stream.write_all(chunk).is_ok()),
                    #[cfg(feature = "tls")]
                    Session::Tls(tls) => tls.encrypt(&chunks, &stream).is_ok(),
                };
                if driver.send(Input::Written(conn, ok)).is_err() || !ok {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
            WriteJob::Close => {
                // FIN, then the reader (whose descriptor keeps the socket open) waits up
                // to `LINGER` for the peer's, so unread request bytes do not turn into a
                // reset that eats the answer. No thread sleeps: a peer that closes at
                // once (an HTTP client that read its answer) ends the reader at once.
                #[cfg(feature = "tls")]
                if let Session::Tls(tls) = session {
                    let _ = tls.close_notify(&stream);
                }
                let _ = stream.shutdown(Shutdown::Write);
                let _ = stream.set_read_timeout(Some(LINGER));
                return;
            }
        }
    }
    // The driver is gone (the server stopped): so is the connection.
    let _ = stream.shutdown(Shutdown::Both);
}

/// TLS for the two threads of a connection: one rustls session both use under a lock,
/// with the socket written outside it.
#[cfg(feature = "tls")]
mod tls {
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

    use rustls::{ServerConfig, ServerConnection};

    /// A connection's TLS session, shared by its reader and writer threads.
    ///
    /// Whoever holds `session` produces ciphertext in the session's order; it takes
    /// `order` before letting `session` go and writes the ciphertext to the socket under
    /// `order` only. So records reach the socket in the order they were made, and a
    /// blocked write (a slow peer) never keeps the other thread from the session: the
    /// reader goes on decrypting while the writer waits for the peer.
    pub(super) struct Shared {
        session: Mutex<ServerConnection>,
        order: Mutex<()>,
    }

    impl Shared {
        pub(super) fn new(config: &Arc<ServerConfig>) -> io::Result<Shared> {
            let mut session = ServerConnection::new(Arc::clone(config))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // What is buffered is bounded by the driver's write jobs.
            session.set_buffer_limit(None);
            Ok(Shared {
                session: Mutex::new(session),
                order: Mutex::new(()),
            })
        }

        fn lock(&self) -> MutexGuard<'_, ServerConnection> {
            self.session.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Feeds ciphertext the reader read; returns the plaintext it carried and
        /// whether the peer sent `close_notify`, after writing what the session must
        /// answer (the handshake's flights, a bad record's alert).
        pub(super) fn decrypt(
            &self,
            mut data: &[u8],
            sock: &TcpStream,
        ) -> io::Result<(Vec<u8>, bool)> {
            let mut session = self.lock();
            let mut plain = Vec::new();
            let mut closed = false;
            while !data.is_empty() {
                if session.read_tls(&mut data)? == 0 {
                    break;
                }
                let state = match session.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        let _ = self.send(session, sock);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                };
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = plain.len();
                    plain.resize(start + n, 0);
                    session.reader().read_exact(&mut plain[start..])?;
                }
                closed |= state.peer_has_closed();
            }
            self.send(session, sock)?;
            Ok((plain, closed))
        }

        /// Encrypts the chunks the driver handed the writer and writes them.
        pub(super) fn encrypt(&self, chunks: &[bytes::Bytes], sock: &TcpStream) -> io::Result<()> {
            let mut session = self.lock();
            for chunk in chunks {
                session.writer().write_all(chunk)?;
            }
            self.send(session, sock)
        }

        /// Sends `close_notify`, before the writer's FIN.
        pub(super) fn close_notify(&self, sock: &TcpStream) -> io::Result<()> {
            let mut session = self.lock();
            session.send_close_notify();
            self.send(session, sock)
        }

        /// Writes the ciphertext `session` holds, in order, outside the session's lock.
        fn send(
            &self,
            mut session: MutexGuard<'_, ServerConnection>,
            sock: &TcpStream,
        ) -> io::Result<()> {
            let mut out = Vec::new();
            while session.wants_write() {
                session.write_tls(&mut out)?;
            }
            if out.is_empty() {
                return Ok(());
            }
            let _order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            drop(session);
            let mut sock = sock;
            sock.write_all(&out)
        }
    }
}
