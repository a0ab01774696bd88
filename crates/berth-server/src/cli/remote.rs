//! A small AWS client for the analysis commands: credentials found the way the aws CLI
//! finds them, requests signed with SigV4, IAM/STS query responses read from XML into
//! JSON-shaped values, ECR's JSON 1.1 protocol. It talks to Berth or to AWS alike.

use std::time::Duration;

use berth_sigv4::{sign, uri_encode, Credentials, Scope};
use serde_json::{Map, Value};

/// Responses larger than this are refused.
const MAX_RESPONSE: u64 = 256 << 20;

/// Where to send requests and as whom.
pub struct Remote {
    agent: ureq::Agent,
    /// One endpoint for every service (a Berth server), or AWS's own per service.
    endpoint: Option<String>,
    creds: Credentials,
    pub region: String,
}

/// An error answer: the service's code and message, or a transport failure.
#[derive(Debug)]
pub struct RemoteError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn transport(e: impl std::fmt::Display) -> RemoteError {
    RemoteError {
        code: "RequestFailed".into(),
        message: e.to_string(),
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else
/// from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
/// `~/.aws/credentials`), profile `profile` or `AWS_PROFILE` or `default`.
/// An environment variable; set but empty counts as unset.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn credentials(profile: Option<&str>) -> Result<Credentials, String> {
    let env = env_var;
    if profile.is_none() {
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
    }
    let profile = profile
        .map(str::to_string)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .or_else(|| env("HOME").map(|h| format!("{h}/.aws/credentials")))
        .ok_or("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("no credentials in the environment, and {path}: {e}"))?;
    let values = ini_section(&text, &profile);
    let get = |k: &str| {
        values
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: get("aws_session_token"),
        }),
        _ => Err(format!("no credentials for profile {profile:?} in {path}")),
    }
}

/// The `key = value` lines of an INI section.
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// The region from `--region`, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1.
pub fn region(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| env_var("AWS_REGION"))
        .or_else(|| env_var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into())
}

/// The URL (without a trailing slash) and the `Host` it is signed with: the scheme's
/// default port is not part of the host, as clients send it.
fn split_endpoint(endpoint: &str) -> Result<(String, String), String> {
    let endpoint = endpoint.trim_end_matches('/');
    let (scheme, rest) = endpoint
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("endpoint {endpoint}: give an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "endpoint {endpoint}: give the server's root URL, without a path"
        ));
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = rest.strip_suffix(default_port).unwrap_or(rest);
    Ok((format!("{scheme}://{host}"), host.to_string()))
}

/// AWS's public endpoint of a service in a region.
fn aws_endpoint(service: &str, region: &str) -> String {
    match service {
        "iam" => "https://iam.amazonaws.com".into(),
        "ecr" => format!("https://api.ecr.{region}.amazonaws.com"),
        other => format!("https://{other}.{region}.amazonaws.com"),
    }
}

impl Remote {
    /// Whether this asks AWS itself rather than a server given by URL.
    pub fn is_aws(&self) -> bool {
        self.endpoint.is_none()
    }

    /// A client of `endpoint` (every service there), or of AWS itself when `None`.
    pub fn new(
        endpoint: Option<&str>,
        creds: Credentials,
        region: String,
    ) -> Result<Remote, String> {
        let endpoint = endpoint
            .map(|e| split_endpoint(e).map(|(url, _)| url))
            .transpose()?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Ok(Remote {
            agent,
            endpoint,
            creds,
            region,
        })
    }

    fn post(
        &self,
        service: &str,
        region: &str,
        content_type: &str,
        target: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, String), RemoteError> {
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => aws_endpoint(service, region),
        };
        let (url, host) = split_endpoint(&endpoint).map_err(transport)?;
        let mut headers: Vec<(&str, &str)> = vec![("host", &host), ("content-type", content_type)];
        if let Some(t) = target {
            headers.push(("x-amz-target", t));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let added = sign(
            "POST",
            "/",
            "",
            &headers,
            body,
            &self.creds,
            Scope {
                region,
                service,
                now,
            },
        );
        let mut req = self.agent.post(format!("{url}/"));
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.header(*k, *v);
        }
        for (k, v) in &added {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send(body).map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(transport)?;
        Ok((status, text))
    }

