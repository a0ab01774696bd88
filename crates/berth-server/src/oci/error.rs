//! The OCI front door's wire form of the registry store's errors: each
//! [`RegistryError`] becomes the distribution-spec error code and status an OCI client
//! expects (`NAME_UNKNOWN` 404 for a repository that is not there, …).

use berth_store::RegistryError;

use super::OciError;

impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> OciError {
        let (status, code) = match &e {
            RegistryError::RepositoryNotFound { .. } => (404, "NAME_UNKNOWN"),
            // The OCI API creates repositories only on push, where one that already
            // exists is success; should it reach a client it is a refusal, not a failure.
            // OCI has no code for "exists", "not empty" or "still referenced".
            RegistryError::RepositoryAlreadyExists { .. }
            | RegistryError::RepositoryNotEmpty { .. }
            | RegistryError::ImageReferencedByIndex { .. } => (409, "DENIED"),
            RegistryError::Backend(m) => {
                tracing::error!(error = %m, "metadata store failed");
                return OciError::new(
                    500,
                    "UNKNOWN",
                    "The request processing has failed because of an unknown error, exception or failure.",
                );
            }
            RegistryError::Unavailable(m) => {
                tracing::warn!(error = %m, "metadata store unavailable");
                return OciError::new(
                    503,
                    "UNAVAILABLE",
                    "The registry is unavailable: its metadata store cannot be reached right now; nothing was changed. Retry shortly.",
                );
            }
        };
        OciError::new(
            status,
            code,
            crate::registry::refusal_message(&e).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(e: RegistryError) -> (u16, &'static str, String) {
        let e = OciError::from(e);
        (e.status, e.code, e.message)
    }

    #[test]
    fn each_registry_error_is_its_oci_code() {
        let (account, name) = ("123456789012".to_string(), "app/web".to_string());
        assert_eq!(
            wire(RegistryError::RepositoryNotFound {
                account: account.clone(),
                name: name.clone()
            }),
            (
                404,
                "NAME_UNKNOWN",
                "The repository with name 'app/web' does not exist in the registry with id '123456789012'".into()
            )
        );
        assert_eq!(
            wire(RegistryError::RepositoryAlreadyExists {
                account: account.clone(),
                name: name.clone()
            }),
            (
                409,
                "DENIED",
                "The repository with name 'app/web' already exists in the registry with id '123456789012'".into()
            )
        );
        assert_eq!(
            wire(RegistryError::RepositoryNotEmpty {
                account: account.clone(),
                name: name.clone()
            }),
            (
                409,
                "DENIED",
                "The repository with name 'app/web' in registry with id '123456789012' cannot be deleted because it still contains images".into()
            )
        );
        assert_eq!(
            wire(RegistryError::ImageReferencedByIndex {
                account,
                repository: name,
                digest: "sha256:abc".into()
            }),
            (
                409,
                "DENIED",
                "The image sha256:abc is referenced by a manifest list or index in the repository"
                    .into()
            )
        );
        let (status, code, message) = wire(RegistryError::Backend("disk I/O error".into()));
        assert_eq!((status, code), (500, "UNKNOWN"));
        assert!(!message.contains("disk"), "{message}");
    }
}
