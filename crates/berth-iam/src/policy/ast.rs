//! The policy document as data: what a valid document says, nothing compiled yet.
//! Element values keep their list form (`"Action": "x"` is a one-element list) so that
//! parse → print → parse gives the same document.

use std::fmt;

/// What a policy is attached to; each kind has its own element rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user, group or role (inline or managed).
    Identity,
    /// An ECR repository policy (resource-based; no `Resource` needed, repeated Sids allowed).
    Repository,
    /// An ECR registry policy (resource-based).
    Registry,
    /// A role's trust policy (who may assume it).
    Trust,
    /// A session policy passed to AssumeRole / GetFederationToken.
    Session,
    /// A permissions boundary.
    Boundary,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Identity,
        PolicyKind::Repository,
        PolicyKind::Registry,
        PolicyKind::Trust,
        PolicyKind::Session,
        PolicyKind::Boundary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity",
            PolicyKind::Repository => "repository",
            PolicyKind::Registry => "registry",
            PolicyKind::Trust => "trust",
            PolicyKind::Session => "session",
            PolicyKind::Boundary => "boundary",
        }
    }

    pub fn from_name(s: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// "an identity policy", "a repository policy", ... for messages.
    pub fn policy_noun(self) -> &'static str {
        match self {
            PolicyKind::Identity => "an identity policy",
            PolicyKind::Repository => "a repository policy",
            PolicyKind::Registry => "a registry policy",
            PolicyKind::Trust => "a role trust policy",
            PolicyKind::Session => "a session policy",
            PolicyKind::Boundary => "a permissions boundary",
        }
    }

    /// Resource-based kinds name their principals.
    pub fn is_resource_based(self) -> bool {
        matches!(
            self,
            PolicyKind::Repository | PolicyKind::Registry | PolicyKind::Trust
        )
    }

    /// IAM-managed documents (identity, session, boundary) follow IAM's stricter Sid rules.
    pub fn is_iam_managed(self) -> bool {
        matches!(
            self,
            PolicyKind::Identity | PolicyKind::Session | PolicyKind::Boundary
        )
    }

    /// The most characters (whitespace excluded) AWS stores for this kind.
    pub fn max_chars(self) -> usize {
        match self {
            PolicyKind::Identity | PolicyKind::Boundary => 6_144,
            PolicyKind::Repository | PolicyKind::Registry => 10_240,
            PolicyKind::Trust | PolicyKind::Session => 2_048,
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2008_10_17,
    V2012_10_17,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2008_10_17 => "2008-10-17",
            Version::V2012_10_17 => "2012-10-17",
        }
    }
}

/// A byte range in the source document. Compares equal to every other span, so that
/// documents compare by meaning, not by layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `None` when absent (which means 2008-10-17: no policy variables).
    pub version: Option<Version>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl Policy {
    /// Policy variables are substituted only under 2012-10-17.
    pub fn variables_enabled(&self) -> bool {
        self.version == Some(Version::V2012_10_17)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Principal` (or `NotPrincipal` when `negated`).
    pub principal: Option<Principals>,
    /// `Action` (or `NotAction`).
    pub action: Matchers,
    /// `Resource` (or `NotResource`); `None` in repository policies means "this repository".
    pub resource: Option<Matchers>,
    pub conditions: Vec<Condition>,
    /// Where the statement object stands in the source.
    pub span: Span,
}

/// A list of patterns, positive (`Action`) or negated (`NotAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matchers {
    pub negated: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    pub negated: bool,
    pub value: PrincipalValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalValue {
    /// `"Principal": "*"`
    Star,
    /// `{"AWS": [...], "Service": [...], ...}` in document order.
    Map(Vec<(PrincipalType, Vec<String>)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    Aws,
    Service,
    Federated,
    CanonicalUser,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Aws => "AWS",
            PrincipalType::Service => "Service",
            PrincipalType::Federated => "Federated",
            PrincipalType::CanonicalUser => "CanonicalUser",
        }
    }

    pub fn from_name(s: &str) -> Option<PrincipalType> {
        match s {
            "AWS" => Some(PrincipalType::Aws),
            "Service" => Some(PrincipalType::Service),
            "Federated" => Some(PrincipalType::Federated),
            "CanonicalUser" => Some(PrincipalType::CanonicalUser),
            _ => None,
        }
    }
}

/// One operator block: `"StringEquals": {"key": [values], ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub operator: Operator,
    /// Keys as written (matching lower-cases them) with their values as strings.
    pub entries: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator {
    pub qualifier: Option<Qualifier>,
    pub base: BaseOperator,
    pub if_exists: bool,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.qualifier {
            Some(Qualifier::ForAllValues) => f.write_str("ForAllValues:")?,
            Some(Qualifier::ForAnyValue) => f.write_str("ForAnyValue:")?,
            None => {}
        }
        f.write_str(self.base.name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

impl Operator {
    /// Read an operator name such as `ForAnyValue:StringLikeIfExists` (case-sensitive).
    pub fn parse(name: &str) -> Option<Operator> {
        let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Some(Qualifier::ForAllValues), r)
        } else if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Some(Qualifier::ForAnyValue), r)
        } else {
            (None, name)
        };
        if let Some(base) = BaseOperator::from_name(rest) {
            return Some(Operator {
                qualifier,
                base,
                if_exists: false,
            });
        }
        let base = BaseOperator::from_name(rest.strip_suffix("IfExists")?)?;
        Some(Operator {
            qualifier,
            base,
            if_exists: true,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    ForAllValues,
    ForAnyValue,
}

macro_rules! base_operators {
    ($($name:ident),* $(,)?) => {
        /// The condition operators of the IAM policy language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BaseOperator { $($name),* }

        impl BaseOperator {
            pub const ALL: &'static [BaseOperator] = &[$(BaseOperator::$name),*];

            pub fn name(self) -> &'static str {
                match self { $(BaseOperator::$name => stringify!($name)),* }
            }

            pub fn from_name(s: &str) -> Option<BaseOperator> {
                match s { $(stringify!($name) => Some(BaseOperator::$name),)* _ => None }
            }
        }
    };
}

base_operators!(
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
);

/// The family of an operator decides how values are read and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    String,
    Numeric,
    Date,
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

impl BaseOperator {
    pub fn family(self) -> Family {
        use BaseOperator::*;
        match self {
            StringEquals
            | StringNotEquals
            | StringEqualsIgnoreCase
            | StringNotEqualsIgnoreCase
            | StringLike
            | StringNotLike => Family::String,
            NumericEquals
            | NumericNotEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals => Family::Numeric,
            DateEquals
            | DateNotEquals
            | DateLessThan
            | DateLessThanEquals
            | DateGreaterThan
            | DateGreaterThanEquals => Family::Date,
            Bool => Family::Bool,
            BinaryEquals => Family::Binary,
            IpAddress | NotIpAddress => Family::Ip,
            ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => Family::Arn,
            Null => Family::Null,
        }
    }

    /// Negated operators are true only when no policy value matches (NOR).
    pub fn is_negated(self) -> bool {
        use BaseOperator::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }

    /// Operators whose values may hold policy variables.
    pub fn takes_variables(self) -> bool {
        matches!(self.family(), Family::String | Family::Arn | Family::Bool)
    }
}
