//! The OCI distribution routes under `/v2/`: a request path and method become an
//! [`Endpoint`], which names the ECR action it needs. Repository names may hold `/`, so
//! the routes are matched from the right.

use axum::http::Method;

use berth_oci::names::valid_repository_name;

macro_rules! endpoints {
    ($($(#[$doc:meta])* $name:ident $({ $($field:ident),* })? = $method:literal $path:literal => $action:expr;)*) => {
        /// A request under `/v2/`, with the names it carries.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Endpoint {
            $($(#[$doc])* $name $({ $($field: String),* })?,)*
        }

        impl Endpoint {
            /// Every route, declared with its endpoint: method, path template (`{name}` a
            /// repository, `{reference}` a tag or digest, `{digest}`, `{id}` an upload)
            /// and endpoint name. Tests walk this list, so a route cannot go undecided.
            pub const ALL: &'static [Route] = &[$(Route {
                method: $method,
                path: $path,
                endpoint: stringify!($name),
            }),*];

            /// The endpoint's name (`GetManifest`).
            pub fn name(&self) -> &'static str {
                match self { $(Endpoint::$name { .. } => stringify!($name)),* }
            }

            /// The ECR action the endpoint is decided as (`None`: authentication only).
            pub fn action(&self) -> Option<&'static str> {
                match self { $(Endpoint::$name { .. } => $action),* }
            }
        }
    };
}

/// One route of [`Endpoint::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: &'static str,
}

endpoints! {
    /// `GET /v2/`: authentication only.
    Base = "GET" "/v2/" => None;
    Catalog = "GET" "/v2/_catalog" => Some("ecr:DescribeRepositories");
    TagsList { name } = "GET" "/v2/{name}/tags/list" => Some("ecr:ListImages");
    GetManifest { name, reference } = "GET" "/v2/{name}/manifests/{reference}" => Some("ecr:BatchGetImage");
    HeadManifest { name, reference } = "HEAD" "/v2/{name}/manifests/{reference}" => Some("ecr:BatchGetImage");
    PutManifest { name, reference } = "PUT" "/v2/{name}/manifests/{reference}" => Some("ecr:PutImage");
    DeleteManifest { name, reference } = "DELETE" "/v2/{name}/manifests/{reference}" => Some("ecr:BatchDeleteImage");
    GetBlob { name, digest } = "GET" "/v2/{name}/blobs/{digest}" => Some("ecr:GetDownloadUrlForLayer");
    HeadBlob { name, digest } = "HEAD" "/v2/{name}/blobs/{digest}" => Some("ecr:BatchCheckLayerAvailability");
    DeleteBlob { name, digest } = "DELETE" "/v2/{name}/blobs/{digest}" => Some("ecr:BatchDeleteImage");
    StartUpload { name } = "POST" "/v2/{name}/blobs/uploads/" => Some("ecr:InitiateLayerUpload");
    PatchUpload { name, id } = "PATCH" "/v2/{name}/blobs/uploads/{id}" => Some("ecr:UploadLayerPart");
    PutUpload { name, id } = "PUT" "/v2/{name}/blobs/uploads/{id}" => Some("ecr:CompleteLayerUpload");
    GetUpload { name, id } = "GET" "/v2/{name}/blobs/uploads/{id}" => Some("ecr:UploadLayerPart");
    DeleteUpload { name, id } = "DELETE" "/v2/{name}/blobs/uploads/{id}" => Some("ecr:UploadLayerPart");
    Referrers { name, digest } = "GET" "/v2/{name}/referrers/{digest}" => Some("ecr:BatchGetImage");
}

#[cfg(test)]
impl Route {
    /// A request this route answers (tests): its method, and its path with every field
    /// filled (repository `app`, tag `latest`, a digest, upload `u1`).
    pub fn example(&self) -> (axum::http::Method, String) {
        let digest = format!("sha256:{}", "a".repeat(64));
        let path = self
            .path
            .replace("{name}", "app")
            .replace("{reference}", "latest")
            .replace("{digest}", &digest)
            .replace("{id}", "u1");
        let method = axum::http::Method::from_bytes(self.method.as_bytes())
            .expect("a route's method is a method");
        (method, path)
    }
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such route (404).
    NotFound,
    /// The route exists but not with this method (405).
    Method,
    /// The repository name is not valid (400 `NAME_INVALID`).
    Name(String),
}

impl Endpoint {
    /// The repository it acts on.
    pub fn repository(&self) -> Option<&str> {
        use Endpoint::*;
        match self {
            Base | Catalog => None,
            TagsList { name }
            | GetManifest { name, .. }
            | HeadManifest { name, .. }
            | PutManifest { name, .. }
            | DeleteManifest { name, .. }
            | GetBlob { name, .. }
            | HeadBlob { name, .. }
            | DeleteBlob { name, .. }
            | StartUpload { name }
            | PatchUpload { name, .. }
            | PutUpload { name, .. }
            | GetUpload { name, .. }
            | DeleteUpload { name, .. }
            | Referrers { name, .. } => Some(name),
        }
    }

