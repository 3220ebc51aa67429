//! Negotiation of permessage-deflate (RFC 7692 §5–7), as pure functions.
//!
//! **Unstable:** the `deflate` feature negotiates here, and the [`Connection`] that
//! the handshake yields compresses and inflates messages by the agreement
//! (`connection/deflate.rs`: context takeover as agreed, inflation bounded by
//! `max_message_bytes`, memory reported by `Connection::deflate_memory`). The runtimes
//! and the server layer take a [`DeflateConfig`] through their own `deflate` feature;
//! broadcasts are not yet encoded once for many connections.
//!
//! [`Connection`]: crate::Connection
//!
//! The server picks the first valid offer and the 101's answer to it with
//! [`DeflateConfig::answer_offers`]; the client offers
//! [`DeflateConfig::offer_value`] and checks the answer with [`check_response`].
//!
//! # Window bits
//!
//! We agree to any window the RFC allows (8–15 bits) for our own compressor: it honours
//! a limit below its 32 KiB window by starting a fresh context every `2^bits` bytes
//! (`connection/deflate.rs`), so a client offering `server_max_window_bits=9` is
//! accepted, and our client offers `client_max_window_bits` so a server may limit it.
//! The limits we ask of the peer ([`DeflateConfig::max_window_bits`]) are at least 9:
//! zlib cannot compress with an 8-bit window (asked for 8 it uses 9, and its output may
//! refer 512 bytes back), so asking a peer for 8 would only invite a violation; our
//! inflater takes any window up to 15 bits.

use alloc::string::String;
use core::fmt::Write as _;

use super::extensions::ExtensionOffer;
use crate::error::HandshakeError;

/// The extension token of RFC 7692 §7.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Whether and how an endpoint uses permessage-deflate: its policy for negotiation and
/// for compressing messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Negotiate the extension at all; `false` offers and accepts nothing.
    pub enabled: bool,
    /// The largest LZ77 window (8–15 bits, 8 counting as 9) the peer may use for the
    /// messages it sends us, announced when the peer allows it. Our decompressor keeps a
    /// window of exactly `2^bits` bytes for the agreed value, so it is also the memory
    /// the receiving side holds (plus about 10 KiB of decompressor state).
    pub max_window_bits: u8,
    /// Whether the peer may keep its compression context between messages; `false`
    /// asks it to reset (`*_no_context_takeover` for the peer's direction), so our
    /// decompressor and its window are freed after every message.
    pub allow_context_takeover: bool,
    /// Whether our compressor keeps its context between messages (better ratio for
    /// similar messages). A kept compressor holds about 312 KiB
    /// ([`COMPRESSOR_BYTES`](crate::COMPRESSOR_BYTES)) for the rest of the connection
    /// once it has sent one compressed message; `false` announces our
    /// `*_no_context_takeover` and frees the compressor after every message, at the
    /// cost of setting one up again for the next.
    pub keep_compressor: bool,
    /// Compression level, 0 (store) to 10 (best); 6 is zlib's default. The level changes
    /// speed and ratio, not memory: miniz_oxide's compressor holds about 312 KiB
    /// ([`COMPRESSOR_BYTES`](crate::COMPRESSOR_BYTES)) at every level.
    pub level: u8,
    /// Messages shorter than this are sent uncompressed (a fragmented message, whose
    /// length is unknown at its first fragment, is compressed whatever its size).
    pub min_compress_bytes: usize,
}

impl DeflateConfig {
    /// The extension switched off: nothing is offered or accepted.
    pub const OFF: DeflateConfig = DeflateConfig {
        enabled: false,
        max_window_bits: 15,
        allow_context_takeover: true,
        keep_compressor: true,
        level: 6,
        min_compress_bytes: 64,
    };

    /// The extension on, with a 15-bit window, context takeover both ways, level 6, and
    /// messages under 64 bytes sent uncompressed.
    pub fn on() -> Self {
        DeflateConfig {
            enabled: true,
            ..DeflateConfig::OFF
        }
    }

    fn peer_window_bits(&self) -> u8 {
        self.max_window_bits.clamp(9, 15)
    }

    /// The server's choice among `offers` (all the `Sec-WebSocket-Extensions` offers,
    /// in order): the parameters of the first valid `permessage-deflate` offer, or
    /// `None` to use no compression.
    ///
    /// RFC 7692 §5.1: a server declines an offer with an unknown parameter, a parameter
    /// given twice, or an invalid value, and may then accept a later one. Every valid
    /// offer is acceptable to us: any window asked of our compressor is honoured (module
    /// docs).
    pub fn accept_offers(&self, offers: &[ExtensionOffer]) -> Option<DeflateParams> {
        self.answer_offers(offers).map(|(params, _)| params)
    }

