//! Reading pushed manifests: their media type, what they reference (config and layer
//! blobs, child manifests), their size, `subject` and `artifactType`. The bytes are kept
//! as pushed; this only reads them (never panics, whatever the bytes).

use serde_json::Value;

use super::names::valid_digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Layers that live elsewhere (Windows base layers): never uploaded to the registry.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];
/// The OCI empty config (`{}`), which does not make an artifact type.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What a manifest references: a blob (config, layer) or a child manifest (index entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    Blob,
    Manifest,
}

/// What a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub refs: Vec<(String, Reference)>,
    /// An image manifest's size: its config's and layers' sizes added up (as pushed, that
    /// is compressed; saturating, whatever the descriptors claim). 0 for an index: its
    /// size is its largest child image's, which only the store knows (berth-server's
    /// `store_manifest`), not the largest child manifest document's.
    pub size: i64,
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
    pub is_index: bool,
}

/// Why a manifest cannot be stored (`MANIFEST_INVALID` with this message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn descriptor(v: &Value, at: &str) -> Result<(String, i64, Option<String>), Invalid> {
    let o = v
        .as_object()
        .ok_or_else(|| Invalid(format!("{at} is not a descriptor object")))?;
    let digest = o
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid(format!("{at}.digest is missing")))?;
    if !valid_digest(digest) {
        return Err(Invalid(format!(
            "{at}.digest {digest:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        )));
    }
    let size = o
        .get("size")
        .and_then(Value::as_i64)
        .filter(|s| *s >= 0)
        .ok_or_else(|| {
            Invalid(format!(
                "{at}.size is missing or not a non-negative integer"
            ))
        })?;
    let media_type = o
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((digest.to_string(), size, media_type))
}

/// Read a manifest pushed with `content_type` (the request's `Content-Type`, if any).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, Invalid> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Invalid(format!("the manifest is not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| Invalid("the manifest is not a JSON object".into()))?;
    let declared = o.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    if let (Some(d), Some(h)) = (declared, header) {
        if d != h {
            return Err(Invalid(format!(
                "the manifest's mediaType {d:?} differs from its Content-Type {h:?}"
            )));
        }
    }
    let is_index = o.contains_key("manifests");
    let media_type = match declared.or(header) {
        Some(m) => m.to_string(),
        None if is_index => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str())
        || o.get("schemaVersion").and_then(Value::as_i64) == Some(1)
    {
        return Err(Invalid(
            "Docker image manifest schema 1 is not supported; push schema 2 or OCI".into(),
        ));
    }
    if o.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(Invalid("schemaVersion must be 2".into()));
    }
    let index_type = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let manifest_type = media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST;
    if !index_type && !manifest_type {
        return Err(Invalid(format!(
            "media type {media_type:?} is not a manifest type this registry stores ({DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX})"
        )));
    }
    if index_type != is_index {
        return Err(Invalid(format!(
            "a {media_type} must {} a \"manifests\" list",
            if index_type { "have" } else { "not have" }
        )));
    }
    let subject = match o.get("subject") {
        Some(s) if !s.is_null() => Some(descriptor(s, "subject")?.0),
        _ => None,
    };
    let mut refs = Vec::new();
    let mut size: i64 = 0;
    let mut artifact_type = o
        .get("artifactType")
        .and_then(Value::as_str)
        .map(str::to_string);
    if is_index {
        let list = o
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| Invalid("\"manifests\" is not a list".into()))?;
        for (i, m) in list.iter().enumerate() {
            let (d, _, _) = descriptor(m, &format!("manifests[{i}]"))?;
            refs.push((d, Reference::Manifest));
        }
    } else {
        let config = o
            .get("config")
            .ok_or_else(|| Invalid("an image manifest needs a \"config\" descriptor".into()))?;
        let (d, s, config_type) = descriptor(config, "config")?;
        size = size.saturating_add(s);
        refs.push((d, Reference::Blob));
        if artifact_type.is_none() {
            artifact_type = config_type.filter(|t| {
                t != OCI_EMPTY
                    && t != OCI_CONFIG
                    && t != "application/vnd.docker.container.image.v1+json"
            });
        }
        let layers = match o.get("layers") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(Invalid("\"layers\" is not a list".into())),
        };
        for (i, l) in layers.iter().enumerate() {
            let (d, s, t) = descriptor(l, &format!("layers[{i}]"))?;
            size = size.saturating_add(s);
            if !t.as_deref().is_some_and(|t| FOREIGN_LAYERS.contains(&t)) {
                refs.push((d, Reference::Blob));
            }
        }
    }
    refs.sort();
    refs.dedup();
    Ok(Manifest {
        media_type,
        refs,
        size,
        subject,
        artifact_type,
        is_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_index_and_artifact() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":10}},"layers":[{{"mediaType":"x","digest":"{}","size":5}}]}}"#,
            d('a'),
            d('b')
        );
        let p = parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.size, 15);
        assert_eq!(
            p.refs,
            vec![(d('a'), Reference::Blob), (d('b'), Reference::Blob)]
        );
        assert_eq!(p.artifact_type, None);
        assert!(
            parse(m.as_bytes(), Some(DOCKER_MANIFEST)).is_err(),
            "type mismatch"
        );

        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":300}}]}}"#,
            d('c')
        );
        let p = parse(idx.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert!(p.is_index);
        // not the child manifest document's 300 bytes: the store works out the largest image
        assert_eq!(p.size, 0);
        assert_eq!(p.refs, vec![(d('c'), Reference::Manifest)]);

        let art = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x.sig","config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":7}}}}"#,
            d('e'),
            d('f')
        );
        let p = parse(art.as_bytes(), None).unwrap();
        assert_eq!(p.subject, Some(d('f')));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.sig"));

        // descriptor sizes whose sum does not fit: no overflow, the size saturates
        let huge = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{max}}},"layers":[{{"mediaType":"x","digest":"{}","size":{max}}}]}}"#,
            d('a'),
            d('b'),
            max = i64::MAX
        );
        assert_eq!(parse(huge.as_bytes(), None).unwrap().size, i64::MAX);

        for bad in [
            "not json",
            "[]",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":1}}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":-1}}"#,
        ] {
            assert!(parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }
}
