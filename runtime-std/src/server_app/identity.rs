//! Who is connecting: a verified user token when the server has a secret; otherwise
//! (development mode) the name in `?user=` or a generated id. Also the push API's key.

use std::time::{SystemTime, UNIX_EPOCH};

use sockeye_core::auth::{self, UserId, TOKEN_HEADER, TOKEN_QUERY};
use sockeye_core::Entropy as _;

use super::config::ServerConfig;
use super::http::Head;
use crate::OsEntropy;

/// Longest development-mode name taken from `?user=`, in bytes.
const MAX_DEV_NAME_BYTES: usize = 64;

/// The user an upgrade request speaks for, or the reason to answer 401. Out of line: a
/// token check's hashing needs stack that a connection should not keep under it.
#[inline(never)]
pub(super) fn identify(config: &ServerConfig, head: &Head) -> Result<UserId, String> {
    match &config.secret {
        Some(secret) => {
            let from_query = head.query(TOKEN_QUERY);
            let token = head
                .bearer()
                .or_else(|| head.header(TOKEN_HEADER))
                .or(from_query.as_deref());
            auth::verify(secret.as_bytes(), token, unix_now())
                .map_err(|e| format!("user token refused: {e}"))
        }
        None => Ok(head
            .query("user")
            .map(|name| name.trim().to_string())
            .filter(|name| {
                !name.is_empty()
                    && name.len() <= MAX_DEV_NAME_BYTES
                    && !name.chars().any(char::is_control)
            })
            .map(UserId)
            .unwrap_or_else(anonymous)),
    }
}

/// `anon-` and 8 random hex digits.
fn anonymous() -> UserId {
    let mut bytes = [0u8; 4];
    match OsEntropy::new() {
        Ok(mut entropy) => entropy.fill(&mut bytes),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    UserId(format!("anon-{hex}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How the push API judges a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PushAccess {
    /// Allowed.
    Allowed,
    /// 401 with this reason.
    Unauthorized(&'static str),
    /// 403: the push API is disabled (a secret but no API key).
    Disabled,
}

/// Checks the push API key from `Authorization: Bearer` or `X-Api-Key`, in constant time.
pub(super) fn push_access(config: &ServerConfig, head: &Head) -> PushAccess {
    match (&config.api_key, &config.secret) {
        (None, None) => PushAccess::Allowed,
        (None, Some(_)) => PushAccess::Disabled,
        (Some(key), _) => match head.bearer().or_else(|| head.header("X-Api-Key")) {
            None => PushAccess::Unauthorized("API key required"),
            Some(given) if constant_time_eq(given.as_bytes(), key.as_bytes()) => {
                PushAccess::Allowed
            }
            Some(_) => PushAccess::Unauthorized("wrong API key"),
        },
    }
}

/// Compares without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"key", b"key"));
        assert!(!constant_time_eq(b"key", b"kez"));
        assert!(!constant_time_eq(b"key", b"keys"));
    }

    #[test]
    fn anonymous_ids_differ() {
        let (a, b) = (anonymous(), anonymous());
        assert!(a.as_str().starts_with("anon-") && a.as_str().len() == 13);
        assert_ne!(a, b);
    }
}
