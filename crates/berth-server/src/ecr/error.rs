//! The ECR front door's wire form of the registry store's errors: each
//! [`RegistryError`] becomes the ECR exception, with ECR's message, that an ECR client
//! expects. The store says what happened; only this file says it in ECR's words.

use berth_store::RegistryError;

use crate::query::ApiError;

/// ECR's `BatchDeleteImage` failure code for an image an index still lists.
pub const IMAGE_REFERENCED_BY_MANIFEST_LIST: &str = "ImageReferencedByManifestList";

/// The one mapping. Code shared by both front doors (authorization) only meets
/// [`RegistryError::Backend`], which is a server failure in every API.
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let code = match &e {
            RegistryError::RepositoryNotFound { .. } => "RepositoryNotFoundException",
            RegistryError::RepositoryAlreadyExists { .. } => "RepositoryAlreadyExistsException",
            RegistryError::RepositoryNotEmpty { .. } => "RepositoryNotEmptyException",
            // ECR reports this only as a BatchDeleteImage failure (see images.rs); as an
            // exception it is the caller's request that cannot be done.
            RegistryError::ImageReferencedByIndex { .. } => "InvalidParameterException",
            RegistryError::Backend(m) => {
                return ApiError::from(berth_store::StoreError::Backend(m.clone()))
            }
            RegistryError::Unavailable(m) => {
                return ApiError::from(berth_store::StoreError::Unavailable(m.clone()))
            }
        };
        let message = crate::registry::refusal_message(&e).unwrap_or_default();
        ApiError::new(400, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(e: RegistryError) -> (u16, &'static str, String) {
        let e = ApiError::from(e);
        (e.status, e.code, e.message)
    }

    #[test]
    fn each_registry_error_is_its_ecr_exception() {
        let (account, name) = ("123456789012".to_string(), "app/web".to_string());
        assert_eq!(
            wire(RegistryError::RepositoryNotFound {
                account: account.clone(),
                name: name.clone()
            }),
            (
                400,
                "RepositoryNotFoundException",
                "The repository with name 'app/web' does not exist in the registry with id '123456789012'".into()
            )
        );
        assert_eq!(
            wire(RegistryError::RepositoryAlreadyExists {
                account: account.clone(),
                name: name.clone()
            }),
            (
                400,
                "RepositoryAlreadyExistsException",
                "The repository with name 'app/web' already exists in the registry with id '123456789012'".into()
            )
        );
        assert_eq!(
            wire(RegistryError::RepositoryNotEmpty {
                account: account.clone(),
                name: name.clone()
            }),
            (
                400,
                "RepositoryNotEmptyException",
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
                400,
                "InvalidParameterException",
                "The image sha256:abc is referenced by a manifest list or index in the repository"
                    .into()
            )
        );
        // A backend failure is a server error whose text stays in the log.
        let (status, code, message) = wire(RegistryError::Backend("disk I/O error".into()));
        assert_eq!((status, code), (500, "ServiceFailure"));
        assert!(!message.contains("disk"), "{message}");
        assert_eq!(super::super::json_code(code), "ServerException");
    }
}
