//! Signed user tokens for the handshake: who the user is and until when, signed with
//! HMAC-SHA256 under a secret the server and the backends share.
//!
//! Format (`docs/PROTOCOL.md`, "User tokens"):
//!
//! ```text
//! base64url(user_id) "." expiry_unix_secs "." base64url(HMAC-SHA256(secret, base64url(user_id) "." expiry))
//! ```
//!
//! base64url without padding, expiry in decimal without leading zeros. The MAC covers the
//! text before the last dot, exactly as sent, so verifying never re-encodes anything. A
//! backend mints with [`mint`]; the server checks with [`verify`] and answers 401 for any
//! [`AuthError`]. The MAC check is constant-time (`hmac`'s `verify_slice`).

use alloc::string::String;
use alloc::vec::Vec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AuthError;

/// Longest user id a token may carry, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;
/// Longest token accepted before any decoding, in bytes.
pub const MAX_TOKEN_BYTES: usize = 512;
/// The header that carries a user token (`Authorization: Bearer <token>` also works, by
/// the runtime's choice).
pub const TOKEN_HEADER: &str = "Sockeye-Token";
/// The query parameter that carries a user token for clients that cannot set headers.
pub const TOKEN_QUERY: &str = "token";

type HmacSha256 = Hmac<Sha256>;

/// The user a verified token names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub String);

impl UserId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn mac_for(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (RFC 2104 §2); `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Mints a token for `user_id` (at most [`MAX_USER_ID_BYTES`]; longer ids are cut at a
/// char boundary) valid until `expiry_unix_secs`. For backends; allocates the token.
pub fn mint(secret: &[u8], user_id: &str, expiry_unix_secs: u64) -> String {
    let mut end = user_id.len().min(MAX_USER_ID_BYTES);
    while !user_id.is_char_boundary(end) {
        end -= 1;
    }
    let mut token = URL_SAFE_NO_PAD.encode(&user_id.as_bytes()[..end]);
    token.push('.');
    token.push_str(&alloc::format!("{expiry_unix_secs}"));
    let mut mac = mac_for(secret);
    mac.update(token.as_bytes());
    let tag = mac.finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag));
    token
}

/// Checks `token` (as taken from the header or query; `None` if there was none) at
/// `now_unix_secs`. The MAC is checked before anything else about the content, in
/// constant time, so a forger learns nothing from which error comes back but "forged".
pub fn verify(secret: &[u8], token: Option<&str>, now_unix_secs: u64) -> Result<UserId, AuthError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let (signed, tag_b64) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let (user_b64, expiry) = signed.split_once('.').ok_or(AuthError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| AuthError::Malformed)?;
    let mut mac = mac_for(secret);
    mac.update(signed.as_bytes());
    mac.verify_slice(&tag).map_err(|_| AuthError::Forged)?;
    // Signed by us: the rest is well-formed unless the minting side was broken.
    let canonical_expiry = !expiry.is_empty()
        && expiry.bytes().all(|b| b.is_ascii_digit())
        && (expiry == "0" || !expiry.starts_with('0'));
    let expiry: u64 = match expiry.parse() {
        Ok(e) if canonical_expiry => e,
        _ => return Err(AuthError::Malformed),
    };
    let user: Vec<u8> = URL_SAFE_NO_PAD
        .decode(user_b64)
        .map_err(|_| AuthError::Malformed)?;
    if user.len() > MAX_USER_ID_BYTES {
        return Err(AuthError::Malformed);
    }
    let user = String::from_utf8(user).map_err(|_| AuthError::Malformed)?;
    if now_unix_secs >= expiry {
        return Err(AuthError::Expired);
    }
    Ok(UserId(user))
}

/// Compares two secrets (an API key, a token) in time that does not depend on where they
/// differ; only their lengths leak. The one constant-time compare of the project.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    crate::session::token::ct_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"backend-and-server-share-this";

    #[test]
    fn protocol_md_example() {
        // The worked example in docs/PROTOCOL.md.
        let token = mint(b"secret", "alice", 1_700_000_000);
        assert_eq!(
            token,
            "YWxpY2U.1700000000.p6_Hp9AEzGv5PfsxGD5QbemYfijWGFg48OKEyYKDtiU"
        );
        assert_eq!(
            verify(b"secret", Some(&token), 1_699_999_999),
            Ok(UserId("alice".into()))
        );
    }

    #[test]
    fn every_failure_is_named_and_is_401() {
        let token = mint(SECRET, "bob", 100);
        assert_eq!(verify(SECRET, None, 0), Err(AuthError::Missing));
        assert_eq!(verify(SECRET, Some(""), 0), Err(AuthError::Missing));
        assert_eq!(verify(SECRET, Some("nodots"), 0), Err(AuthError::Malformed));
        assert_eq!(verify(SECRET, Some("a.b.!!"), 0), Err(AuthError::Malformed));
        assert_eq!(verify(b"other", Some(&token), 0), Err(AuthError::Forged));
        let tampered = token.replacen("Ym9i", "Ym9j", 1);
        assert_eq!(verify(SECRET, Some(&tampered), 0), Err(AuthError::Forged));
        let later = token.replacen(".100.", ".999.", 1);
        assert_eq!(verify(SECRET, Some(&later), 0), Err(AuthError::Forged));
        assert_eq!(verify(SECRET, Some(&token), 100), Err(AuthError::Expired));
        assert_eq!(verify(SECRET, Some(&token), 99), Ok(UserId("bob".into())));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify(SECRET, Some(&huge), 0), Err(AuthError::Malformed));
        assert_eq!(AuthError::Expired.status(), 401);
    }

    #[test]
    fn long_user_ids_are_cut_at_a_char_boundary() {
        let long = "é".repeat(200);
        let token = mint(SECRET, &long, 10);
        let user = verify(SECRET, Some(&token), 0).unwrap();
        assert!(user.as_str().len() <= MAX_USER_ID_BYTES && long.starts_with(user.as_str()));
    }

    proptest! {
        #[test]
        fn mint_then_verify_is_the_identity(user in "\\PC{0,40}", expiry in 1u64.., now: u64) {
            let token = mint(SECRET, &user, expiry);
            let got = verify(SECRET, Some(&token), now);
            if now < expiry {
                prop_assert_eq!(got, Ok(UserId(user)));
            } else {
                prop_assert_eq!(got, Err(AuthError::Expired));
            }
        }

        #[test]
        fn verify_never_panics(token in "\\PC{0,80}", now: u64) {
            let _ = verify(SECRET, Some(&token), now);
        }
    }
}