    /// [`accept_offers`](Self::accept_offers), with the `Sec-WebSocket-Extensions` value
    /// of the 101 that accepts it: [`DeflateParams::response_value`], plus
    /// `server_max_window_bits=15` when the offer asked for that limit (§7.1.2.1: an
    /// accepted limit is answered, even the largest).
    pub fn answer_offers(&self, offers: &[ExtensionOffer]) -> Option<(DeflateParams, String)> {
        if !self.enabled {
            return None;
        }
        let offer = offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(parse_offer)?;
        let params = self.answer(&offer);
        let mut value = params.response_value();
        if offer.server_max_window_bits == Some(15) {
            value.push_str("; server_max_window_bits=15");
        }
        Some((params, value))
    }

    /// The answer to one valid offer.
    fn answer(&self, offer: &Offer) -> DeflateParams {
        // §7.1.2.2: we may limit the client's window only if it offered the parameter.
        let client_max_window_bits = match offer.client_max_window_bits {
            Some(offered) => offered.unwrap_or(15).min(self.peer_window_bits()),
            None => 15,
        };
        DeflateParams {
            // §7.1.1.1: a server may announce its own reset even unasked.
            server_no_context_takeover: offer.server_no_context_takeover || !self.keep_compressor,
            client_no_context_takeover: offer.client_no_context_takeover
                || !self.allow_context_takeover,
            // §7.1.2.1: any limit asked of our compressor is honoured (module docs).
            server_max_window_bits: offer.server_max_window_bits.unwrap_or(15),
            client_max_window_bits,
        }
    }

    /// The `Sec-WebSocket-Extensions` value a client offers, or `None` when disabled:
    /// `permessage-deflate; client_max_window_bits` (the server may limit our window),
    /// plus `client_no_context_takeover` when we drop our compressor after every
    /// message, `server_no_context_takeover` when the server may not keep its context,
    /// and `server_max_window_bits` when its window is limited.
    pub fn offer_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut value = String::from(PERMESSAGE_DEFLATE);
        if !self.keep_compressor {
            // §7.1.1.2: a hint that we reset whatever the server answers.
            value.push_str("; client_no_context_takeover");
        }
        value.push_str("; client_max_window_bits");
        if !self.allow_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.peer_window_bits() < 15 {
            let _ = write!(
                value,
                "; server_max_window_bits={}",
                self.peer_window_bits()
            );
        }
        Some(value)
    }
}

impl Default for DeflateConfig {
    /// [`DeflateConfig::OFF`].
    fn default() -> Self {
        DeflateConfig::OFF
    }
}

/// The permessage-deflate parameters both ends agreed on (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server's compressor may use (8–15; a decompressor keeps
    /// 9 bits for an 8).
    pub server_max_window_bits: u8,
    /// The largest window the client's compressor may use (8–15, as above).
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with (RFC 7692 §5).
    pub fn response_value(&self) -> String {
        let mut value = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            let _ = write!(
                value,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            );
        }
        if self.client_max_window_bits < 15 {
            let _ = write!(
                value,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            );
        }
        value
    }
}

