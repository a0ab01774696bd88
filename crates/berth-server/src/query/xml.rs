//! The XML of query-protocol responses, written from a JSON-shaped value: objects become
//! elements, arrays become `<member>` lists, as the AWS query protocol serializes them.
//! Hand-written: the shape is small and fixed, and no XML crate is needed to write it.

use serde_json::Value;

/// Escape text for XML character data and attribute values.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            // Characters XML 1.0 cannot carry at all (not even as references): an echo of
            // bad input must still be a document the client can parse.
            '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{c}'
            | '\u{e}'..='\u{1f}'
            | '\u{fffe}'
            | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => escape(s, out),
        Value::Array(items) => {
            for item in items {
                out.push_str("<member>");
                write_value(item, out);
                out.push_str("</member>");
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                out.push('<');
                out.push_str(k);
                out.push('>');
                write_value(v, out);
                out.push_str("</");
                out.push_str(k);
                out.push('>');
            }
        }
    }
}

/// Operations whose result is an empty structure that must still be sent (the SDKs
/// look for the element); every other operation without members sends none.
const EMPTY_RESULT_SENT: &[&str] = &["UpdateRole"];

/// A success response: `<{Op}Response xmlns><{Op}Result>…</{Op}Result><ResponseMetadata>…`.
pub fn response(operation: &str, namespace: &str, result: &Value, request_id: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.push_str(operation);
    out.push_str("Response xmlns=\"");
    out.push_str(namespace);
    out.push_str("\">");
    let empty = matches!(result, Value::Object(m) if m.is_empty()) || result.is_null();
    if !empty || EMPTY_RESULT_SENT.contains(&operation) {
        out.push('<');
        out.push_str(operation);
        out.push_str("Result>");
        write_value(result, &mut out);
        out.push_str("</");
        out.push_str(operation);
        out.push_str("Result>");
    }
    out.push_str("<ResponseMetadata><RequestId>");
    out.push_str(request_id);
    out.push_str("</RequestId></ResponseMetadata></");
    out.push_str(operation);
    out.push_str("Response>\n");
    out
}

/// An error response.
pub fn error(namespace: &str, sender: bool, code: &str, message: &str, request_id: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"");
    out.push_str(namespace);
    out.push_str("\"><Error><Type>");
    out.push_str(if sender { "Sender" } else { "Receiver" });
    out.push_str("</Type><Code>");
    escape(code, &mut out);
    out.push_str("</Code><Message>");
    escape(message, &mut out);
    out.push_str("</Message></Error><RequestId>");
    out.push_str(request_id);
    out.push_str("</RequestId></ErrorResponse>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn characters_xml_cannot_carry_are_replaced() {
        let mut out = String::new();
        escape("a\u{0}b\u{1b}c\td\ne\u{ffff}", &mut out);
        assert_eq!(out, "a\u{fffd}b\u{fffd}c\td\ne\u{fffd}");
    }

    #[test]
    fn lists_and_escaping() {
        let v = json!({"Users": [{"UserName": "a<b"}], "IsTruncated": false, "Marker": null});
        let x = response("ListUsers", "ns", &v, "r1");
        assert!(x.contains("<ListUsersResult><Users><member><UserName>a&lt;b</UserName></member></Users><IsTruncated>false</IsTruncated></ListUsersResult>"), "{x}");
        let e = error("ns", true, "NoSuchEntity", "x & y", "r2");
        assert!(e.contains("<Code>NoSuchEntity</Code><Message>x &amp; y</Message>"));
        assert!(!response("DeleteUser", "ns", &json!({}), "r").contains("DeleteUserResult"));
        assert!(response("UpdateRole", "ns", &json!({}), "r")
            .contains("<UpdateRoleResult></UpdateRoleResult>"));
    }
}
