//! The body of `POST /api/push`: `{"user":"id"}`, `{"room":"name"}` or
//! `{"everyone":true}`, and `"data"`, kept as the exact JSON text the backend wrote; or
//! an array of up to [`MAX_BATCH`] of them, acted on in order as one request.

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::Target;

use crate::plain;

/// Pushes one request may carry.
pub(crate) const MAX_BATCH: usize = 1000;

/// One push: where it goes, and its `data` as JSON text.
pub(crate) type Push = (Target, Bytes);

/// The pushes of a body: one object, or an array of them (`Some` count for an array, so
/// the answer can have the same shape), or why the whole body is refused (400). A batch
/// is refused whole if any of its pushes is.
pub(crate) fn parse_pushes(body: &[u8]) -> Result<(Vec<Push>, bool), &'static str> {
    let text = body.trim_ascii_start();
    if !text.starts_with(b"[") {
        return Ok((vec![parse_push(body)?], false));
    }
    if plain::depth(body) > plain::MAX_JSON_DEPTH {
        return Err("json nested too deeply");
    }
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|_| "body is not a JSON array of pushes")?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err("a batch holds 1 to 1000 pushes");
    }
    let pushes = items
        .iter()
        .map(|item| parse_push(item.get().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((pushes, true))
}

/// The target and the `data` (as JSON text) of a push body, or why it is refused (400).
pub(crate) fn parse_push(body: &[u8]) -> Result<Push, &'static str> {
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

    #[test]
    fn a_batch_is_its_pushes_in_order_or_refused_whole() {
        let (pushes, batch) =
            parse_pushes(br#" [{"room":"r","data":1},{"user":"kim","data":[2]}]"#).unwrap();
        assert!(batch);
        assert_eq!(pushes[0].0, Target::Room("r".into()));
        assert_eq!(&pushes[1].1[..], b"[2]");
        let (pushes, batch) = parse_pushes(br#"{"room":"r","data":1}"#).unwrap();
        assert!(!batch);
        assert_eq!(pushes.len(), 1);
        assert!(parse_pushes(br#"[{"room":"r","data":1},{"data":2}]"#).is_err());
        assert!(parse_pushes(b"[]").is_err());
        assert!(parse_pushes(b"[1,").is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"room":"r","data":0}"#; MAX_BATCH + 1].join(",")
        );
        assert!(parse_pushes(many.as_bytes()).is_err());
    }
}