/// One syntactically valid permessage-deflate offer or response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: given without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// A window-bits value: 1*DIGIT in 8..=15, no leading zero (RFC 7692 §7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// The parameters of a `permessage-deflate` element, or `None` if one is unknown,
/// repeated or invalid (RFC 7692 §7.1).
fn parse_offer(offer: &ExtensionOffer) -> Option<Offer> {
    let mut out = Offer::default();
    for (name, value) in &offer.params {
        let name = name.to_ascii_lowercase();
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) if !out.server_no_context_takeover => {
                out.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !out.client_no_context_takeover => {
                out.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if out.server_max_window_bits.is_none() => {
                out.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if out.client_max_window_bits.is_none() => {
                out.client_max_window_bits = Some(match v {
                    None => None,
                    Some(v) => Some(window_bits(v)?),
                });
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The client's check of the server's `Sec-WebSocket-Extensions` answer (all its
/// elements, in order) against what `config` offered: the agreed parameters, `None` if
/// the server accepted no extension, or [`HandshakeError::UnexpectedExtension`] for
/// anything not offered or invalid, upon which the client must fail the connection
/// (RFC 6455 §4.1, RFC 7692 §5.2).
pub fn check_response(
    config: &DeflateConfig,
    answers: &[ExtensionOffer],
) -> Result<Option<DeflateParams>, HandshakeError> {
    let answer = match answers {
        [] => return Ok(None),
        [answer] if config.enabled && answer.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) => {
            answer
        }
        _ => return Err(HandshakeError::UnexpectedExtension),
    };
    let parsed = parse_offer(answer).ok_or(HandshakeError::UnexpectedExtension)?;
    // §7.1.2.2: a response's client_max_window_bits must carry a value (we always offer
    // the parameter, so the server may limit our window to any 8–15).
    let client_max_window_bits = match parsed.client_max_window_bits {
        None => 15,
        Some(Some(bits)) => bits,
        Some(None) => return Err(HandshakeError::UnexpectedExtension),
    };
    // §7.1.2.1: the server must answer the limit we asked for with one no larger; it
    // may announce one we did not ask for.
    let server_max_window_bits = match parsed.server_max_window_bits {
        None if config.peer_window_bits() == 15 => 15,
        Some(bits) if bits <= config.peer_window_bits() => bits,
        _ => return Err(HandshakeError::UnexpectedExtension),
    };
    // We asked for server_no_context_takeover: the server must agree (§7.1.1.1).
    if !config.allow_context_takeover && !parsed.server_no_context_takeover {
        return Err(HandshakeError::UnexpectedExtension);
    }
    Ok(Some(DeflateParams {
        server_no_context_takeover: parsed.server_no_context_takeover,
        client_no_context_takeover: parsed.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::extensions::parse_extensions;
    use alloc::vec::Vec;

    fn offers(headers: &[&str]) -> Vec<ExtensionOffer> {
        let mut out = Vec::new();
        for h in headers {
            parse_extensions(h.as_bytes(), &mut out).unwrap();
        }
        out
    }

    const PLAIN: DeflateParams = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };

    fn accept(headers: &[&str]) -> Option<DeflateParams> {
        DeflateConfig::on().accept_offers(&offers(headers))
    }

    #[test]
    fn rfc7692_5_plain_offer_is_accepted() {
        assert_eq!(accept(&["permessage-deflate"]), Some(PLAIN));
        assert_eq!(PLAIN.response_value(), "permessage-deflate");
        assert_eq!(
            DeflateConfig::OFF.accept_offers(&offers(&["permessage-deflate"])),
            None
        );
        assert_eq!(accept(&["x-webkit-deflate-frame"]), None);
    }

    #[test]
    fn rfc7692_7_1_parameters_are_echoed() {
        let p = accept(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             client_max_window_bits=10",
        ])
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             client_max_window_bits=10"
        );
        // A valueless client_max_window_bits lets the server choose; our policy limits it.
        let config = DeflateConfig {
            max_window_bits: 8,
            allow_context_takeover: false,
            ..DeflateConfig::on()
        };
        let p = config
            .accept_offers(&offers(&["permessage-deflate; client_max_window_bits"]))
            .unwrap();
        assert_eq!(p.client_max_window_bits, 9, "8 counts as 9");
        assert!(p.client_no_context_takeover);
        // Without the parameter in the offer the server may not limit the client.
        let p = config
            .accept_offers(&offers(&["permessage-deflate"]))
            .unwrap();
        assert_eq!(p.client_max_window_bits, 15);
    }

    #[test]
    fn rfc7692_5_1_bad_offers_are_declined_and_the_next_one_tried() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=7",
        ] {
            assert_eq!(accept(&[bad]), None, "{bad}");
            let next = alloc::format!("{bad}, permessage-deflate; client_no_context_takeover");
            let p = accept(&[&next]).unwrap();
            assert!(p.client_no_context_takeover, "{bad}");
            // Across two headers too.
            let p = accept(&[bad, "permessage-deflate; client_no_context_takeover"]).unwrap();
            assert!(p.client_no_context_takeover, "{bad}");
        }
        let p = accept(&["permessage-deflate; server_max_window_bits=\"15\""]).unwrap();
        assert_eq!(p, PLAIN);
    }

    #[test]
    fn rfc7692_7_1_2_1_any_limit_on_our_window_is_accepted_and_answered() {
        let answer = |h: &str| {
            DeflateConfig::on()
                .answer_offers(&offers(&[h]))
                .map(|(p, value)| (p.server_max_window_bits, value))
        };
        for bits in 8..=14u8 {
            let offer = alloc::format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(answer(&offer), Some((bits, offer.clone())), "{bits}");
        }
        // The largest limit is answered too, though the agreement is the default.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=15"),
            Some((15, "permessage-deflate; server_max_window_bits=15".into()))
        );
        assert_eq!(
            answer("permessage-deflate"),
            Some((15, "permessage-deflate".into()))
        );
    }

    #[test]
    fn our_own_reset_is_announced_by_policy() {
        let dropping = DeflateConfig {
            keep_compressor: false,
            ..DeflateConfig::on()
        };
        let p = dropping
            .accept_offers(&offers(&["permessage-deflate"]))
            .unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(
            dropping.offer_value().unwrap(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
    }

    #[test]
    fn client_offer_follows_the_config() {
        assert_eq!(DeflateConfig::OFF.offer_value(), None);
        assert_eq!(
            DeflateConfig::on().offer_value().unwrap(),
            "permessage-deflate; client_max_window_bits"
        );
        let strict = DeflateConfig {
            allow_context_takeover: false,
            max_window_bits: 12,
            ..DeflateConfig::on()
        };
        assert_eq!(
            strict.offer_value().unwrap(),
            "permessage-deflate; client_max_window_bits; server_no_context_takeover; \
             server_max_window_bits=12"
        );
    }

    #[test]
    fn rfc7692_5_2_client_checks_the_answer() {
        let on = DeflateConfig::on();
        let check = |config: &DeflateConfig, h: &str| check_response(config, &offers(&[h]));
        assert_eq!(check(&on, ""), Ok(None));
        assert_eq!(check(&on, "permessage-deflate"), Ok(Some(PLAIN)));
        let p = check(
            &on,
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        )
        .unwrap()
        .unwrap();
        assert!(p.client_no_context_takeover && p.server_no_context_takeover);
        assert_eq!(
            check(&on, "permessage-deflate; client_max_window_bits=15"),
            Ok(Some(PLAIN))
        );
        // We offer client_max_window_bits: the server may limit our window.
        let p = check(&on, "permessage-deflate; client_max_window_bits=8")
            .unwrap()
            .unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        // §7.1.2.1: the server may announce a limit on its own window unasked.
        let p = check(&on, "permessage-deflate; server_max_window_bits=10")
            .unwrap()
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; bogus",
            "permessage-deflate, permessage-deflate",
            "x-other",
        ] {
            assert_eq!(
                check(&on, bad),
                Err(HandshakeError::UnexpectedExtension),
                "{bad}"
            );
        }
        assert_eq!(
            check(&DeflateConfig::OFF, "permessage-deflate"),
            Err(HandshakeError::UnexpectedExtension)
        );
        let strict = DeflateConfig {
            allow_context_takeover: false,
            max_window_bits: 12,
            ..DeflateConfig::on()
        };
        assert_eq!(
            check(&strict, "permessage-deflate"),
            Err(HandshakeError::UnexpectedExtension)
        );
        let p = check(
            &strict,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.server_max_window_bits, 8, "recorded as agreed");
        assert_eq!(
            check(
                &strict,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=13"
            ),
            Err(HandshakeError::UnexpectedExtension)
        );
    }

    #[test]
    fn server_answer_satisfies_our_client() {
        for takeover in [true, false] {
            for bits in 8..=15 {
                let config = DeflateConfig {
                    allow_context_takeover: takeover,
                    max_window_bits: bits,
                    ..DeflateConfig::on()
                };
                let offer = config.offer_value().unwrap();
                for server in [
                    DeflateConfig::on(),
                    DeflateConfig {
                        max_window_bits: 10,
                        allow_context_takeover: false,
                        keep_compressor: false,
                        ..DeflateConfig::on()
                    },
                ] {
                    let (p, answer) = server.answer_offers(&offers(&[&offer])).unwrap();
                    assert_eq!(check_response(&config, &offers(&[&answer])), Ok(Some(p)));
                }
            }
        }
    }

    #[test]
    fn handshakes_agree_on_the_params() {
        use crate::config::Config;
        use crate::entropy::SeededEntropy;
        use crate::handshake::response::tests::REQUEST;
        use crate::handshake::{ClientHandshake, ServerHandshake};
        use crate::time::Instant;

        let now = Instant::ZERO;
        let config = Config::default();
        for (client_policy, server_policy) in [
            (DeflateConfig::on(), DeflateConfig::on()),
            (
                DeflateConfig {
                    allow_context_takeover: false,
                    ..DeflateConfig::on()
                },
                DeflateConfig {
                    allow_context_takeover: false,
                    max_window_bits: 10,
                    ..DeflateConfig::on()
                },
            ),
            (DeflateConfig::on(), DeflateConfig::OFF),
            (DeflateConfig::OFF, DeflateConfig::on()),
        ] {
            let mut client = ClientHandshake::with_deflate(
                &config,
                now,
                REQUEST,
                &mut SeededEntropy::new(1),
                &client_policy,
            );
            let request = client.poll_transmit().unwrap();
            let mut server = ServerHandshake::new(&config, now);
            let offer = server.handle_bytes(now, &request).unwrap().unwrap();
            let mut server_conn = offer.accept_deflate(now, None, config.clone(), &server_policy);
            let answer = server_conn.poll_transmit().unwrap();
            let response = client.handle_bytes(now, &answer).unwrap().unwrap();
            let agreed = response.deflate_params().copied();
            assert_eq!(
                agreed.is_some(),
                client_policy.enabled && server_policy.enabled
            );
            assert_eq!(server_conn.deflate_params().copied(), agreed);
            let client_conn = response.into_connection(now, config.clone(), SeededEntropy::new(2));
            assert_eq!(client_conn.deflate_params().copied(), agreed);
        }
    }
}
