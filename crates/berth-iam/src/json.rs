//! A small JSON reader that keeps what policy validation needs and `serde_json` drops:
//! every key of an object in order (duplicates included, so the validator can reject
//! them with their JSON path) and the byte span of every value (for line/column
//! positions and for caching compiled policies by their exact text).
//!
//! Written by hand because duplicate detection and spans are the product's own needs;
//! it is strict RFC 8259 and bounded in nesting depth.

use std::borrow::Cow;
use std::fmt;

/// Nesting depth beyond which a document is refused (stack safety on hostile input).
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value and the byte range `[start, end)` it covers in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<'a> {
    pub value: Value<'a>,
    pub start: usize,
    pub end: usize,
}

/// Strings borrow from the source unless they hold escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number exactly as written (IAM compares numbers by their text or parses them itself).
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order; duplicates are kept.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl Value<'_> {
    /// A short name for messages: "a string", "an object", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

impl<'a> Json<'a> {
    /// Member `key` of an object (the first one if repeated).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A syntax error with its byte offset and 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSON at line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Parse a complete JSON document (surrounding whitespace allowed, nothing else).
pub fn parse(src: &str) -> Result<Json<'_>, SyntaxError> {
    let mut p = Parser::new(src);
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error("unexpected text after the JSON value"));
    }
    Ok(v)
}

/// A cursor over JSON text; public so that stream readers (`berth policy decide`) can
/// walk an object member by member and skip values they only need the span of.
pub struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The text from the cursor on.
    pub fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Move the cursor `n` bytes on (over text the caller has recognised).
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
    }

    pub fn error(&self, message: impl Into<String>) -> SyntaxError {
        let (line, column) = line_column(self.src, self.pos);
        SyntaxError {
            message: message.into(),
            offset: self.pos,
            line,
            column,
        }
    }

    pub fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consume `b` (after whitespace) or fail.
    pub fn expect(&mut self, b: u8) -> Result<(), SyntaxError> {
        self.skip_ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", b as char)))
        }
    }

    fn unexpected(&self, wanted: &str) -> SyntaxError {
        match self.src[self.pos..].chars().next() {
            None => self.error(format!("unexpected end of input, expected {wanted}")),
            Some(c) => self.error(format!("unexpected character {c:?}, expected {wanted}")),
        }
    }

    /// Begin iterating an object: consumes `{`.
    pub fn begin_object(&mut self) -> Result<(), SyntaxError> {
        self.expect(b'{')
    }

    /// The next member key of an object being iterated, or `None` at its closing `}`.
    /// `first` tells whether this is the first member (no comma expected).
    pub fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, SyntaxError> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(None);
        }
        if !first {
            if self.peek() != Some(b',') {
                return Err(self.unexpected("',' or '}'"));
            }
            self.pos += 1;
            self.skip_ws();
        }
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a member name in double quotes"));
        }
        let key = self.string_cow()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// Begin iterating an array: consumes `[`.
    pub fn begin_array(&mut self) -> Result<(), SyntaxError> {
        self.expect(b'[')
    }

    /// Move to the next item of an array being iterated: `false` at its closing `]`.
    pub fn next_item(&mut self, first: bool) -> Result<bool, SyntaxError> {
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(false);
        }
        if !first {
            if self.peek() != Some(b',') {
                return Err(self.unexpected("',' or ']'"));
            }
            self.pos += 1;
        }
        Ok(true)
    }

    /// True if the next value is `null` (consumed).
    pub fn null(&mut self) -> bool {
        self.skip_ws();
        if self.bytes[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// Parse one value at the cursor.
    pub fn value(&mut self, depth: usize) -> Result<Json<'a>, SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        let value = self.walk(depth, true)?.unwrap_or(Value::Null);
        Ok(Json {
            value,
            start,
            end: self.pos,
        })
    }

    /// Skip one value, checking its syntax, and return its byte span.
    pub fn skip_value(&mut self, depth: usize) -> Result<(usize, usize), SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        self.walk(depth, false)?;
        Ok((start, self.pos))
    }

    /// Read one value (after whitespace); build it only when `keep`.
    fn walk(&mut self, depth: usize, keep: bool) -> Result<Option<Value<'a>>, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let value = match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                let mut first = true;
                loop {
                    self.skip_ws();
                    if first && self.peek() == Some(b'}') {
                        self.pos += 1;
                        break;
                    }
                    first = false;
                    if self.peek() != Some(b'"') {
                        return Err(self.unexpected("a member name in double quotes"));
                    }
                    let key = self.string_value(keep)?;
                    self.expect(b':')?;
                    self.skip_ws();
                    let v_start = self.pos;
                    let v = self.walk(depth + 1, keep)?;
                    if let Some(value) = v {
                        members.push((
                            key,
                            Json {
                                value,
                                start: v_start,
                                end: self.pos,
                            },
                        ));
                    }
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.unexpected("',' or '}'")),
                    }
                }
                Value::Object(members)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                let mut first = true;
                loop {
                    self.skip_ws();
                    if first && self.peek() == Some(b']') {
                        self.pos += 1;
                        break;
                    }
                    first = false;
                    let i_start = self.pos;
                    if let Some(value) = self.walk(depth + 1, keep)? {
                        items.push(Json {
                            value,
                            start: i_start,
                            end: self.pos,
                        });
                    }
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.unexpected("',' or ']'")),
                    }
                }
                Value::Array(items)
            }
            Some(b'"') => Value::String(self.string_value(keep)?),
            Some(b't') => {
                self.literal("true")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                Value::Bool(false)
            }
            Some(b'n') => {
                self.literal("null")?;
                Value::Null
            }
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            _ => return Err(self.unexpected("a JSON value")),
        };
        Ok(keep.then_some(value))
    }

    fn literal(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.unexpected("a JSON value"))
        }
    }

    fn number(&mut self) -> Result<&'a str, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            _ => return Err(self.unexpected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit after '.'"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        Ok(&self.src[start..self.pos])
    }

    /// A string value: borrowed when plain; when not kept, only checked.
    fn string_value(&mut self, keep: bool) -> Result<Cow<'a, str>, SyntaxError> {
        if keep {
            self.string_cow()
        } else {
            self.string_inner(false).map(Cow::Owned)
        }
    }

    /// Parse a string at the cursor, borrowing it from the source when it has no escapes.
    pub fn string_cow(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        let start = self.pos + 1;
        let n = plain_run(&self.bytes[start..]);
        if self.bytes.get(start + n) == Some(&b'"') {
            self.pos = start + n + 1;
            return Ok(Cow::Borrowed(&self.src[start..start + n]));
        }
        self.string().map(Cow::Owned)
    }

    /// Parse a string at the cursor (which must be at its opening quote).
    pub fn string(&mut self) -> Result<String, SyntaxError> {
        self.string_inner(true)
    }

    fn string_inner(&mut self, keep: bool) -> Result<String, SyntaxError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Jump to the next quote, backslash or control character.
            let n = plain_run(&self.bytes[self.pos..]);
            if self.pos + n == self.bytes.len() {
                self.pos = self.bytes.len();
                return Err(self.error("unterminated string"));
            }
            if self.bytes[self.pos + n] < 0x20 {
                self.pos += n;
                return Err(self.error("control character inside a string"));
            }
            if keep {
                out.push_str(&self.src[self.pos..self.pos + n]);
            }
            self.pos += n;
            if self.bytes[self.pos] == b'"' {
                self.pos += 1;
                return Ok(out);
            }
            self.pos += 1; // backslash
            let esc = self
                .peek()
                .ok_or_else(|| self.error("unterminated string"))?;
            self.pos += 1;
            let c = match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => {
                    self.pos -= 1;
                    return Err(self.error("invalid escape sequence in string"));
                }
            };
            if keep {
                out.push(c);
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid hex digit in \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.bytes[self.pos..].starts_with(b"\\u") {
                return Err(self.error("unpaired surrogate in \\u escape"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("unpaired surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate in \\u escape"))
    }
}

/// Length of the leading run of bytes that need no attention inside a string: everything
/// but `"`, `\\` and control characters. Eight bytes at a time (SWAR), then bytewise.
#[inline]
fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(w);
        let special = has_zero(w ^ (ONES * b'"' as u64))
            | has_zero(w ^ (ONES * b'\\' as u64))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if special != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && !SPECIAL[b[i] as usize] {
        i += 1;
    }
    i
}

