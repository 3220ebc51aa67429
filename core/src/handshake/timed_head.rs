//! Reading a handshake head under a deadline: the part both sides share.

use super::head::{CompleteHead, HeadReader};
use crate::config::Config;
use crate::error::HandshakeError;
use crate::time::{Clock, Instant};

/// Where a head being read is.
#[derive(Debug)]
enum Phase {
    /// Reading the head.
    Reading(HeadReader),
    /// The head was parsed and handed out; nothing more to do.
    Done,
    /// The head was refused; the error is answered again to any further input.
    Failed(HandshakeError),
}

/// A request or response head that must arrive whole within `handshake_timeout`, in at
/// most `max_handshake_bytes`.
#[derive(Debug)]
pub(crate) struct TimedHead {
    phase: Phase,
    clock: Clock,
    deadline: Instant,
}

impl TimedHead {
    /// A head whose first byte may arrive from `now` on.
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        TimedHead {
            phase: Phase::Reading(HeadReader::new(config.max_handshake_bytes)),
            clock: Clock::new(now),
            deadline: now + config.handshake_timeout,
        }
    }

    /// Feeds bytes: `first_line` checks the first line as soon as it is complete, and
    /// `parse` turns the complete head into the handshake's result. Once there is a
    /// result, later calls return `Ok(None)`; after an error, the same error.
    pub(crate) fn handle_bytes<T>(
        &mut self,
        now: Instant,
        data: &[u8],
        first_line: impl FnOnce(&[u8]) -> Result<(), HandshakeError>,
        parse: impl FnOnce(CompleteHead) -> Result<T, HandshakeError>,
    ) -> Result<Option<T>, HandshakeError> {
        let now = self.clock.observe(now);
        let reader = match &mut self.phase {
            Phase::Reading(reader) => reader,
            Phase::Done => return Ok(None),
            Phase::Failed(e) => return Err(e.clone()),
        };
        let result = if now >= self.deadline {
            Err(HandshakeError::Timeout)
        } else {
            match reader.push(data, first_line) {
                Ok(None) => return Ok(None),
                Ok(Some(head)) => parse(head),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(value) => {
                self.phase = Phase::Done;
                Ok(Some(value))
            }
            Err(e) => {
                self.phase = Phase::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The deadline while the head is still being read; `None` once there is a result.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Reading(_) => Some(self.deadline),
            Phase::Done | Phase::Failed(_) => None,
        }
    }

    /// Fails with [`HandshakeError::Timeout`] once the deadline has passed with the head
    /// incomplete; an early or spurious call is a no-op. After a failure, answers the
    /// same error again.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        let now = self.clock.observe(now);
        match &self.phase {
            Phase::Reading(_) if now >= self.deadline => {
                self.phase = Phase::Failed(HandshakeError::Timeout);
                Err(HandshakeError::Timeout)
            }
            Phase::Failed(e) => Err(e.clone()),
            Phase::Reading(_) | Phase::Done => Ok(()),
        }
    }

    /// The peer ended its side of the stream at `now`: with the head incomplete that is
    /// [`HandshakeError::UnexpectedEof`] (answered again to later input); once there is a
    /// result, a no-op. After a failure, answers the same error again.
    pub(crate) fn handle_eof(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.clock.observe(now);
        match &self.phase {
            Phase::Reading(_) => {
                self.phase = Phase::Failed(HandshakeError::UnexpectedEof);
                Err(HandshakeError::UnexpectedEof)
            }
            Phase::Failed(e) => Err(e.clone()),
            Phase::Done => Ok(()),
        }
    }

    /// Bytes of head buffered so far.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Reading(reader) => reader.buffered(),
            Phase::Done | Phase::Failed(_) => 0,
        }
    }
}
