//! `berth upstream-credential`: the credentials the pull-through cache signs in to
//! upstream registries with, stored sealed in the metadata store (as secret access keys
//! are) and named by an ARN of the form AWS Secrets Manager gives them
//! (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:ecr-pullthroughcache/NAME-XXXXXX`),
//! which a rule's `credentialArn` names. The secret is read from standard input and never
//! printed again: the server opens it only to sign in to the upstream it was stored for
//! (`--upstream`, sealed with it), whatever a rule naming it points at.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::registry::cache::rule::SECRET_PREFIX;
use crate::serve::config::Config;

#[derive(Debug, Subcommand)]
pub enum UpstreamCredentialCommand {
    /// Store a credential (or replace the user name and password of one stored under that
    /// name, which keeps its ARN); prints its ARN for `--credential-arn`.
    Put(PutArgs),
    /// List the stored credentials (ARN, name, user name; never the password).
    List(ListArgs),
    /// Delete a credential (rules naming it then fail to sign in).
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct Registry {
    /// The account whose registry keeps it [default: the data directory's default account]
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Option<String>,
    /// The Region of that registry [default: the server's default Region]
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    store: super::store_flags::StoreFlags,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Its name (`ecr-pullthroughcache/` is put in front where it is missing, as ECR
    /// requires of pull-through cache secrets)
    name: String,
    /// The upstream registry it is for (host[:port], as rules name it): it is sent to
    /// that registry (and its token service) only, whatever a rule naming it says
    #[arg(long, value_name = "HOST")]
    upstream: String,
    /// The user name to sign in to the upstream registry with
    #[arg(long)]
    username: String,
    /// Read the password (or access token) from standard input (required: it is never
    /// taken from the command line, where other users could see it)
    #[arg(long, required = true)]
    password_stdin: bool,
    #[command(flatten)]
    registry: Registry,
    /// Print {"arn", "name", "username", "upstream"} as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    registry: Registry,
    /// Print a JSON list of {"arn", "name", "username", "createdAt", "updatedAt"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Its name (with or without `ecr-pullthroughcache/`)
    name: String,
    #[command(flatten)]
    registry: Registry,
}

/// The full secret name of `name`, checked as ECR checks it.
fn secret_name(name: &str) -> Result<String, String> {
    let full = if name.starts_with(SECRET_PREFIX) {
        name.to_string()
    } else {
        format!("{SECRET_PREFIX}{name}")
    };
    let tail = &full[SECRET_PREFIX.len()..];
    if tail.is_empty()
        || full.len() > 512
        || !tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(format!(
            "{name:?} is not a credential name: letters, digits and / _ + = . @ - (at most 512 characters with {SECRET_PREFIX})"
        ));
    }
    Ok(full)
}

struct Opened {
    meta: crate::serve::metadata::Metadata,
    account: String,
    region: String,
    home_region: String,
}

impl Opened {
    fn key(&self) -> berth_store::RegistryKey<'_> {
        berth_store::RegistryKey {
            account: &self.account,
            region: (self.region != self.home_region).then_some(self.region.as_str()),
        }
    }
}

async fn open(r: Registry) -> Result<Opened, String> {
    let file = r.store.config.clone();
    let config = Config::load(file.as_deref(), &r.store.overrides())?;
    let meta = crate::serve::metadata::open(&config).await?;
    let accounts = meta.store.accounts().await.map_err(|e| e.to_string())?;
    let account = match r.account {
        Some(a) => {
            if !accounts.iter().any(|x| x.id == a) {
                return Err(format!("there is no account {a} in this registry"));
            }
            a
        }
        None => accounts
            .first()
            .map(|a| a.id.clone())
            .ok_or("the metadata store has no account yet: start the server once first")?,
    };
    let region = r.region.unwrap_or_else(|| config.region.clone());
    let home_region = crate::serve::home_region(&*meta.registry, &config).await?;
    if !config.regions.contains(&region) {
        return Err(format!(
            "this registry does not serve Region {region} (regions = {:?})",
            config.regions
        ));
    }
    Ok(Opened {
        meta,
        account,
        region,
        home_region,
    })
}

/// Six random letters and digits, as Secrets Manager ends its ARNs with.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 6];
    getrandom::fill(&mut raw).expect("the operating system's random number generator");
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn run(cmd: UpstreamCredentialCommand) -> Result<ExitCode, String> {
    super::runtime()?.block_on(async {
        match cmd {
            UpstreamCredentialCommand::Put(a) => {
                let name = secret_name(&a.name)?;
                let upstream = crate::registry::cache::rule::host_of(&a.upstream).ok_or_else(|| {
                    format!("--upstream {:?} is not a registry address (host[:port])", a.upstream)
                })?;
                if a.username.is_empty() {
                    return Err("--username must not be empty".into());
                }
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .map_err(|e| format!("reading the password from standard input: {e}"))?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    return Err("no password on standard input".into());
                }
                let o = open(a.registry).await?;
                let arn = format!(
                    "arn:aws:secretsmanager:{}:{}:secret:{name}-{}",
                    o.region,
                    o.account,
                    suffix()
                );
                let stored = o
                    .meta
                    .registry
                    .put_upstream_credential(
                        o.key(),
                        &name,
                        &arn,
                        &a.username,
                        &crate::registry::cache::rule::CredentialSecret {
                            password,
                            upstream: upstream.clone(),
                        }
                        .to_stored(),
                        crate::ids::now_ms(),
                    )
                    .await
                    .map_err(|e| format!("storing the credential: {e}"))?;
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"arn": stored.arn, "name": stored.name, "username": stored.username, "upstream": upstream})
                    );
                } else {
                    println!("{}", stored.arn);
                }
                Ok(ExitCode::SUCCESS)
            }
            UpstreamCredentialCommand::List(a) => {
                let o = open(a.registry).await?;
                let all = o
                    .meta
                    .registry
                    .upstream_credentials(o.key())
                    .await
                    .map_err(|e| format!("listing the credentials: {e}"))?;
                if a.json {
                    let v: Vec<serde_json::Value> = all
                        .iter()
                        .map(|c| {
                            serde_json::json!({"arn": c.arn, "name": c.name, "username": c.username,
                                "createdAt": c.created_at, "updatedAt": c.updated_at})
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(v));
                } else {
                    for c in all {
                        println!("{}\t{}", c.arn, c.username);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            UpstreamCredentialCommand::Delete(a) => {
                let name = secret_name(&a.name)?;
                let o = open(a.registry).await?;
                let gone = o
                    .meta
                    .registry
                    .delete_upstream_credential(o.key(), &name)
                    .await
                    .map_err(|e| format!("deleting the credential: {e}"))?;
                if !gone {
                    eprintln!("berth: there is no credential {name}");
                    return Ok(ExitCode::from(1));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
