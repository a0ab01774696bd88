//! Reading a policy document: JSON text → [`Policy`], with every rule of the grammar and
//! of the policy kind checked. Each problem names its JSON path and says what would be
//! accepted; all problems of a document are reported, not just the first.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use super::ast::*;
use super::elements::{check_action, check_condition_value, check_principal, check_resource};
use crate::json::{self, Json, Value};

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path such as `Statement[1].Condition.IpAddress."aws:SourceIp"`; empty for the whole document.
    pub path: String,
    pub message: String,
    /// Byte offset in the source, for line/column reporting.
    pub offset: usize,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a document was refused: one or more problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

impl From<json::SyntaxError> for PolicyError {
    fn from(e: json::SyntaxError) -> Self {
        PolicyError {
            problems: vec![Problem {
                path: String::new(),
                message: e.to_string(),
                offset: e.offset,
            }],
        }
    }
}

/// Parse and validate policy text of the given kind.
pub fn parse_policy(src: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
    let json = json::parse(src)?;
    from_json(&json, kind)
}

/// Validate an already-parsed JSON document as a policy of the given kind.
pub fn from_json(doc: &Json, kind: PolicyKind) -> Result<Policy, PolicyError> {
    let mut r = Reader {
        kind,
        vars: false,
        problems: Vec::new(),
    };
    let policy = r.policy(doc);
    match policy {
        Some(p) if r.problems.is_empty() => Ok(p),
        _ => Err(PolicyError {
            problems: r.problems,
        }),
    }
}

/// The size AWS counts against policy quotas: characters, whitespace excluded.
pub fn stored_chars(src: &str) -> usize {
    // Characters, not bytes: UTF-8 continuation bytes do not start one.
    src.bytes()
        .filter(|&b| !b.is_ascii_whitespace() && !(0x80..0xc0).contains(&b))
        .count()
}

/// Check the stored-size limit of a kind (whitespace is not counted, as AWS does).
pub fn check_size(src: &str, kind: PolicyKind) -> Result<(), Problem> {
    let n = stored_chars(src);
    if n > kind.max_chars() {
        return Err(Problem {
            path: String::new(),
            message: format!(
                "the document has {n} characters (whitespace excluded); {} may have at most {}",
                kind.policy_noun(),
                kind.max_chars()
            ),
            offset: 0,
        });
    }
    Ok(())
}

/// Append a member name to a path, quoting it unless it is a plain identifier.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    let mut out = String::with_capacity(path.len() + key.len() + 3);
    out.push_str(path);
    if !path.is_empty() {
        out.push('.');
    }
    if plain {
        out.push_str(key);
    } else {
        json::write_string(&mut out, key);
    }
    out
}

/// A JSON path kept on the stack while reading and written out only for a problem.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

static ROOT: Path<'static> = Path::Root;

impl Path<'_> {
    fn key<'q>(&'q self, key: &'q str) -> Path<'q> {
        Path::Key(self, key)
    }

    fn at(&self, i: usize) -> Path<'_> {
        Path::Index(self, i)
    }

    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(p, k) => join(&p.render(), k),
            Path::Index(p, i) => format!("{}[{i}]", p.render()),
        }
    }
}

pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::new();
    json::write_string(&mut out, s);
    out
}

const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

