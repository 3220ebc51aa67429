//! The plain JSON mode of `docs/PROTOCOL.md` §10: what a browser's bare `WebSocket` speaks.
//! Parsing client messages and writing server messages; no I/O and no hub calls here.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::Value;

/// Deepest nesting of arrays and objects accepted in a client message. serde_json stops
/// at 128 levels by itself; we stop far earlier so a connection thread's small stack is
/// never at risk, and no chat message needs more.
pub(crate) const MAX_JSON_DEPTH: usize = 32;

/// What a client asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// `{"type":"join","room":"lobby"}`
    Join { room: String },
    /// `{"type":"leave","room":"lobby"}`
    Leave { room: String },
    /// `{"type":"message","room":"lobby","data":…}`
    ToRoom { room: String, data: String },
    /// `{"type":"message","to":"bob","data":…}`
    ToUser { to: String, data: String },
}

/// Why a client message was not understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not JSON, not an object, no or an unknown `type`: the connection is closed 1008.
    Violation(&'static str),
    /// A known type with bad members: answered with an `error` message, connection kept.
    Error(&'static str),
}

/// Parses one text message from a client.
pub(crate) fn parse(text: &[u8]) -> Result<ClientMessage, Refused> {
    if depth(text) > MAX_JSON_DEPTH {
        return Err(Refused::Violation("json nested too deeply"));
    }
    let mut object = match raw_object(text) {
        Ok(object) => object,
        Err(RawError::NotJson) => return Err(Refused::Violation("invalid json")),
        Err(RawError::NotObject) => {
            return Err(Refused::Violation("message must be a json object"))
        }
    };
    let kind = match object.get("type").and_then(|raw| as_string(raw)) {
        Some(kind) => kind,
        None => return Err(Refused::Violation("message needs a string \"type\"")),
    };
    let mut string = |name: &str| match object.remove(name) {
        Some(raw) => match as_string(&raw) {
            Some(s) if !s.is_empty() => Ok(Some(s)),
            _ => Err(Refused::Error("room and to must be non-empty strings")),
        },
        None => Ok(None),
    };
    match kind.as_str() {
        "join" | "leave" => {
            let room = string("room")?.ok_or(Refused::Error("join and leave need a room"))?;
            Ok(if kind == "join" {
                ClientMessage::Join { room }
            } else {
                ClientMessage::Leave { room }
            })
        }
        "message" => {
            let room = string("room")?;
            let to = string("to")?;
            let data = object
                .remove("data")
                .ok_or(Refused::Error("message needs data"))?
                .get()
                .to_string();
            match (room, to) {
                (Some(room), None) => Ok(ClientMessage::ToRoom { room, data }),
                (None, Some(to)) => Ok(ClientMessage::ToUser { to, data }),
                _ => Err(Refused::Error("message needs exactly one of room or to")),
            }
        }
        _ => Err(Refused::Violation("unknown message type")),
    }
}

/// A JSON object's fields as the exact text each value had: `data` is passed on
/// unchanged (big numbers keep their digits, objects their key order).
pub(crate) type RawObject = HashMap<String, Box<RawValue>>;

/// Why text is not a [`RawObject`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawError {
    /// Not JSON at all.
    NotJson,
    /// JSON, but not an object.
    NotObject,
}

/// Parses `text` as a JSON object, keeping each value's text (check [`depth`] first).
pub(crate) fn raw_object(text: &[u8]) -> Result<RawObject, RawError> {
    serde_json::from_slice::<RawObject>(text).map_err(|_| {
        match serde_json::from_slice::<Value>(text) {
            Ok(_) => RawError::NotObject,
            Err(_) => RawError::NotJson,
        }
    })
}

/// The string a raw JSON value holds, if it is one.
pub(crate) fn as_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

/// The deepest nesting of `[` and `{` outside strings (a cheap scan before parsing).
pub(crate) fn depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// `{"type":"welcome","user":"<id>"}`: the first message on every connection.
pub(crate) fn welcome(user: &str) -> String {
    format!("{{\"type\":\"welcome\",\"user\":{}}}", quote(user))
}

/// `{"type":"message","room":…,"from":…,"data":…}`; `room` and `from` are left out when
/// absent (a direct message; a push from the backend). `data` is JSON text already.
pub(crate) fn message(room: Option<&str>, from: Option<&str>, data: &[u8]) -> String {
    let data = std::str::from_utf8(data).unwrap_or("null");
    let mut out = String::with_capacity(48 + data.len());
    out.push_str("{\"type\":\"message\"");
    if let Some(room) = room {
        out.push_str(",\"room\":");
        out.push_str(&quote(room));
    }
    if let Some(from) = from {
        out.push_str(",\"from\":");
        out.push_str(&quote(from));
    }
    out.push_str(",\"data\":");
    out.push_str(if data.is_empty() { "null" } else { data });
    out.push('}');
    out
}

