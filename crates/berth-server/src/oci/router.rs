//! The OCI distribution routes under `/v2/`: a request path and method become an
//! [`Endpoint`], which names the ECR action it needs. Repository names may hold `/`, so
//! the routes are matched from the right.

use axum::http::Method;

use berth_oci::names::valid_repository_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`: authentication only.
    Base,
    Catalog,
    TagsList {
        name: String,
    },
    GetManifest {
        name: String,
        reference: String,
    },
    HeadManifest {
        name: String,
        reference: String,
    },
    PutManifest {
        name: String,
        reference: String,
    },
    DeleteManifest {
        name: String,
        reference: String,
    },
    GetBlob {
        name: String,
        digest: String,
    },
    HeadBlob {
        name: String,
        digest: String,
    },
    DeleteBlob {
        name: String,
        digest: String,
    },
    StartUpload {
        name: String,
    },
    PatchUpload {
        name: String,
        id: String,
    },
    PutUpload {
        name: String,
        id: String,
    },
    GetUpload {
        name: String,
        id: String,
    },
    DeleteUpload {
        name: String,
        id: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
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
    /// The ECR action the endpoint is decided as (`None`: authentication only).
    pub fn action(&self) -> Option<&'static str> {
        use Endpoint::*;
        Some(match self {
            Base => return None,
            Catalog => "ecr:DescribeRepositories",
            TagsList { .. } => "ecr:ListImages",
            GetManifest { .. } | HeadManifest { .. } | Referrers { .. } => "ecr:BatchGetImage",
            PutManifest { .. } => "ecr:PutImage",
            DeleteManifest { .. } | DeleteBlob { .. } => "ecr:BatchDeleteImage",
            GetBlob { .. } => "ecr:GetDownloadUrlForLayer",
            HeadBlob { .. } => "ecr:BatchCheckLayerAvailability",
            StartUpload { .. } => "ecr:InitiateLayerUpload",
            PatchUpload { .. } | GetUpload { .. } | DeleteUpload { .. } => "ecr:UploadLayerPart",
            PutUpload { .. } => "ecr:CompleteLayerUpload",
        })
    }

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