struct Reader {
    kind: PolicyKind,
    vars: bool,
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, path: &Path, at: &Json, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.render(),
            message: message.into(),
            offset: at.start,
        });
    }

    /// The members of an object, after rejecting repeated keys.
    fn object<'j, 'a>(
        &mut self,
        j: &'j Json<'a>,
        path: &Path,
        what: &str,
    ) -> Option<&'j [(Cow<'a, str>, Json<'a>)]> {
        let Value::Object(members) = &j.value else {
            self.problem(
                path,
                j,
                format!("{what} must be a JSON object, not {}", j.value.type_name()),
            );
            return None;
        };
        // Policy objects are small: a quadratic scan beats building a set (up to a bound).
        let mut seen = HashSet::new();
        for (i, (k, v)) in members.iter().enumerate() {
            let repeated = if members.len() <= 32 {
                members[..i].iter().any(|(earlier, _)| earlier == k)
            } else {
                !seen.insert(k.as_ref())
            };
            if repeated {
                self.problem(
                    &path.key(k),
                    v,
                    format!(
                        "{} appears more than once; each key may appear only once",
                        quoted(k)
                    ),
                );
            }
        }
        Some(members)
    }

    /// A string checked for the characters policies may hold.
    fn text<'j>(&mut self, j: &'j Json<'_>, path: &Path, what: &str) -> Option<&'j str> {
        match &j.value {
            Value::String(s) => {
                self.check_chars(s, j, path);
                Some(s)
            }
            other => {
                self.problem(
                    path,
                    j,
                    format!("{what} must be a string, not {}", other.type_name()),
                );
                None
            }
        }
    }

    /// Policy variables (2012-10-17) stand only in Resource and in condition values.
    fn no_variable(&mut self, s: &str, at: &Json, path: &Path, element: &str) {
        if self.vars && s.contains("${") {
            self.problem(
                path,
                at,
                format!(
                    "{} uses a policy variable, which {element} cannot hold; variables may appear in Resource (after the fifth ':') and in condition values",
                    quoted(s)
                ),
            );
        }
    }

    fn check_chars(&mut self, s: &str, at: &Json, path: &Path) {
        if s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
        {
            return;
        }
        if let Some(c) = s
            .chars()
            .find(|&c| !(matches!(c, '\t' | '\n' | '\r') || ('\u{20}'..='\u{ff}').contains(&c)))
        {
            self.problem(
                path,
                at,
                format!(
                    "character U+{:04X} is not allowed; policies may hold TAB, LF, CR and U+0020 to U+00FF",
                    c as u32
                ),
            );
        }
    }

    /// A string or an array of strings, each with the JSON value it came from (for paths:
    /// the entry of an array is `path[i]`, a lone string is `path`).
    fn string_list<'j>(
        &mut self,
        j: &'j Json<'_>,
        path: &Path,
        what: &str,
    ) -> Option<Vec<(&'j str, Option<usize>)>> {
        match &j.value {
            Value::String(_) => self.text(j, path, what).map(|s| vec![(s, None)]),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.text(item, &path.at(i), what) {
                        out.push((s, Some(i)));
                    }
                }
                (out.len() == items.len()).then_some(out)
            }
            other => {
                self.problem(
                    path,
                    j,
                    format!(
                        "{what} must be a string or an array of strings, not {}",
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    fn policy(&mut self, doc: &Json) -> Option<Policy> {
        let members = self.object(doc, &ROOT, "a policy document")?;
        let mut version = None;
        let mut id = None;
        let mut statement = None;
        for (k, v) in members {
            match k.as_ref() {
                "Version" => {
                    if let Some(s) = self.text(v, &ROOT.key("Version"), "Version") {
                        match s {
                            "2012-10-17" => version = Some(Version::V2012_10_17),
                            "2008-10-17" => version = Some(Version::V2008_10_17),
                            _ => self.problem(
                                &ROOT.key("Version"),
                                v,
                                format!(
                                    "{} is not a policy language version; use \"2012-10-17\" (or \"2008-10-17\")",
                                    quoted(s)
                                ),
                            ),
                        }
                    }
                }
                "Id" => id = self.text(v, &ROOT.key("Id"), "Id").map(str::to_string),
                "Statement" => statement = Some(v),
                other => self.problem(
                    &ROOT.key(other),
                    v,
                    format!(
                        "{} is not a policy element; a policy holds Version, Id and Statement",
                        quoted(other)
                    ),
                ),
            }
        }
        self.vars = version == Some(Version::V2012_10_17);
        let Some(st) = statement else {
            self.problem(
                &ROOT.key("Statement"),
                doc,
                "is missing; a policy needs a Statement (an object or an array of objects)",
            );
            return None;
        };
        let statements: Vec<Statement> = match &st.value {
            Value::Array(items) => {
                if items.is_empty() {
                    self.problem(
                        &ROOT.key("Statement"),
                        st,
                        "must hold at least one statement",
                    );
                }
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.statement(s, &ROOT.key("Statement").at(i)))
                    .collect()
            }
            Value::Object(_) => self
                .statement(st, &ROOT.key("Statement"))
                .into_iter()
                .collect(),
            other => {
                self.problem(
                    &ROOT.key("Statement"),
                    st,
                    format!(
                        "must be an object or an array of objects, not {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        if self.kind.is_iam_managed() {
            let mut seen = HashSet::new();
            for (i, s) in statements.iter().enumerate() {
                if let Some(sid) = &s.sid {
                    if !seen.insert(sid.as_str()) {
                        let path = format!("Statement[{i}].Sid");
                        self.problems.push(Problem {
                            path,
                            message: format!(
                                "{} is used by an earlier statement; Sids must be unique in {}",
                                quoted(sid),
                                self.kind.policy_noun()
                            ),
                            offset: s.span.start,
                        });
                    }
                }
            }
        }
        Some(Policy {
            version,
            id,
            statements,
        })
    }

    fn statement(&mut self, j: &Json, path: &Path) -> Option<Statement> {
        let members = self.object(j, path, "a statement")?;
        let before = self.problems.len();
        // One pass puts each element in its slot (STATEMENT_KEYS order); the first of
        // a repeated key counts (repeats are reported by `object`).
        let mut slots: [Option<&Json>; 9] = [None; 9];
        for (k, v) in members {
            if let Some(i) = STATEMENT_KEYS.iter().position(|name| *name == k.as_ref()) {
                slots[i] = slots[i].or(Some(v));
            } else {
                let hint = STATEMENT_KEYS
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(k))
                    .map(|s| format!(" (element names are case-sensitive: did you mean {s}?)"))
                    .unwrap_or_default();
                self.problem(
                    &path.key(k),
                    v,
                    format!(
                        "{} is not a statement element; a statement holds Sid, Effect, Principal or NotPrincipal, Action or NotAction, Resource or NotResource, and Condition{hint}",
                        quoted(k)
                    ),
                );
            }
        }
        let get = |name: &str| {
            STATEMENT_KEYS
                .iter()
                .position(|n| *n == name)
                .and_then(|i| slots[i])
        };
        let sid = match get("Sid") {
            Some(v) => {
                let p = &path.key("Sid");
                let s = self.text(v, p, "Sid");
                if let Some(s) = s {
                    if self.kind.is_iam_managed() && !s.chars().all(|c| c.is_ascii_alphanumeric()) {
                        self.problem(
                            p,
                            v,
                            format!(
                                "{} may hold only letters A-Z, a-z and digits 0-9 in {}",
                                quoted(s),
                                self.kind.policy_noun()
                            ),
                        );
                    }
                }
                s.map(str::to_string)
            }
            None => None,
        };
        let effect = match get("Effect") {
            None => {
                self.problem(
                    &path.key("Effect"),
                    j,
                    "is missing; every statement needs \"Effect\": \"Allow\" or \"Deny\"",
                );
                None
            }
            Some(v) => {
                let p = &path.key("Effect");
                match self.text(v, p, "Effect") {
                    Some("Allow") => Some(Effect::Allow),
                    Some("Deny") => Some(Effect::Deny),
                    Some(other) => {
                        self.problem(
                            p,
                            v,
                            format!(
                                "{} is not an effect; use \"Allow\" or \"Deny\" (case-sensitive)",
                                quoted(other)
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let principal = self.principals(j, path, get("Principal"), get("NotPrincipal"));
        let action = self.pair(
            j,
            path,
            ("Action", "NotAction"),
            get("Action"),
            get("NotAction"),
        );
        let resource = self.pair(
            j,
            path,
            ("Resource", "NotResource"),
            get("Resource"),
            get("NotResource"),
        );
        let conditions = match get("Condition") {
            Some(c) => self.conditions(c, &path.key("Condition")),
            None => Vec::new(),
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Statement {
            sid,
            effect: effect?,
            principal,
            action: action?,
            resource,
            conditions,
            span: Span {
                start: j.start,
                end: j.end,
            },
        })
    }

    /// `Action`/`NotAction` or `Resource`/`NotResource`: exactly one of the two (Resource
    /// may be absent where the kind allows it).
    fn pair(
        &mut self,
        stmt: &Json,
        path: &Path,
        (pos_name, neg_name): (&str, &str),
        pos: Option<&Json>,
        neg: Option<&Json>,
    ) -> Option<Matchers> {
        let is_action = pos_name == "Action";
        let (negated, j, name) = match (pos, neg) {
            (Some(_), Some(n)) => {
                self.problem(
                    &path.key(neg_name),
                    n,
                    format!("a statement may have {pos_name} or {neg_name}, not both"),
                );
                return None;
            }
            (Some(p), None) => (false, p, pos_name),
            (None, Some(n)) => (true, n, neg_name),
            (None, None) => {
                let required = is_action
                    || matches!(
                        self.kind,
                        PolicyKind::Identity | PolicyKind::Session | PolicyKind::Boundary
                    );
                if required {
                    let why = if is_action {
                        "every statement needs one".to_string()
                    } else {
                        format!("statements of {} need one", self.kind.policy_noun())
                    };
                    self.problem(
                        &path.key(pos_name),
                        stmt,
                        format!("is missing: {why} of {pos_name} or {neg_name}"),
                    );
                }
                return None;
            }
        };
        let p = &path.key(name);
        if !is_action && self.kind == PolicyKind::Trust {
            self.problem(
                p,
                j,
                format!("{name} is not allowed in a role trust policy (the role itself is the resource)"),
            );
            return None;
        }
        let values = self.string_list(j, p, name)?;
        let before = self.problems.len();
        for &(v, i) in &values {
            let vp = i.map_or(*p, |i| p.at(i));
            if is_action {
                self.no_variable(v, j, &vp, "Action");
                if let Err(msg) = check_action(v) {
                    self.problem(&vp, j, format!("{} {msg}", quoted(v)));
                }
            } else if let Err(msg) = check_resource(v, self.vars) {
                self.problem(&vp, j, format!("{} {msg}", quoted(v)));
            }
        }
        (self.problems.len() == before).then(|| Matchers {
            negated,
            values: values.into_iter().map(|(v, _)| v.to_string()).collect(),
        })
    }

    fn principals(
        &mut self,
        stmt: &Json,
        path: &Path,
        pos: Option<&Json>,
        neg: Option<&Json>,
    ) -> Option<Principals> {
        let (negated, j, name) = match (pos, neg) {
            (Some(_), Some(n)) => {
                self.problem(
                    &path.key("NotPrincipal"),
                    n,
                    "a statement may have Principal or NotPrincipal, not both",
                );
                return None;
            }
            (Some(p), None) => (false, p, "Principal"),
            (None, Some(n)) => (true, n, "NotPrincipal"),
            (None, None) => {
                if self.kind.is_resource_based() {
                    self.problem(
                        &path.key("Principal"),
                        stmt,
                        format!(
                            "is missing: statements of {} must say whom they apply to (Principal or NotPrincipal)",
                            self.kind.policy_noun()
                        ),
                    );
                }
                return None;
            }
        };
        let p = &path.key(name);
        if !self.kind.is_resource_based() {
            self.problem(
                p,
                j,
                format!(
                    "{name} is not allowed in {}: it applies to the identity it is attached to",
                    self.kind.policy_noun()
                ),
            );
            return None;
        }
        if negated && self.kind == PolicyKind::Trust {
            self.problem(p, j, "NotPrincipal is not allowed in a role trust policy");
            return None;
        }
        let value = match &j.value {
            Value::String(s) if s == "*" => PrincipalValue::Star,
            Value::Object(_) => {
                let members = self.object(j, p, name)?;
                if members.is_empty() {
                    self.problem(
                        p,
                        j,
                        "must name at least one principal (AWS, Service, Federated or CanonicalUser)",
                    );
                }
                let mut out = Vec::new();
                for (k, v) in members {
                    let kp = p.key(k);
                    let Some(ty) = PrincipalType::from_name(k) else {
                        self.problem(
                            &kp,
                            v,
                            format!(
                                "{} is not a principal type; use AWS, Service, Federated or CanonicalUser",
                                quoted(k)
                            ),
                        );
                        continue;
                    };
                    let Some(values) = self.string_list(v, &kp, k) else {
                        continue;
                    };
                    if values.is_empty() {
                        self.problem(&kp, v, "must name at least one principal");
                    }
                    for &(s, i) in &values {
                        let vp = i.map_or(kp, |i| kp.at(i));
                        self.no_variable(s, v, &vp, name);
                        if let Err(msg) = check_principal(ty, s) {
                            self.problem(&vp, v, format!("{} {msg}", quoted(s)));
                        }
                    }
                    out.push((ty, values.into_iter().map(|(s, _)| s.to_string()).collect()));
                }
                PrincipalValue::Map(out)
            }
            other => {
                let what = match other {
                    Value::String(s) => quoted(s),
                    v => v.type_name().to_string(),
                };
                self.problem(
                    p,
                    j,
                    format!(
                        "{what} is not a principal; use \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::123456789012:root\"}}"
                    ),
                );
                return None;
            }
        };
        Some(Principals { negated, value })
    }

    fn conditions(&mut self, j: &Json, path: &Path) -> Vec<Condition> {
        let Some(members) = self.object(j, path, "Condition") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (op_name, block) in members {
            let op_path = &path.key(op_name);
            let Some(operator) = Operator::parse(op_name) else {
                let hint = BaseOperator::ALL
                    .iter()
                    .find(|b| {
                        op_name
                            .to_ascii_lowercase()
                            .contains(&b.name().to_ascii_lowercase())
                    })
                    .map(|b| format!(" (operator names are case-sensitive, e.g. {})", b.name()))
                    .unwrap_or_default();
                self.problem(
                    op_path,
                    block,
                    format!(
                        "{} is not a condition operator; use one of String*, Numeric*, Date*, Bool, BinaryEquals, IpAddress, NotIpAddress, Arn*, Null, optionally with ForAllValues:/ForAnyValue: and IfExists{hint}",
                        quoted(op_name)
                    ),
                );
                continue;
            };
            if operator.base == BaseOperator::Null && operator.if_exists {
                self.problem(
                    op_path,
                    block,
                    "Null cannot take IfExists: Null already tests whether the key exists",
                );
                continue;
            }
            let Some(keys) = self.object(block, op_path, "a condition operator's value") else {
                continue;
            };
            let mut entries = Vec::with_capacity(keys.len());
            for (key, vals) in keys {
                let kp = op_path.key(key);
                if key.is_empty() {
                    self.problem(&kp, vals, "a condition key may not be empty");
                    continue;
                }
                self.check_chars(key, vals, &kp);
                self.no_variable(key, vals, &kp, "a condition key");
                if let Some(values) = self.condition_values(operator, vals, &kp) {
                    entries.push((key.to_string(), values));
                }
            }
            out.push(Condition { operator, entries });
        }
        out
    }

    fn condition_values(&mut self, op: Operator, j: &Json, path: &Path) -> Option<Vec<String>> {
        let items: Vec<(Path, &Json)> = match &j.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (path.at(i), v))
                .collect(),
            _ => vec![(*path, j)],
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (p, v) in items {
            let s = match &v.value {
                Value::String(s) => {
                    self.check_chars(s, v, &p);
                    s.to_string()
                }
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    self.problem(
                        &p,
                        v,
                        format!(
                            "a condition value must be a string, number or boolean (or an array of them), not {}",
                            other.type_name()
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Err(msg) = check_condition_value(op.base, &s) {
                self.problem(&p, v, format!("{} {msg}", quoted(&s)));
                ok = false;
                continue;
            }
            out.push(s);
        }
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str, kind: PolicyKind) -> Vec<String> {
        parse_policy(src, kind)
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn reports_the_path_and_what_is_accepted() {
        let src = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},
            {"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"54.240.143.0/33"}}}]}"#;
        assert_eq!(
            err(src, PolicyKind::Identity),
            vec![
                r#"Statement[1].Condition.IpAddress."aws:SourceIp": "54.240.143.0/33" is not an IPv4 or IPv6 CIDR"#
            ]
        );
    }

    #[test]
    fn collects_every_problem() {
        let src = r#"{"Statement":[{"effect":"Allow","Action":"ecr:*:x","Principal":"*"}]}"#;
        let e = err(src, PolicyKind::Identity);
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e[0].contains("did you mean Effect"));
        assert!(e
            .iter()
            .any(|m| m.starts_with("Statement[0].Effect: is missing")));
        assert!(e.iter().any(|m| m.contains("exactly one ':'")));
        assert!(e.iter().any(
            |m| m.contains("Principal is not allowed in an identity policy")
                || m.contains("Principal is not allowed")
        ));
        assert!(e
            .iter()
            .any(|m| m.starts_with("Statement[0].Resource: is missing")));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let src = r#"{"Statement":{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}}"#;
        assert_eq!(
            err(src, PolicyKind::Identity),
            vec![
                r#"Statement.Effect: "Effect" appears more than once; each key may appear only once"#
            ]
        );
    }

    #[test]
    fn kinds_have_their_own_rules() {
        let repo = r#"{"Version":"2008-10-17","Statement":[{"Sid":"new statement","Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Sid":"new statement","Effect":"Deny","Principal":"*","Action":"ecr:Delete*"}]}"#;
        assert!(parse_policy(repo, PolicyKind::Repository).is_ok());
        assert!(err(repo, PolicyKind::Identity)
            .iter()
            .any(|m| m.contains("may hold only letters")));
        let trust = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Resource":"*"}}"#;
        assert!(err(trust, PolicyKind::Trust)[0].contains("not allowed in a role trust policy"));
        let no_principal = r#"{"Statement":{"Effect":"Allow","Action":"ecr:*"}}"#;
        assert!(err(no_principal, PolicyKind::Repository)[0].contains("must say whom"));
        let dup_sid = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        assert!(err(dup_sid, PolicyKind::Identity)[0].contains("unique"));
        assert!(parse_policy(dup_sid, PolicyKind::Registry).is_err()); // no Principal
    }

    #[test]
    fn principal_forms() {
        let ok = r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Principal":{"AWS":["123456789012","arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:user/a/b","arn:aws:sts::123456789012:assumed-role/r/s","AIDAJQABLZS4A3QDU576Q","*"],"Service":"codebuild.amazonaws.com","Federated":"cognito-identity.amazonaws.com","CanonicalUser":"79a59df900b949e55d96a1e698fbaced"}}}"#;
        parse_policy(ok, PolicyKind::Repository).unwrap();
        for bad in [
            r#""arn:aws:iam::*:root""#,
            r#""arn:aws:iam::123456789012:user/*""#,
            r#""alice""#,
            r#""arn:aws:s3:::bucket""#,
            r#""12345""#,
        ] {
            let src = format!(
                r#"{{"Statement":{{"Effect":"Allow","Action":"ecr:*","Principal":{{"AWS":{bad}}}}}}}"#
            );
            let e = err(&src, PolicyKind::Repository);
            assert!(
                e[0].starts_with("Statement.Principal.AWS: "),
                "{bad}: {e:?}"
            );
        }
        let e = err(
            r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Principal":"alice"}}"#,
            PolicyKind::Repository,
        );
        assert!(e[0].contains("is not a principal"));
    }

    #[test]
    fn condition_rules() {
        let with = |cond: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{cond}}}}}"#
            )
        };
        assert!(parse_policy(
            &with(r#"{"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":["a*",1,true]}}"#),
            PolicyKind::Identity
        )
        .is_ok());
        let cases = [
            (
                r#"{"StringEqual":{"a:b":"x"}}"#,
                "is not a condition operator",
            ),
            (r#"{"stringequals":{"a:b":"x"}}"#, "case-sensitive"),
            (r#"{"NullIfExists":{"a:b":"true"}}"#, "cannot take IfExists"),
            (r#"{"NumericLessThan":{"a:b":"ten"}}"#, "is not a number"),
            (
                r#"{"DateGreaterThan":{"aws:CurrentTime":"tomorrow"}}"#,
                "is not a date",
            ),
            (
                r#"{"StringEquals":{"a:b":{"x":1}}}"#,
                "must be a string, number or boolean",
            ),
            (
                r#"{"StringEquals":{"a:b":[null]}}"#,
                "must be a string, number or boolean",
            ),
            (r#"{"StringEquals":"x"}"#, "must be a JSON object"),
        ];
        for (cond, want) in cases {
            let e = err(&with(cond), PolicyKind::Identity);
            assert!(e.iter().any(|m| m.contains(want)), "{cond}: {e:?}");
        }
    }

    #[test]
    fn actions_and_resources() {
        // Unknown or odd names are valid (they just never match a real action).
        for a in [
            "*",
            "ecr:*",
            "ecr:Get*",
            "ECR:putimage",
            "e*:*",
            "ecr:?ut*",
            "ecr:",
            "ecr:Put Image",
        ] {
            assert!(check_action(a).is_ok(), "{a}");
        }
        for a in ["ecr", "ecr:a:b", ":PutImage", "ec r:Put"] {
            assert!(check_action(a).is_err(), "{a}");
        }
        for r in [
            "*",
            "arn:aws:ecr:*",
            "arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}",
        ] {
            assert!(check_resource(r, true).is_ok(), "{r}");
        }
        assert!(check_resource("repository/app", true).is_err());
        assert!(check_resource(
            "arn:aws:ecr:${aws:RequestedRegion}:123456789012:repository/x",
            true
        )
        .is_err());
        assert!(check_resource(
            "arn:aws:ecr:${aws:RequestedRegion}:123456789012:repository/x",
            false
        )
        .is_ok());
    }

    #[test]
    fn rejects_characters_outside_the_policy_alphabet() {
        let src = "{\"Statement\":{\"Sid\":\"\u{2603}\",\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}";
        assert!(err(src, PolicyKind::Identity)[0].contains("U+2603"));
    }

    #[test]
    fn size_limits() {
        let big = format!("{{\"Id\": \"{}\"}}", "x".repeat(3000));
        assert!(check_size(&big, PolicyKind::Trust).is_err());
        assert!(check_size(&big, PolicyKind::Repository).is_ok());
    }
}