    /// A query-protocol call (IAM: `iam`, version 2010-05-08; STS: `sts`, 2011-06-15):
    /// the `<Action>Result` element as a JSON-shaped value.
    pub fn query(
        &self,
        service: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, RemoteError> {
        let version = if service == "sts" {
            "2011-06-15"
        } else {
            "2010-05-08"
        };
        let mut body = format!("Action={action}&Version={version}");
        for (k, v) in params {
            body.push('&');
            uri_encode(k.as_bytes(), false, &mut body);
            body.push('=');
            uri_encode(v.as_bytes(), false, &mut body);
        }
        // IAM is global and signs for us-east-1.
        let region = if service == "iam" {
            "us-east-1"
        } else {
            self.region.as_str()
        };
        let (status, text) = self.post(
            service,
            region,
            "application/x-www-form-urlencoded; charset=utf-8",
            None,
            body.as_bytes(),
        )?;
        let doc = roxmltree::Document::parse(&text).map_err(|e| RemoteError {
            code: format!("HTTP {status}"),
            message: format!(
                "the answer is not XML ({e}): {}",
                text.chars().take(200).collect::<String>()
            ),
        })?;
        let root = doc.root_element();
        if status >= 300 || root.tag_name().name() == "ErrorResponse" {
            let field = |name: &str| {
                root.descendants()
                    .find(|n| n.tag_name().name() == name)
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .to_string()
            };
            return Err(RemoteError {
                code: field("Code"),
                message: field("Message"),
            });
        }
        let result = root
            .children()
            .find(|n| n.tag_name().name() == format!("{action}Result"))
            .ok_or_else(|| RemoteError {
                code: format!("HTTP {status}"),
                message: format!("the answer has no {action}Result"),
            })?;
        Ok(xml_value(result))
    }

    /// An ECR call (JSON 1.1, `AmazonEC2ContainerRegistry_V20150921.<op>`).
    pub fn ecr(&self, op: &str, input: &Value) -> Result<Value, RemoteError> {
        let body = input.to_string();
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{op}");
        let (status, text) = self.post(
            "ecr",
            &self.region.clone(),
            "application/x-amz-json-1.1",
            Some(&target),
            body.as_bytes(),
        )?;
        let v: Value = serde_json::from_str(&text).map_err(|e| RemoteError {
            code: format!("HTTP {status}"),
            message: format!("the answer is not JSON ({e})"),
        })?;
        if status >= 300 {
            let code = v["__type"].as_str().unwrap_or("Unknown");
            // `prefix#Code`, sometimes with `:detail` after it.
            let code = code.rsplit('#').next().unwrap_or(code);
            let code = code.split(':').next().unwrap_or(code).to_string();
            let message = v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or_default()
                .to_string();
            return Err(RemoteError { code, message });
        }
        Ok(v)
    }
}

/// An XML element as a JSON-shaped value: an element whose children are all `member`
/// is an array, one with children an object, a leaf its text (an empty element, which
/// may be an empty list, is "").
pub fn xml_value(node: roxmltree::Node) -> Value {
    let children: Vec<roxmltree::Node> = node.children().filter(|n| n.is_element()).collect();
    if children.is_empty() {
        return Value::String(node.text().unwrap_or_default().to_string());
    }
    if children.iter().all(|c| c.tag_name().name() == "member") {
        return Value::Array(children.into_iter().map(xml_value).collect());
    }
    let mut map = Map::new();
    for c in children {
        map.insert(c.tag_name().name().to_string(), xml_value(c));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_lists_objects_and_leaves() {
        let doc = roxmltree::Document::parse(
            "<R><Users><member><Name>a</Name><Groups><member>g</member></Groups></member></Users><Empty/><IsTruncated>false</IsTruncated></R>",
        )
        .unwrap();
        let v = xml_value(doc.root_element());
        assert_eq!(v["Users"][0]["Name"], "a");
        assert_eq!(v["Users"][0]["Groups"][0], "g");
        assert_eq!(v["Empty"], "");
        assert_eq!(v["IsTruncated"], "false");
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            split_endpoint("http://127.0.0.1:5000/").unwrap(),
            ("http://127.0.0.1:5000".into(), "127.0.0.1:5000".into())
        );
        assert_eq!(
            split_endpoint("https://b.example:443").unwrap(),
            ("https://b.example".into(), "b.example".into())
        );
        assert!(split_endpoint("ftp://x").is_err());
        assert!(split_endpoint("http://x/path").is_err());
        assert_eq!(
            aws_endpoint("ecr", "eu-west-1"),
            "https://api.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            aws_endpoint("sts", "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            aws_endpoint("iam", "eu-west-1"),
            "https://iam.amazonaws.com"
        );
    }

    #[test]
    fn ini_sections() {
        let text = "[default]\naws_access_key_id = A\n# c\n[other]\naws_access_key_id=B\naws_secret_access_key = S\n";
        assert_eq!(
            ini_section(text, "other"),
            vec![
                ("aws_access_key_id".into(), "B".into()),
                ("aws_secret_access_key".into(), "S".into())
            ]
        );
        assert_eq!(ini_section(text, "default").len(), 1);
        assert!(ini_section(text, "none").is_empty());
    }
}
