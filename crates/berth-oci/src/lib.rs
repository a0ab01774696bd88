//! `berth-oci`: the OCI distribution formats Berth reads from clients.
//!
//! Owns repository names, tags and digests as ECR and the distribution spec write them,
//! reading pushed manifests (media type, references, size, `subject`, `artifactType`) and
//! `Range` headers. Pure functions over untrusted input, fuzzed: no I/O, no HTTP server,
//! no storage.

pub mod challenge;
pub mod manifest;
pub mod names;
pub mod range;

pub use manifest::{parse as parse_manifest, Invalid, Manifest, Reference};
pub use range::{parse_range, ByteRange};
