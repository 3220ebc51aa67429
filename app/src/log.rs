//! The server's logger: what the `log` facade carries (the server's own lines, the sans-IO
//! layer's `Action::Log`, and the events of `sockeye-std` and of any dependency that logs)
//! goes to stderr, one line per record, UTC timestamp first:
//!
//! ```text
//! 2026-12-04T18:30:00Z INFO  listening on 127.0.0.1:9001 (ws://127.0.0.1:9001/ws, …)
//! 2026-12-04T18:30:02Z DEBUG some_dependency: a line from a crate outside Sockeye
//! ```
//!
//! Lines from the Sockeye crates carry no target; a dependency's carry its own. Nothing
//! here logs payloads or tokens. A `log::Log` of forty lines rather than `env_logger`:
//! without its default features that crate measured 12.5 KiB more of the stripped binary
//! and would give nothing used here (this format needs its own timestamp either way, and
//! `--log-level` takes a level, not a filter).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How much the server logs (`--log-level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only failures.
    Error = 1,
    /// Failures and suspicious events.
    Warn = 2,
    /// Start, stop, and what the operator should know (the default).
    Info = 3,
    /// Every connection and request.
    Debug = 4,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub fn parse(text: &str) -> Result<Level, String> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(Level::Error),
            "warn" | "warning" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!("{text:?} is not one of error, warn, info, debug")),
        }
    }
}

impl From<Level> for log::LevelFilter {
    fn from(level: Level) -> Self {
        match level {
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
        }
    }
}

/// The `log::Log` that writes to stderr.
struct Stderr;

static LOGGER: Stderr = Stderr;

/// Whether [`LOGGER`] is the process's logger (set once, by [`install`]).
static INSTALLED: AtomicBool = AtomicBool::new(false);

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let target = record.target();
        let line = if target.starts_with("sockeye") {
            format!("{} {:<5} {}\n", utc(secs), record.level(), record.args())
        } else {
            let level = record.level();
            format!("{} {level:<5} {target}: {}\n", utc(secs), record.args())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Makes the stderr logger the process's `log` logger, at `level`. An application that
/// installed a logger of its own before keeps it, and its level: the server's lines go
/// to that logger. Calling this again changes the level.
pub(crate) fn install(level: Level) {
    if log::set_logger(&LOGGER).is_ok() {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    if INSTALLED.load(Ordering::Relaxed) {
        log::set_max_level(level.into());
    }
}

/// `2026-11-23T11:30:00Z` for a Unix time (the civil-from-days conversion of Howard
/// Hinnant's date algorithms).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("DEBUG"), Ok(Level::Debug));
        assert!(Level::parse("loud").is_err());
        assert!(Level::Error < Level::Debug);
        assert_eq!(log::LevelFilter::from(Level::Warn), log::LevelFilter::Warn);
    }
}