/// `{"type":"presence","room":…,"user":…,"joined":true|false}`
pub(crate) fn presence(room: &str, user: &str, joined: bool) -> String {
    format!(
        "{{\"type\":\"presence\",\"room\":{},\"user\":{},\"joined\":{joined}}}",
        quote(room),
        quote(user)
    )
}

/// `{"type":"joined","room":…,"members":[…],"count":n}`: the answer to a join, with who is
/// there: all of them in a small room, the first page (in name order) of a large one, and
/// how many in all.
pub(crate) fn joined<'a>(
    room: &str,
    members: impl IntoIterator<Item = &'a str>,
    count: usize,
) -> String {
    let members: Vec<Value> = members.into_iter().map(Value::from).collect();
    format!(
        "{{\"type\":\"joined\",\"room\":{},\"members\":{},\"count\":{count}}}",
        quote(room),
        Value::Array(members)
    )
}

/// `{"type":"left","room":…}`: the answer to a leave.
pub(crate) fn left(room: &str) -> String {
    format!("{{\"type\":\"left\",\"room\":{}}}", quote(room))
}

/// `{"type":"error","reason":…}`
pub(crate) fn error(reason: &str) -> String {
    format!("{{\"type\":\"error\",\"reason\":{}}}", quote(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_passed_on_as_the_sender_wrote_it() {
        let text = br#"{"type":"message","room":"r","data":{"z":18446744073709551616,"a":1.50}}"#;
        assert_eq!(
            parse(text),
            Ok(ClientMessage::ToRoom {
                room: "r".into(),
                data: r#"{"z":18446744073709551616,"a":1.50}"#.into()
            })
        );
        assert_eq!(
            parse(b"[1]"),
            Err(Refused::Violation("message must be a json object"))
        );
        assert_eq!(parse(b"{nope"), Err(Refused::Violation("invalid json")));
    }

    #[test]
    fn parses_every_client_type() {
        assert_eq!(
            parse(br#"{"type":"join","room":"lobby"}"#),
            Ok(ClientMessage::Join {
                room: "lobby".into()
            })
        );
        assert_eq!(
            parse(br#"{"type":"leave","room":"lobby"}"#),
            Ok(ClientMessage::Leave {
                room: "lobby".into()
            })
        );
        assert_eq!(
            parse(br#"{"type":"message","room":"r","data":{"a":[1,"x"]}}"#),
            Ok(ClientMessage::ToRoom {
                room: "r".into(),
                data: r#"{"a":[1,"x"]}"#.into()
            })
        );
        assert_eq!(
            parse(br#"{"type":"message","to":"bob","data":"hi"}"#),
            Ok(ClientMessage::ToUser {
                to: "bob".into(),
                data: "\"hi\"".into()
            })
        );
    }

    #[test]
    fn violations_and_errors() {
        assert!(matches!(parse(b"{nope"), Err(Refused::Violation(_))));
        assert!(matches!(parse(b"[1]"), Err(Refused::Violation(_))));
        assert!(matches!(
            parse(br#"{"type":"dance"}"#),
            Err(Refused::Violation(_))
        ));
        assert!(matches!(
            parse(br#"{"type":"join"}"#),
            Err(Refused::Error(_))
        ));
        assert!(matches!(
            parse(br#"{"type":"message","room":"r","to":"b","data":1}"#),
            Err(Refused::Error(_))
        ));
        assert!(matches!(
            parse(br#"{"type":"message","room":"r"}"#),
            Err(Refused::Error(_))
        ));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(parse(deep.as_bytes()), Err(Refused::Violation(_))));
        assert_eq!(depth(br#"{"a":"[[[[\"[["}"#), 1);
    }

    #[test]
    fn server_messages_are_json() {
        for text in [
            welcome("al\"ice"),
            message(Some("r"), Some("a"), b"{\"x\":1}"),
            message(None, None, b"[1,2]"),
            presence("r", "u", true),
            joined("r", ["a", "b"], 2),
            left("r"),
            error("not a member"),
        ] {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(v["type"].is_string());
        }
        assert_eq!(
            message(Some("r"), Some("a"), b"\"hi\""),
            r#"{"type":"message","room":"r","from":"a","data":"hi"}"#
        );
    }
}
