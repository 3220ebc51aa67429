//! A small parser for `ws://` and `wss://` URLs (RFC 6455 §3), and [`UrlError`], what is
//! wrong with a URL the runtime cannot use.

use std::fmt;

/// Why a URL cannot be used (as [`Error::Url`](crate::Error::Url)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than `ws` or `wss`.
    UnsupportedScheme,
    /// A `#fragment` (RFC 6455 §3: WebSocket URIs must not have one).
    Fragment,
    /// `user@host` (user info is not supported).
    UserInfo,
    /// No host, an IPv6 address without its closing `]`, or (for `wss://`) a host that
    /// is no valid TLS server name.
    InvalidHost,
    /// A port that is not a number from 0 to 65535.
    InvalidPort,
    /// A `wss://` URL given to `Client::connect`, which never connects in the clear and
    /// never with TLS: use `Client::open` or `Client::connect_tls`.
    ExpectedWs,
    /// A `ws://` URL given to `Client::connect_tls`, which only connects with TLS.
    ExpectedWss,
    /// A `wss://` URL while the runtime's `tls` feature is off.
    TlsUnavailable,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::MissingScheme => "missing scheme (ws:// or wss://)",
            UrlError::UnsupportedScheme => "scheme must be ws or wss",
            UrlError::Fragment => "fragments are not allowed",
            UrlError::UserInfo => "user info is not supported",
            UrlError::InvalidHost => "missing or invalid host",
            UrlError::InvalidPort => "bad port",
            UrlError::ExpectedWs => {
                "Client::connect is for ws:// URLs; use Client::open or Client::connect_tls \
                 (feature `tls`) for wss://"
            }
            UrlError::ExpectedWss => "Client::connect_tls is for wss:// URLs",
            UrlError::TlsUnavailable => "wss:// needs the `tls` feature",
        })
    }
}

impl std::error::Error for UrlError {}

/// A parsed `ws://host[:port][/path][?query]` or `wss://…` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    tls: bool,
    host: String,
    port: u16,
    resource: String,
}

impl WsUrl {
    /// Parses `url`. The scheme must be `ws` or `wss` (any case); the port defaults to 80
    /// (`ws`) or 443 (`wss`) and the path to `/`. Fragments and user info are refused (§3: "Fragment identifiers are
    /// meaningless in the context of WebSocket URIs and MUST NOT be used").
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
        let tls = scheme.eq_ignore_ascii_case("wss");
        if !tls && !scheme.eq_ignore_ascii_case("ws") {
            return Err(UrlError::UnsupportedScheme);
        }
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(UrlError::InvalidHost)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidPort)?),
            };
            (format!("[{addr}]"), port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(UrlError::InvalidHost);
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => p.parse().map_err(|_| UrlError::InvalidPort)?,
        };
        let resource = match resource {
            "" => "/".to_string(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_string(),
        };
        Ok(WsUrl {
            tls,
            host,
            port,
            resource,
        })
    }

    /// The scheme is `wss`: the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host as written, IPv6 addresses in brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: 80 (`ws`) or 443 (`wss`) when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query to request, at least `/`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The value of the `Host` header: the host, and the port unless it is the scheme's
    /// default.
    pub fn host_header(&self) -> String {
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => self.host.clone(),
            (_, port) => format!("{}:{port}", self.host),
        }
    }

    /// The host and port to connect to (IPv6 addresses without brackets).
    pub fn socket_addr(&self) -> (&str, u16) {
        let host = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        (host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u = WsUrl::parse("ws://127.0.0.1:9001/runCase?case=3&agent=x").unwrap();
        assert_eq!(u.socket_addr(), ("127.0.0.1", 9001));
        assert_eq!(u.resource(), "/runCase?case=3&agent=x");
        assert_eq!(u.host_header(), "127.0.0.1:9001");

        let u = WsUrl::parse("WS://example.com").unwrap();
        assert_eq!((u.port(), u.resource()), (80, "/"));
        assert_eq!(u.host_header(), "example.com");

        let u = WsUrl::parse("wss://example.com/a").unwrap();
        assert!(u.is_tls());
        assert_eq!(
            (u.port(), u.host_header()),
            (443, "example.com".to_string())
        );
        let u = WsUrl::parse("WSS://example.com:8443").unwrap();
        assert_eq!(u.host_header(), "example.com:8443");
        assert!(!WsUrl::parse("ws://example.com:443/").unwrap().is_tls());

        let u = WsUrl::parse("ws://example.com?x=1").unwrap();
        assert_eq!(u.resource(), "/?x=1");

        let u = WsUrl::parse("ws://[::1]:8080/a").unwrap();
        assert_eq!(u.socket_addr(), ("::1", 8080));
        assert_eq!(u.host_header(), "[::1]:8080");
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (bad, why) in [
            ("http://example.com/", UrlError::UnsupportedScheme),
            ("example.com", UrlError::MissingScheme),
            ("ws://", UrlError::InvalidHost),
            ("ws://host:99999/", UrlError::InvalidPort),
            ("ws://host:/", UrlError::InvalidPort),
            ("ws://host/#frag", UrlError::Fragment),
            ("ws://user@host/", UrlError::UserInfo),
            ("ws://[::1/", UrlError::InvalidHost),
        ] {
            assert_eq!(WsUrl::parse(bad), Err(why), "{bad}");
        }
        assert_eq!(UrlError::InvalidPort.to_string(), "bad port");
    }
}
