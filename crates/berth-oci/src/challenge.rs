//! `WWW-Authenticate` challenges of an upstream registry (RFC 9110 §11.6.1), as the
//! pull-through cache reads them to sign in: `Basic realm="…"`, or the Docker token flow's
//! `Bearer realm="…",service="…",scope="…"`. Untrusted input: never a panic, bounded
//! work, and whatever does not read as a challenge is left out.

/// One challenge: its scheme (lowercase) and parameters (names lowercase, values
/// unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The most challenges, and parameters per challenge, read from one header.
const MAX_ITEMS: usize = 32;

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn skip_commas(&mut self) {
        loop {
            self.skip_ws();
            if self.peek() == Some(b',') {
                self.i += 1;
            } else {
                return;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A token68 or token value (`=` padding allowed at its end).
    fn value_token(&mut self) -> String {
        let start = self.i;
        while self.i < self.s.len() && (is_tchar(self.s[self.i]) || self.s[self.i] == b'/') {
            self.i += 1;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Whether a `name=` parameter starts here (a token followed by `=`, not `==`).
    fn at_param(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len() && is_tchar(self.s[j]) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while j < self.s.len() && matches!(self.s[j], b' ' | b'\t') {
            j += 1;
        }
        self.s.get(j) == Some(&b'=') && self.s.get(j + 1) != Some(&b'=')
    }
}

/// Every challenge of a `WWW-Authenticate` header value, in order.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    while out.len() < MAX_ITEMS {
        c.skip_commas();
        let Some(scheme) = c.token() else {
            break;
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        c.skip_ws();
        // Parameters, until something that is not `name=value` (the next challenge's
        // scheme) or the end.
        loop {
            c.skip_commas();
            if c.peek().is_none() || !c.at_param() {
                // A token68 (`Basic dXNlcg==`) is no parameter: skip it.
                if challenge.params.is_empty()
                    && c.peek().is_some_and(|b| is_tchar(b) || b == b'/')
                    && !c.at_param()
                {
                    let save = c.i;
                    let _ = c.value_token();
                    c.skip_ws();
                    // If a comma or the end follows, it was a token68; else it was the
                    // next challenge's scheme: go back.
                    if !matches!(c.peek(), None | Some(b',')) {
                        c.i = save;
                    }
                }
                break;
            }
            let name = c.token().unwrap_or_default().to_ascii_lowercase();
            c.skip_ws();
            c.i += 1; // '='
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.quoted()
            } else {
                c.value_token()
            };
            if challenge.params.len() < MAX_ITEMS {
                challenge.params.push((name, value));
            }
        }
        out.push(challenge);
        // No progress means a byte no rule takes: skip it.
        if let Some(b) = c.peek() {
            if !is_tchar(b) && b != b',' && b != b' ' && b != b'\t' {
                c.i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_token_challenge() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn basic_and_several() {
        let c = parse(r#"Basic realm="Registry Realm", Bearer realm=x , service = "a\"b""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("x"));
        assert_eq!(c[1].param("service"), Some("a\"b"));
        let t = parse("Negotiate abc==, Basic realm=r");
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].scheme, "basic");
        assert_eq!(t[1].param("realm"), Some("r"));
    }

    #[test]
    fn garbage_reads_as_little() {
        for s in [
            "",
            ",,,",
            "\"",
            "=",
            "Bearer =",
            "Bearer realm=\"unterminated",
            "\u{7f}\u{0}x",
            "a b c d",
        ] {
            let _ = parse(s);
        }
        assert_eq!(
            parse("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
        let many = "x=1,".repeat(10_000);
        assert!(parse(&format!("Bearer {many}"))[0].params.len() <= MAX_ITEMS);
    }
}