/// Bytes that end a plain run inside a string.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Write `s` as a JSON string literal (with quotes) into `out`.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicates_and_spans() {
        let src = r#" {"a": 1, "a": [true, null, "x\u00e9"]} "#;
        let j = parse(src).unwrap();
        let Value::Object(m) = &j.value else { panic!() };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "a");
        assert_eq!(&src[m[1].1.start..m[1].1.end], r#"[true, null, "x\u00e9"]"#);
        let Value::Array(items) = &m[1].1.value else {
            panic!()
        };
        let texts: Vec<&str> = items.iter().map(|j| &src[j.start..j.end]).collect();
        assert_eq!(texts, ["true", "null", r#""x\u00e9""#]);
        assert_eq!(items[2].value, Value::String("xé".into()));
    }

    #[test]
    fn rejects_bad_syntax_with_position() {
        for (src, msg) in [
            ("{\"a\": }", "expected a JSON value"),
            ("{\"a\": 1,}", "member name"),
            ("[1 2]", "',' or ']'"),
            ("\"abc", "unterminated"),
            ("01", "unexpected text"),
            ("{} x", "unexpected text"),
            ("\"\\q\"", "invalid escape"),
            ("\"\\ud800\"", "surrogate"),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.message.contains(msg), "{src}: {e}");
        }
        let e = parse("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        let ok = "[".repeat(10) + &"]".repeat(10);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn skip_matches_parse() {
        let src = r#"{"x": {"y": [1, -2.5e3, "s\"", {}]}, "z": []}"#;
        let mut p = Parser::new(src);
        p.begin_object().unwrap();
        assert_eq!(p.next_key(true).unwrap().as_deref(), Some("x"));
        let (s, e) = p.skip_value(0).unwrap();
        assert_eq!(&src[s..e], r#"{"y": [1, -2.5e3, "s\"", {}]}"#);
        assert_eq!(p.next_key(false).unwrap().as_deref(), Some("z"));
        p.skip_value(0).unwrap();
        assert_eq!(p.next_key(false).unwrap(), None);
    }

    #[test]
    fn string_writer_round_trips() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\n\u{1}é");
        let j = parse(&out).unwrap();
        assert_eq!(j.as_str(), Some("a\"b\\c\n\u{1}é"));
    }
}
