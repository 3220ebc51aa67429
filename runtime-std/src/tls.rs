//! TLS through rustls (feature `tls`): [`TlsStream`], a rustls session over a
//! [`Stream`] that keeps the driver's non-blocking contract, and the configurations
//! clients and servers start from.
//!
//! rustls is itself sans-IO: [`TlsStream`] moves ciphertext between the socket and the
//! session (`read_tls`/`process_new_packets`/`write_tls`) and plaintext between the
//! session and the WebSocket driver, never blocking, so the driver's `poll(2)` waits and
//! timeouts hold for `wss://` exactly as for `ws://`. The TLS handshake runs first, to
//! completion, bounded by `Config::handshake_timeout`; the WebSocket handshake follows
//! over the plaintext.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};
use sockeye_core::Instant;

use crate::stream::Stream;
use crate::time::Clock;

/// The rustls this crate was built with, for root stores, certificates and
/// configurations of your own.
pub use rustls;

/// A TLS session (client or server side) over a connected [`Stream`], itself a
/// [`Stream`]: what a `wss://` [`WebSocket`](crate::WebSocket) runs over.
///
/// Made by [`Client::connect_tls`](crate::Client::connect_tls),
/// [`Server::tls`](crate::Server::tls) or [`TlsStream::connect`]/[`TlsStream::accept`]
/// with the TLS handshake already complete. A peer that ends the TCP stream without a
/// TLS `close_notify` reads as an ordinary end of stream: the WebSocket closing
/// handshake, not TLS, tells a complete conversation from a cut one.
pub struct TlsStream<S = TcpStream> {
    conn: Connection,
    sock: S,
    /// The socket reached its end.
    eof: bool,
}

impl<S: fmt::Debug> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("protocol_version", &self.conn.protocol_version())
            .finish_non_exhaustive()
    }
}

impl<S: Stream> TlsStream<S> {
    /// Runs the client side of a TLS handshake over `sock` for `server_name` (the host a
    /// certificate must name), waiting at most `timeout`; the stream is put in
    /// non-blocking mode ([`Stream::prepare`]).
    pub fn connect(
        config: Arc<ClientConfig>,
        server_name: &str,
        sock: S,
        timeout: std::time::Duration,
    ) -> io::Result<Self> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(tls_error)?;
        let clock = Clock::new();
        TlsStream::handshake(conn.into(), sock, clock, clock.now() + timeout)
            .inspect_err(|e| log::debug!("TLS handshake with {server_name} failed: {e}"))
    }

    /// Runs the server side of a TLS handshake over `sock`, waiting at most `timeout`;
    /// the stream is put in non-blocking mode ([`Stream::prepare`]).
    pub fn accept(
        config: Arc<ServerConfig>,
        sock: S,
        timeout: std::time::Duration,
    ) -> io::Result<Self> {
        let conn = rustls::ServerConnection::new(config).map_err(tls_error)?;
        let clock = Clock::new();
        TlsStream::handshake(conn.into(), sock, clock, clock.now() + timeout)
            .inspect_err(|e| log::debug!("TLS handshake with a client failed: {e}"))
    }

    /// Drives `conn`'s handshake over `sock` until it is complete and its last flight
    /// written, or `deadline` passes (`TimedOut`).
    pub(crate) fn handshake(
        conn: Connection,
        mut sock: S,
        clock: Clock,
        deadline: Instant,
    ) -> io::Result<Self> {
        sock.prepare()?;
        let mut tls = TlsStream {
            conn,
            sock,
            eof: false,
        };
        while tls.conn.is_handshaking() || tls.conn.wants_write() {
            let wait = if tls.conn.wants_write() {
                match tls.conn.write_tls(&mut tls.sock) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => PollFlags::OUT,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            } else {
                match tls.conn.read_tls(&mut tls.sock) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection during the TLS handshake",
                        ))
                    }
                    Ok(_) => {
                        tls.process()?;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => PollFlags::IN,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            let now = clock.now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the TLS handshake did not complete in time",
                ));
            }
            let timeout = Timespec::try_from(clock.until(deadline)).ok();
            match rustix::event::poll(&mut [PollFd::new(&tls.sock, wait)], timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(tls)
    }

    /// The stream underneath (the TCP socket), for addresses and socket options.
    /// Reading or writing it directly would corrupt the session.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The rustls session: the negotiated protocol version, cipher suite, ALPN protocol,
    /// the peer's certificates.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Processes the records `read_tls` took; a bad record is answered with its alert
    /// (written if the socket takes it) and fails the stream.
    fn process(&mut self) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(_) => {
                // Answers the session owes (a key update, session tickets) go out now if
                // the socket takes them, or with the next write or flush.
                match self.push_tls() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                    _ => Ok(()),
                }
            }
            Err(e) => {
                let _ = self.push_tls();
                Err(tls_error(e))
            }
        }
    }

    /// Writes ciphertext the session holds until it holds none (`Ok`) or the socket
    /// refuses more (`WouldBlock`).
    fn push_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: Stream> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The end of the TCP stream without `close_notify`: see the type's docs.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: Stream> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Takes plaintext only once every earlier byte reached the socket, and at most
    /// `MAX_WRITE_BYTES` (16 KiB) of it, so the ciphertext the session holds stays within about
    /// one record (and a peer that drains nothing is noticed by the driver's write
    /// timeout as on a socket); encrypts it and writes what the socket takes, the rest
    /// going out with the next write or [`flush`](Write::flush).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push_tls()?;
        let mut capped = [IoSlice::new(&[]); 16];
        let mut count = 0;
        let mut room = MAX_WRITE_BYTES;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            if room == 0 || count == capped.len() {
                break;
            }
            let take = buf.len().min(room);
            capped[count] = IoSlice::new(&buf[..take]);
            count += 1;
            room -= take;
        }
        let n = self.conn.writer().write_vectored(&capped[..count])?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // The bytes are taken: a failure here shows at the next write or flush.
        let _ = self.push_tls();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.push_tls()
    }
}

impl<S: AsFd> AsFd for TlsStream<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    fn prepare(&mut self) -> io::Result<()> {
        self.sock.prepare()
    }

    /// Sends `close_notify` (as far as the socket takes it without waiting) before
    /// shutting the socket's writing side.
    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            self.conn.send_close_notify();
            let _ = self.push_tls();
        }
        self.sock.shutdown(how)
    }
}

/// The most plaintext one write takes: one TLS record's worth.
pub(crate) const MAX_WRITE_BYTES: usize = 16 * 1024;

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The crypto provider every configuration made here uses (ring), named explicitly so
/// that nothing depends on a process-wide default being installed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts `roots` (TLS 1.2 and 1.3, no client certificate).
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The client configuration `wss://` connections use when given none: the platform's
/// trust store (`rustls-native-certs`: the system's CA bundle, `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` when set), loaded once per process. Fails when no root certificate
/// could be loaded at all.
pub fn platform_client_config() -> io::Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<std::result::Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), |e| e.to_string());
            return Err(format!("no platform root certificates: {why}"));
        }
        Ok(client_config(roots))
    });
    config
        .clone()
        .map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))
}

/// A server configuration from a certificate chain and its private key, both PEM files
/// (the chain leaf first, as `certbot` writes `fullchain.pem`; the key PKCS#8, PKCS#1 or
/// SEC1). Offers ALPN `http/1.1`, the protocol a WebSocket upgrade rides on.
pub fn server_config_from_pem(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> io::Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no certificate in the file", cert_path.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e))?;
    server_config(certs, key)
}

/// A server configuration from a certificate chain (leaf first) and its private key,
/// in DER. Offers ALPN `http/1.1`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
