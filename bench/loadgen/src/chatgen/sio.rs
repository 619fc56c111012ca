//! The slice of Engine.IO v4 and Socket.IO v5 (default namespace, text
//! packets only) a chat client needs: reading what a server sends over the
//! WebSocket transport, and writing events and acks.

use serde_json::Value;

/// One text frame from the server, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Engine.IO `open` (the handshake's sid and ping settings; unused).
    Open,
    /// Engine.IO `ping`: answer with [`PONG`].
    Ping,
    /// Engine.IO `close`, or Socket.IO `disconnect`.
    Close,
    /// Socket.IO `connect` of the default namespace: the auth was accepted.
    Connected,
    /// Socket.IO `connect_error`, with the server's message.
    ConnectError(String),
    /// An event, with the ack id the server wants answered.
    Event {
        ack: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    /// The server's answer to an event we sent with an ack id.
    Ack { id: u64, args: Vec<Value> },
    /// Anything else (another namespace, binary placeholders, noise).
    Other,
}

/// Engine.IO `pong`.
pub const PONG: &str = "3";

/// The frame that connects the default namespace with `auth`.
pub fn connect(auth: &Value) -> String {
    format!("40{auth}")
}

/// An event frame `name(args…)`, asking for an ack when `ack` is set.
pub fn event(ack: Option<u64>, name: &str, args: &[Value]) -> String {
    let mut list = Vec::with_capacity(args.len() + 1);
    list.push(Value::from(name));
    list.extend(args.iter().cloned());
    let id = ack.map(|a| a.to_string()).unwrap_or_default();
    format!("42{id}{}", Value::Array(list))
}

/// The ack frame answering the server's event `id` with `args`.
pub fn ack(id: u64, args: &[Value]) -> String {
    format!("43{id}{}", Value::Array(args.to_vec()))
}

/// Decodes one text frame.
pub fn parse(frame: &str) -> Packet {
    let mut chars = frame.chars();
    match chars.next() {
        Some('0') => Packet::Open,
        Some('1') => Packet::Close,
        Some('2') => Packet::Ping,
        Some('4') => parse_socket(chars.as_str()),
        _ => Packet::Other,
    }
}

fn parse_socket(s: &str) -> Packet {
    let mut chars = s.chars();
    let kind = chars.next();
    let rest = chars.as_str();
    if rest.starts_with('/') {
        return Packet::Other; // a namespace other than "/"
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse::<u64>().ok();
    let body = &rest[digits..];
    match kind {
        Some('0') => Packet::Connected,
        Some('1') => Packet::Close,
        Some('4') => {
            let message = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| body.to_string());
            Packet::ConnectError(message)
        }
        Some('2') => match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(mut list)) if matches!(list.first(), Some(Value::String(_))) => {
                let name = match list.remove(0) {
                    Value::String(n) => n,
                    _ => return Packet::Other,
                };
                Packet::Event {
                    ack: id,
                    name,
                    args: list,
                }
            }
            _ => Packet::Other,
        },
        Some('3') => match (id, serde_json::from_str::<Value>(body)) {
            (Some(id), Ok(Value::Array(args))) => Packet::Ack { id, args },
            _ => Packet::Other,
        },
        _ => Packet::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_a_socket_io_server_sends() {
        assert_eq!(parse(r#"0{"sid":"x","pingInterval":25000}"#), Packet::Open);
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse(r#"40{"sid":"abc"}"#), Packet::Connected);
        assert_eq!(
            parse(r#"44{"message":"invalid token"}"#),
            Packet::ConnectError("invalid token".into())
        );
        assert_eq!(
            parse(r#"4212["receiveMessage",{"id":"m1"}]"#),
            Packet::Event {
                ack: Some(12),
                name: "receiveMessage".into(),
                args: vec![json!({"id": "m1"})]
            }
        );
        assert_eq!(
            parse(r#"42["online_users",["a","b"]]"#),
            Packet::Event {
                ack: None,
                name: "online_users".into(),
                args: vec![json!(["a", "b"])]
            }
        );
        assert_eq!(
            parse(r#"437[{"ok":true}]"#),
            Packet::Ack {
                id: 7,
                args: vec![json!({"ok": true})]
            }
        );
        assert_eq!(parse("41"), Packet::Close);
        assert_eq!(parse("1"), Packet::Close);
    }

    #[test]
    fn noise_and_other_namespaces_are_other() {
        for frame in [
            "",
            "9",
            "4",
            "42",
            "42{}",
            "42[1]",
            "43[1]",
            "42/admin,[\"x\"]",
            "5",
        ] {
            assert_eq!(parse(frame), Packet::Other, "{frame:?}");
        }
    }

    #[test]
    fn writes_frames_a_socket_io_server_reads() {
        assert_eq!(connect(&json!({"token": "t"})), r#"40{"token":"t"}"#);
        assert_eq!(
            event(Some(3), "sendMessage", &[json!({"id": "m"})]),
            r#"423["sendMessage",{"id":"m"}]"#
        );
        assert_eq!(event(None, "typing", &[]), r#"42["typing"]"#);
        assert_eq!(ack(9, &[json!({"ok": true})]), r#"439[{"ok":true}]"#);
    }
}
