//! The parameters of a query-protocol request (`Action=CreateUser&UserName=bob&
//! Tags.member.1.Key=team&…`), with the constraint checks and messages AWS gives.

use super::error::ApiError;

/// Decoded request parameters, in the order sent.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Decode `application/x-www-form-urlencoded` text (`+` is a space); reject bytes that
/// are not UTF-8 once decoded.
pub fn decode_form(raw: &[u8]) -> Result<Params, ApiError> {
    let mut pairs = Vec::new();
    for part in raw.split(|b| *b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        pairs.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(Params { pairs })
}

fn decode_component(s: &[u8]) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    s.get(i + 1).and_then(|c| hex(*c)),
                    s.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => {
                        return Err(malformed(format!(
                        "'%' at byte {i} of a parameter is not followed by two hexadecimal digits"
                    )))
                    }
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| malformed("a parameter is not valid UTF-8 once decoded"))
}

fn malformed(m: impl Into<String>) -> ApiError {
    ApiError::new(400, "MalformedQueryString", m)
}

/// The name AWS validation messages use for a parameter: `UserName` → `userName`.
fn member_name(param: &str) -> String {
    let mut c = param.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Characters allowed in IAM user, group, role and policy names (`[\w+=,.@-]`).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                member_name(name)
            ))
        })
    }

    fn constraint(name: &str, value: &str, what: &str) -> ApiError {
        ApiError::validation(format!(
            "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {what}",
            member_name(name)
        ))
    }

    /// A required IAM name (`[\w+=,.@-]+`, 1..=max characters).
    pub fn name(&self, param: &str, max: usize) -> Result<&str, ApiError> {
        let v = self.required(param)?;
        check_name(param, v, max)?;
        Ok(v)
    }

    /// An optional IAM name.
    pub fn optional_name(&self, param: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.get(param) {
            None => Ok(None),
            Some(v) => check_name(param, v, max).map(|_| Some(v)),
        }
    }

    /// A path (`/` or `/a/b/`), `/` when absent.
    pub fn path(&self, param: &str) -> Result<&str, ApiError> {
        let Some(p) = self.get(param) else {
            return Ok("/");
        };
        let ok = (1..=512).contains(&p.len())
            && p.starts_with('/')
            && p.ends_with('/')
            && p.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !ok {
            return Err(Self::constraint(
                param,
                p,
                "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
            ));
        }
        Ok(p)
    }

    /// An optional integer in `range`.
    pub fn int(
        &self,
        param: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(param) else {
            return Ok(None);
        };
        let n: i64 = v.parse().map_err(|_| {
            ApiError::validation(format!(
                "Value '{v}' for parameter {param} is invalid: it must be an integer"
            ))
        })?;
        if !range.contains(&n) {
            let (lo, hi) = (range.start(), range.end());
            return Err(Self::constraint(
                param,
                v,
                &if n < *lo {
                    format!("Member must have value greater than or equal to {lo}")
                } else {
                    format!("Member must have value less than or equal to {hi}")
                },
            ));
        }
        Ok(Some(n))
    }

    pub fn bool(&self, param: &str) -> Result<Option<bool>, ApiError> {
        match self.get(param) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::validation(format!(
                "Value '{v}' for parameter {param} is invalid: use true or false"
            ))),
        }
    }

    /// A string within a length range.
    pub fn text(
        &self,
        param: &str,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<&str>, ApiError> {
        let Some(v) = self.get(param) else {
            return Ok(None);
        };
        let n = v.chars().count();
        if n < *range.start() {
            return Err(Self::constraint(
                param,
                v,
                &format!(
                    "Member must have length greater than or equal to {}",
                    range.start()
                ),
            ));
        }
        if n > *range.end() {
            return Err(Self::constraint(
                param,
                &v.chars().take(64).collect::<String>(),
                &format!(
                    "Member must have length less than or equal to {}",
                    range.end()
                ),
            ));
        }
        Ok(Some(v))
    }

    /// `Name.member.N` values, in order of N.
    pub fn list(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u32, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// `Name.member.N.Field` structures, in order of N: each a list of (field, value).
    pub fn structs(&self, name: &str) -> Vec<Vec<(&str, &str)>> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u32, Vec<(&str, &str)>)> = Vec::new();
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            match items.iter_mut().find(|(m, _)| *m == n) {
                Some((_, fields)) => fields.push((field, v)),
                None => items.push((n, vec![(field, v)])),
            }
        }
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, f)| f).collect()
    }
}

fn check_name(param: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() || v.chars().count() > max {
        return Err(Params::constraint(
            param,
            v,
            &if v.is_empty() {
                "Member must have length greater than or equal to 1".to_string()
            } else {
                format!("Member must have length less than or equal to {max}")
            },
        ));
    }
    if !v.chars().all(is_name_char) {
        return Err(Params::constraint(
            param,
            v,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_lists() {
        let p = decode_form(b"Action=TagUser&UserName=a%2Bb+c&Tags.member.2.Key=k2&Tags.member.1.Key=k1&Tags.member.1.Value=v1&TagKeys.member.1=x").unwrap();
        assert_eq!(p.get("UserName"), Some("a+b c"));
        let tags = p.structs("Tags");
        assert_eq!(tags[0], vec![("Key", "k1"), ("Value", "v1")]);
        assert_eq!(tags[1], vec![("Key", "k2")]);
        assert_eq!(p.list("TagKeys"), vec!["x"]);
        assert!(decode_form(b"a=%zz").is_err());
        assert!(decode_form(b"a=%ff").is_err());
        let e = p.required("RoleName").unwrap_err();
        assert!(e.message.contains("'roleName'"), "{}", e.message);
        assert!(p.name("UserName", 64).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn encode(s: &str) -> String {
        crate::iam::url_encode(s)
    }

    proptest! {
        /// Any bytes: a clear error or parameters, never a panic.
        #[test]
        fn any_body_decodes_or_fails_cleanly(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            match decode_form(&body) {
                Ok(p) => prop_assert!(p.pairs.len() <= body.len() / 2 + 1),
                Err(e) => prop_assert_eq!(e.code, "MalformedQueryString"),
            }
        }

        /// What a client encodes comes back as it was, in order.
        #[test]
        fn encoded_pairs_round_trip(pairs in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,24}"), 0..8)) {
            let body = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let p = decode_form(body.as_bytes()).unwrap();
            let expected: Vec<(String, String)> = pairs
                .into_iter()
                .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
                .collect();
            let got: Vec<(String, String)> = p.pairs.into_iter().filter(|(k, v)| !(k.is_empty() && v.is_empty())).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
