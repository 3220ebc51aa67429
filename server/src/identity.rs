//! Who is connecting, and who may push: user tokens on `/ws`, the API key on the push API.

use sockeye_core::auth::{self, constant_time_eq, UserId, TOKEN_HEADER, TOKEN_QUERY};
use sockeye_core::handshake::HttpRequest;
use sockeye_core::Entropy;

use crate::config::Config;

/// Longest `?user=` name accepted in development mode.
const MAX_DEV_NAME_BYTES: usize = 64;

/// The user of an upgrade request: with a secret, from the token (a `Bearer` header, the
/// `Sockeye-Token` header or `?token=`, which browsers need), verified at `unix_secs`; in
/// development mode the `?user=` name, or a generated id. `Err`: answer 401 with it.
pub(crate) fn identify(
    config: &Config,
    request: &HttpRequest,
    unix_secs: u64,
    entropy: &mut dyn Entropy,
) -> Result<UserId, String> {
    match &config.secret {
        Some(secret) => {
            let from_query = request.query(TOKEN_QUERY);
            let token = request
                .bearer()
                .or_else(|| request.header_str(TOKEN_HEADER))
                .or(from_query.as_deref());
            auth::verify(secret.as_bytes(), token, unix_secs)
                .map_err(|e| format!("user token refused: {e}"))
        }
        None => Ok(request
            .query("user")
            .map(|name| name.trim().to_string())
            .filter(|name| {
                !name.is_empty()
                    && name.len() <= MAX_DEV_NAME_BYTES
                    && !name.chars().any(char::is_control)
            })
            .map(UserId)
            .unwrap_or_else(|| anonymous(entropy))),
    }
}

/// `anon-` and 8 hex digits from the runtime's entropy.
fn anonymous(entropy: &mut dyn Entropy) -> UserId {
    let mut bytes = [0u8; 4];
    entropy.fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    UserId(format!("anon-{hex}"))
}

/// Whether a request may use the push API.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushAccess {
    Allowed,
    /// 401 with this reason.
    Unauthorized(&'static str),
    /// 403: a secret is set but no API key, so nobody may push.
    Disabled,
}

/// The API key (`Authorization: Bearer` or `X-Api-Key`), compared in constant time.
pub(crate) fn push_access(config: &Config, request: &HttpRequest) -> PushAccess {
    match (&config.api_key, &config.secret) {
        (None, None) => PushAccess::Allowed,
        (None, Some(_)) => PushAccess::Disabled,
        (Some(key), _) => match request.bearer().or_else(|| request.header_str("X-Api-Key")) {
            None => PushAccess::Unauthorized("API key required"),
            Some(given) if constant_time_eq(given.as_bytes(), key.as_bytes()) => {
                PushAccess::Allowed
            }
            Some(_) => PushAccess::Unauthorized("wrong API key"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockeye_core::handshake::RequestReader;
    use sockeye_core::{Instant, SeededEntropy};

    fn request(raw: &str) -> HttpRequest {
        let mut reader = RequestReader::new(&sockeye_core::Config::default(), Instant::ZERO);
        reader
            .handle_bytes(Instant::ZERO, raw.as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn anonymous_ids_come_from_the_entropy_given() {
        let mut entropy = SeededEntropy::new(1);
        let (a, b) = (anonymous(&mut entropy), anonymous(&mut entropy));
        assert!(a.as_str().starts_with("anon-") && a.as_str().len() == 13);
        assert_ne!(a, b);
    }

    #[test]
    fn the_api_key_is_checked() {
        let mut config = Config {
            api_key: Some("k3y".into()),
            ..Config::default()
        };
        let ok = request("POST /api/push HTTP/1.1\r\nX-Api-Key: k3y\r\n\r\n");
        let wrong = request("POST /api/push HTTP/1.1\r\nAuthorization: Bearer k3z\r\n\r\n");
        let none = request("POST /api/push HTTP/1.1\r\n\r\n");
        assert_eq!(push_access(&config, &ok), PushAccess::Allowed);
        assert_eq!(
            push_access(&config, &wrong),
            PushAccess::Unauthorized("wrong API key")
        );
        assert!(matches!(
            push_access(&config, &none),
            PushAccess::Unauthorized(_)
        ));
        config.api_key = None;
        config.secret = Some("s".into());
        assert_eq!(push_access(&config, &ok), PushAccess::Disabled);
    }
}
