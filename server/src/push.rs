//! The body of `POST /api/push`: `{"user":"id"}`, `{"room":"name"}` or
//! `{"everyone":true}`, and `"data"`, kept as the exact JSON text the backend wrote.

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::Target;

use crate::plain;

/// The target and the `data` (as JSON text) of a push body, or why it is refused (400).
pub(crate) fn parse_push(body: &[u8]) -> Result<(Target, Bytes), &'static str> {
    if plain::depth(body) > plain::MAX_JSON_DEPTH {
        return Err("json nested too deeply");
    }
    let object = plain::raw_object(body).map_err(|e| match e {
        plain::RawError::NotJson => "body is not valid JSON",
        plain::RawError::NotObject => "body must be a JSON object",
    })?;
    // Kept as the backend wrote it: big numbers keep their digits, objects their order.
    let data = object
        .get("data")
        .ok_or("missing \"data\"")?
        .get()
        .to_string();
    let mut targets = Vec::new();
    match object.get("user").map(|raw| plain::as_string(raw)) {
        Some(Some(user)) if !user.is_empty() => targets.push(Target::User(UserId(user))),
        Some(_) => return Err("\"user\" must be a non-empty string"),
        None => {}
    }
    match object.get("room").map(|raw| plain::as_string(raw)) {
        Some(Some(room)) if !room.is_empty() => targets.push(Target::Room(room)),
        Some(_) => return Err("\"room\" must be a non-empty string"),
        None => {}
    }
    match object.get("everyone").map(|raw| raw.get()) {
        Some("true") => targets.push(Target::Everyone),
        Some(_) => return Err("\"everyone\" must be true"),
        None => {}
    }
    if targets.len() != 1 {
        return Err("exactly one target needed: \"user\", \"room\" or \"everyone\":true");
    }
    Ok((targets.remove(0), Bytes::from(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_keeps_the_data_text_the_backend_wrote() {
        let body = br#"{"data":{"z":18446744073709551616,"a":1.50},"user":"kim"}"#;
        let (target, data) = parse_push(body).unwrap();
        assert_eq!(target, Target::User(UserId("kim".into())));
        assert_eq!(&data[..], br#"{"z":18446744073709551616,"a":1.50}"#);
        let (target, _) = parse_push(br#"{"everyone": true ,"data":1}"#).unwrap();
        assert_eq!(target, Target::Everyone);
        assert!(parse_push(br#"{"everyone":1,"data":1}"#).is_err());
        assert!(parse_push(br#"{"user":7,"data":1}"#).is_err());
        assert!(parse_push(br#"[1]"#).is_err());
    }
}
