//! The `threads` runtime: one driver thread owns the layer ([`crate::driver`]), each
//! connection has a reader and a writer thread ([`crate::io`]), one thread accepts, and
//! one commits the journal.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::descriptors::out_of_descriptors;
use crate::driver::{Driver, Input};
use crate::{journal, Parts, THREAD_STACK_BYTES};
use sockeye_std::accept::{self, is_out_of_descriptors};

/// Inputs waiting for the driver at most; readers then wait (TCP backpressure).
const INPUT_QUEUE: usize = 4096;

/// The threads of a running server.
pub(crate) struct Handle {
    inputs: SyncSender<Input>,
    shutting_down: Arc<AtomicBool>,
    accept: JoinHandle<()>,
    driver: JoinHandle<usize>,
}

pub(crate) fn start(parts: Parts) -> std::io::Result<Handle> {
    let (inputs, queue) = std::sync::mpsc::sync_channel(INPUT_QUEUE);
    let journal = match parts.journal {
        Some(file) => {
            let to_driver = inputs.clone();
            let report = move |result| to_driver.send(Input::Committed(result)).is_ok();
            Some(journal::spawn(file, report)?)
        }
        None => None,
    };
    let backend = match &parts.redis {
        Some(settings) => {
            let to_driver = inputs.clone();
            let report = move |report| to_driver.send(Input::Cluster(report)).is_ok();
            Some(crate::redis::Backend::start(settings, report)?)
        }
        None => None,
    };
    let driver = Driver::new(
        parts.server,
        parts.clock,
        inputs.clone(),
        journal,
        crate::driver::Policy {
            write_timeout: parts.write_timeout,
            grace: parts.grace,
            tls: parts.tls,
        },
        backend,
    );
    let driver = thread::Builder::new()
        .name("sockeye-driver".into())
        .spawn(move || driver.run(&queue))?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let accept = {
        let inputs = inputs.clone();
        let shutting_down = Arc::clone(&shutting_down);
        let listener = parts.listener;
        thread::Builder::new()
            .name("sockeye-accept".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || accept_loop(&listener, &inputs, &shutting_down))?
    };
    Ok(Handle {
        inputs,
        shutting_down,
        accept,
        driver,
    })
}

impl Handle {
    /// Stops accepting, shuts the layer down, and waits for the driver.
    pub(crate) fn stop(self, addr: SocketAddr) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        accept::wake(addr);
        let _ = self.accept.join();
        let _ = self.inputs.send(Input::Shutdown);
        self.driver.join().unwrap_or(0)
    }
}

fn accept_loop(listener: &TcpListener, driver: &SyncSender<Input>, shutting_down: &AtomicBool) {
    let accepted = |stream| driver.send(Input::Accepted(stream)).is_ok();
    let failed = |e: &std::io::Error| {
        if is_out_of_descriptors(e) {
            out_of_descriptors(e);
        } else {
            log::warn!("accept failed: {e}");
        }
    };
    if let Err(e) = accept::accept_until(listener, shutting_down, accepted, failed) {
        log::error!("the listener failed: {e}");
    }
}
