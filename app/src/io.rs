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

/// Starts the reader and writer threads of `stream` as connection `conn` (two
/// descriptors: the socket and one clone); returns the writer's queue, or the error
/// with the stream back if it can still be answered.
pub(super) fn spawn(
    conn: ConnId,
    stream: TcpStream,
    inputs: &SyncSender<Input>,
    write_timeout: Duration,
) -> Result<Sender<WriteJob>, (io::Error, Option<TcpStream>)> {
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(e) => return Err((e, Some(stream))),
    };
    let reader = stream;
    let _ = writer.set_write_timeout(Some(write_timeout));
    let (jobs, queue) = std::sync::mpsc::channel();
    let to_driver = inputs.clone();
    let spawned = thread::Builder::new()
        .name("sockeye-write".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || write_loop(conn, writer, &queue, &to_driver));
    if let Err(e) = spawned {
        return Err((e, Some(reader)));
    }
    let to_driver = inputs.clone();
    let spawned = thread::Builder::new()
        .name("sockeye-read".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || read_loop(conn, reader, &to_driver));
    if let Err(e) = spawned {
        // The stream went down with the closure; the writer ends the socket.
        let _ = jobs.send(WriteJob::Close);
        return Err((e, None));
    }
    Ok(jobs)
}

fn read_loop(conn: ConnId, mut stream: TcpStream, driver: &SyncSender<Input>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let input = match stream.read(&mut buf) {
            Ok(0) => Input::Eof(conn),
            Ok(n) => Input::Read(conn, buf[..n].to_vec()),
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
    queue: &Receiver<WriteJob>,
    driver: &SyncSender<Input>,
) {
    while let Ok(job) = queue.recv() {
        match job {
            WriteJob::Chunks(chunks) => {
                let ok = chunks.iter().all(|chunk| stream.write_all(chunk).is_ok());
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
                let _ = stream.shutdown(Shutdown::Write);
                let _ = stream.set_read_timeout(Some(LINGER));
                return;
            }
        }
    }
    // The driver is gone (the server stopped): so is the connection.
    let _ = stream.shutdown(Shutdown::Both);
}
