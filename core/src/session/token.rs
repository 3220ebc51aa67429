//! Session identities and secrets: a 16-byte session id and a 128-bit session token, both
//! drawn from the caller's [`Entropy`], and a constant-time comparison for the token.
//!
//! The id names a session (it travels in the clear and may appear in logs); the token
//! proves the right to resume it and is compared without data-dependent branches.

use core::fmt;

use crate::entropy::Entropy;

/// The name of a reliable session, chosen by the server. Not a secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id.
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut id = [0u8; 16];
        entropy.fill(&mut id);
        SessionId(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl fmt::Display for SessionId {
    /// Lower-case hex, 32 digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The 128-bit secret that lets a client resume its session.
///
/// `Debug` never prints it; equality is constant-time ([`SessionToken::ct_eq`]).
#[derive(Clone, Copy)]
pub struct SessionToken(pub [u8; 16]);

impl SessionToken {
    /// A fresh unguessable token from `entropy` (which must be cryptographically secure
    /// outside of tests).
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut token = [0u8; 16];
        entropy.fill(&mut token);
        SessionToken(token)
    }

    /// The token's bytes, for encoding on the wire.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Compares two tokens in time that does not depend on where they differ.
    pub fn ct_eq(&self, other: &SessionToken) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for SessionToken {}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// Constant-time equality of two byte strings of the same length.
///
/// Every byte is visited and the differences are OR-ed together, so the running time
/// depends only on the length (which is public: 16 for a session token). `black_box`
/// keeps the optimiser from turning the fold into an early-exit comparison. We write
/// these few lines instead of adding `subtle` as a direct dependency; the HMAC check in
/// [`auth`](crate::auth) uses the `hmac` crate's own constant-time `verify_slice`.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= core::hint::black_box(x ^ y);
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn tokens_come_from_the_callers_entropy() {
        let a = SessionToken::generate(&mut SeededEntropy::new(1));
        let b = SessionToken::generate(&mut SeededEntropy::new(1));
        let c = SessionToken::generate(&mut SeededEntropy::new(2));
        assert!(a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
        assert_eq!(std::format!("{a:?}"), "SessionToken(<redacted>)");
    }

    #[test]
    fn ct_eq_checks_every_byte_and_the_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"xbc", b"abc"));
        assert!(!ct_eq(b"ab", b"abc"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn session_id_displays_as_hex() {
        let id = SessionId([0xab; 16]);
        assert_eq!(std::format!("{id}"), "ab".repeat(16));
    }
}