    /// Route `method path` (the path as received, starting with `/v2`).
    pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
        let rest = match path {
            "/v2" | "/v2/" => {
                return match *method {
                    Method::GET | Method::HEAD => Ok(Endpoint::Base),
                    _ => Err(RouteError::Method),
                }
            }
            p => p.strip_prefix("/v2/").ok_or(RouteError::NotFound)?,
        };
        if rest == "_catalog" {
            return match *method {
                Method::GET => Ok(Endpoint::Catalog),
                _ => Err(RouteError::Method),
            };
        }
        let name_ok = |n: &str| -> Result<String, RouteError> {
            if valid_repository_name(n) {
                Ok(n.to_string())
            } else {
                Err(RouteError::Name(n.to_string()))
            }
        };
        // Read the route from the last segments; everything before them is the name.
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name_of = |k: usize| name_ok(&segs[..k].join("/"));
        let is = |i: usize, s: &str| n > i && segs[n - 1 - i] == s;
        if n >= 3 && is(1, "tags") && is(0, "list") {
            let name = name_of(n - 2)?;
            return match *method {
                Method::GET => Ok(Endpoint::TagsList { name }),
                _ => Err(RouteError::Method),
            };
        }
        let upload = if n >= 4 && is(2, "blobs") && is(1, "uploads") {
            Some((n - 3, segs[n - 1]))
        } else if n >= 3 && is(1, "blobs") && is(0, "uploads") && *method == Method::POST {
            Some((n - 2, ""))
        } else {
            None
        };
        if let Some((k, id)) = upload {
            let name = name_of(k)?;
            let id = id.to_string();
            return Ok(match (method.clone(), id.is_empty()) {
                (Method::POST, true) => Endpoint::StartUpload { name },
                (_, true) => return Err(RouteError::Method),
                (Method::PATCH, false) => Endpoint::PatchUpload { name, id },
                (Method::PUT, false) => Endpoint::PutUpload { name, id },
                (Method::GET, false) => Endpoint::GetUpload { name, id },
                (Method::DELETE, false) => Endpoint::DeleteUpload { name, id },
                _ => return Err(RouteError::Method),
            });
        }
        if n < 3 || segs[n - 1].is_empty() {
            return Err(RouteError::NotFound);
        }
        let last = segs[n - 1].to_string();
        match segs[n - 2] {
            "manifests" => {
                let (name, reference) = (name_of(n - 2)?, last);
                Ok(match *method {
                    Method::GET => Endpoint::GetManifest { name, reference },
                    Method::HEAD => Endpoint::HeadManifest { name, reference },
                    Method::PUT => Endpoint::PutManifest { name, reference },
                    Method::DELETE => Endpoint::DeleteManifest { name, reference },
                    _ => return Err(RouteError::Method),
                })
            }
            "blobs" => {
                let (name, digest) = (name_of(n - 2)?, last);
                Ok(match *method {
                    Method::GET => Endpoint::GetBlob { name, digest },
                    Method::HEAD => Endpoint::HeadBlob { name, digest },
                    Method::DELETE => Endpoint::DeleteBlob { name, digest },
                    _ => return Err(RouteError::Method),
                })
            }
            "referrers" => {
                let name = name_of(n - 2)?;
                match *method {
                    Method::GET => Ok(Endpoint::Referrers { name, digest: last }),
                    _ => Err(RouteError::Method),
                }
            }
            _ => Err(RouteError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = |m: Method, p: &str| Endpoint::route(&m, p);
        assert_eq!(r(Method::GET, "/v2/"), Ok(Endpoint::Base));
        assert_eq!(r(Method::GET, "/v2/_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(
            r(Method::GET, "/v2/team/app/manifests/latest"),
            Ok(Endpoint::GetManifest {
                name: "team/app".into(),
                reference: "latest".into()
            })
        );
        // A repository may be called "blobs" or "manifests": the last match wins.
        assert_eq!(
            r(Method::HEAD, &format!("/v2/blobs/manifests/blobs/{d}")),
            Ok(Endpoint::HeadBlob {
                name: "blobs/manifests".into(),
                digest: d.clone()
            })
        );
        assert_eq!(
            r(Method::POST, "/v2/app/blobs/uploads/"),
            Ok(Endpoint::StartUpload { name: "app".into() })
        );
        assert_eq!(
            r(Method::POST, "/v2/app/blobs/uploads"),
            Ok(Endpoint::StartUpload { name: "app".into() })
        );
        assert_eq!(
            r(Method::PATCH, "/v2/app/blobs/uploads/abc"),
            Ok(Endpoint::PatchUpload {
                name: "app".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            r(Method::GET, "/v2/app/tags/list"),
            Ok(Endpoint::TagsList { name: "app".into() })
        );
        assert_eq!(
            r(Method::GET, &format!("/v2/app/referrers/{d}")),
            Ok(Endpoint::Referrers {
                name: "app".into(),
                digest: d
            })
        );
        assert_eq!(
            r(Method::GET, "/v2/App/tags/list"),
            Err(RouteError::Name("App".into()))
        );
        assert_eq!(
            r(Method::GET, "/v2/a/../b/tags/list"),
            Err(RouteError::Name("a/../b".into()))
        );
        assert_eq!(
            r(Method::POST, "/v2/app/manifests/x"),
            Err(RouteError::Method)
        );
        assert_eq!(r(Method::GET, "/v2/app/other"), Err(RouteError::NotFound));
        assert_eq!(r(Method::GET, "/v3/"), Err(RouteError::NotFound));
    }
}
