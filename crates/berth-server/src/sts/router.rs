//! Every STS operation Berth knows, with what it needs before it runs: nothing (AWS
//! documents these as needing no permission), an `sts:` action decided by IAM, or nothing
//! because Berth does not offer it.

/// What an STS operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// No permission: AWS answers any authenticated caller (GetCallerIdentity,
    /// GetSessionToken for IAM users and root, GetAccessKeyInfo).
    Nothing,
    /// This action, decided by IAM before the operation changes anything
    /// (`sts:AssumeRole` on the role, with its trust policy).
    Action(&'static str),
    /// Not offered by Berth (no SAML or OIDC providers, no organizations).
    Unsupported,
}

macro_rules! endpoints {
    ($($name:ident => $needs:expr,)*) => {
        /// The STS operations.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Endpoint { $($name),* }

        impl Endpoint {
            pub const ALL: &'static [Endpoint] = &[$(Endpoint::$name),*];

            pub fn from_action(action: &str) -> Option<Endpoint> {
                match action {
                    $(stringify!($name) => Some(Endpoint::$name),)*
                    _ => None,
                }
            }

            /// The operation name (`AssumeRole`).
            pub fn name(self) -> &'static str {
                match self { $(Endpoint::$name => stringify!($name)),* }
            }

            pub fn needs(self) -> Needs {
                use Needs::*;
                match self { $(Endpoint::$name => $needs),* }
            }
        }
    };
}

endpoints! {
    GetCallerIdentity => Nothing,
    GetAccessKeyInfo => Nothing,
    GetSessionToken => Nothing,
    AssumeRole => Action("sts:AssumeRole"),
    GetFederationToken => Action("sts:GetFederationToken"),
    DecodeAuthorizationMessage => Action("sts:DecodeAuthorizationMessage"),
    AssumeRoleWithSAML => Unsupported,
    AssumeRoleWithWebIdentity => Unsupported,
    AssumeRoot => Unsupported,
}
