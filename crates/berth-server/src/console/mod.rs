//! The web console at `/console`: server-rendered HTML, every asset in the binary, no
//! script at all so far. Sign-in as IAM does it (account id or alias, user name and
//! password from the user's login profile; or an access key id and secret, which is how
//! the root user signs in), then pages that call the same operations as the APIs **as
//! the signed-in principal** ([`crate::ecr::call`]), so a page shows exactly what that
//! principal may see and a denial is shown as the API would answer it.
//!
//! Every response carries a Content-Security-Policy without inline scripts or styles,
//! frame protection and `no-store`; every text from the registry is escaped ([`esc`]);
//! every state-changing form carries the session's CSRF token, and the session cookie is
//! SameSite=Strict ([`session`]). Sign-in failures count as authentication failures:
//! logged, counted, and charged to the address's failure budget (throttled).

pub mod policy;
pub mod session;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::ecr::router::Operation;
use crate::serve::App;
use session::Claims;

/// Where the console lives.
pub const PREFIX: &str = "/console";

const CSS: &str = include_str!("console.css");

/// Whether a request is for the console (or is a browser asking for `/`).
pub fn answers(req: &Request<Body>) -> bool {
    let path = req.uri().path();
    path == PREFIX || path.starts_with("/console/") || (path == "/" && wants_html(req))
}

fn wants_html(req: &Request<Body>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// HTML-escape a text from anywhere (names, tags, messages): the XML escaping of the
/// query API's responses, which covers HTML's five characters.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::query::xml::escape(s, &mut out);
    out
}

/// Percent-encode a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn secure(app: &App, req: &Request<Body>) -> bool {
    req.extensions()
        .get::<crate::serve::connections::Transport>()
        .is_some_and(|t| t.tls)
        || app
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

fn with_headers(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    with_headers(r)
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    with_headers(r)
}

/// A whole page: `who` is the signed-in principal (and its CSRF token), if any.
fn page(title: &str, who: Option<(&Caller, &str)>, body: &str) -> String {
    let nav = match who {
        Some((caller, csrf)) => format!(
            r#"<nav><a href="/console/repositories">Repositories</a><span class="who">{}</span><form method="post" action="/console/signout"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form></nav>"#,
            esc(caller.arn()),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · Berth</title><link rel="stylesheet" href="/console/static/console.css"></head><body><header><a class="brand" href="/console/">Berth</a>{nav}</header><main>{body}</main></body></html>"#,
        esc(title)
    )
}

/// Serve a console request.
pub async fn serve(app: &App, peer: SocketAddr, req: Request<Body>) -> Response<Body> {
    crate::metrics::label(req.extensions(), "console", "page");
    let path = req.uri().path().to_string();
    if path == "/" || path == PREFIX {
        return redirect("/console/");
    }
    if path == "/console/static/console.css" {
        let mut r = Response::new(Body::from(CSS));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        );
        return with_headers(r);
    }
    let now = crate::ids::now();
    let claims = session::cookie(req.headers()).and_then(|v| session::open(&app.token_key, v, now));
    let signed_in = match &claims {
        Some(c) => session::caller(app, c)
            .await
            .map(|caller| (caller, c.clone())),
        None => None,
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/console/signin") => sign_in_page(None),
        (Method::POST, "/console/signin") => sign_in(app, peer, req).await,
        (Method::POST, "/console/signout") => {
            let secure = secure(app, &req);
            let form = form(req).await;
            match &signed_in {
                Some((_, c)) if form.get("csrf") == Some(&c.c) => {}
                _ => return forbidden("the form's CSRF token is missing or not this session's"),
            }
            let mut r = redirect("/console/signin");
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie("", 0, secure)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => {
            let Some((caller, claims)) = signed_in else {
                return redirect("/console/signin");
            };
            let origin = app.origin(
                peer.ip(),
                req.extensions().get(),
                req.headers(),
                crate::ids::request_id(),
                now,
                app.config.region.clone(),
            );
            let query = berth_sigv4::query_pairs(req.uri().query().unwrap_or(""));
            let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let ctx = Ctx {
                app,
                caller: &caller,
                origin: &origin,
                csrf: &claims.c,
            };
            let method = req.method().clone();
            if method == Method::GET {
                if path == "/console/" || path == "/console/repositories" {
                    return repositories(&ctx, q("next"), q("q")).await;
                }
                if let Some(name) = path.strip_prefix("/console/repositories/") {
                    return images(&ctx, name, q("next")).await;
                }
                if let Some(name) = path.strip_prefix("/console/policy/") {
                    return policy::page(&ctx, &percent_decode(name), None, false, None).await;
                }
                return not_found(&ctx);
            }
            if method == Method::POST {
                if let Some(name) = path.strip_prefix("/console/policy/") {
                    let name = percent_decode(name);
                    let form = form(req).await;
                    if form.get("csrf") != Some(&claims.c) {
                        return forbidden("the form's CSRF token is missing or not this session's");
                    }
                    return policy::post(&ctx, &name, &form).await;
                }
            }
            html(
                StatusCode::METHOD_NOT_ALLOWED,
                page(
                    "Not allowed",
                    Some((&caller, &claims.c)),
                    "<h1>Method not allowed</h1><p>The console answers GET, and POST for its forms.</p>",
                ),
            )
        }
    }
}

/// What a signed-in page needs.
struct Ctx<'a> {
    app: &'a App,
    caller: &'a Caller,
    origin: &'a crate::serve::Origin,
    csrf: &'a str,
}

impl Ctx<'_> {
    fn page(&self, title: &str, body: &str) -> Response<Body> {
        html(
            StatusCode::OK,
            page(title, Some((self.caller, self.csrf)), body),
        )
    }

    /// An ECR operation as the signed-in principal.
    async fn ecr(&self, op: Operation, input: Value) -> Result<Value, crate::query::ApiError> {
        crate::ecr::call(self.app, self.caller, self.origin, op, &input).await
    }

    /// An API error as the page shows it (the API's code and sentence; an encoded
    /// authorization message folded away, for `aws sts decode-authorization-message`).
    fn denied(&self, title: &str, e: &crate::query::ApiError) -> Response<Body> {
        const ENCODED: &str = " Encoded authorization failure message: ";
        let (sentence, encoded) = match e.message.split_once(ENCODED) {
            Some((s, m)) => (s, Some(m)),
            None => (e.message.as_str(), None),
        };
        let encoded = encoded
            .map(|m| {
                format!(
                    r#"<details><summary>Encoded authorization message</summary><code class="encoded">{}</code></details>"#,
                    esc(m)
                )
            })
            .unwrap_or_default();
        html(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            page(
                title,
                Some((self.caller, self.csrf)),
                &format!(
                    r#"<h1>{}</h1><div class="error" role="alert"><p><strong>{}</strong>: {}</p>{encoded}</div>"#,
                    esc(title),
                    esc(e.code),
                    esc(sentence)
                ),
            ),
        )
    }
}

fn not_found(ctx: &Ctx<'_>) -> Response<Body> {
    html(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            Some((ctx.caller, ctx.csrf)),
            "<h1>Not found</h1><p>No console page here.</p>",
        ),
    )
}

fn forbidden(why: &str) -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        page(
            "Refused",
            None,
            &format!(
                r#"<h1>Refused</h1><p class="error" role="alert">{}</p>"#,
                esc(why)
            ),
        ),
    )
}

fn sign_in_page(error: Option<&str>) -> Response<Body> {
    let alert = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Sign in</h1>{alert}
<div class="forms">
<form id="iam-user-form" method="post" action="/console/signin" class="card" aria-labelledby="iam-user">
<h2 id="iam-user">IAM user</h2>
<input type="hidden" name="how" value="password">
<label>Account ID or alias<input name="account" autocomplete="organization" required></label>
<label>User name<input name="user" autocomplete="username" required></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<form id="access-key-form" method="post" action="/console/signin" class="card" aria-labelledby="access-key">
<h2 id="access-key">Access key (the root user, or users without a password)</h2>
<input type="hidden" name="how" value="key">
<label>Access key ID<input name="access_key_id" autocomplete="username" required></label>
<label>Secret access key<input name="secret_access_key" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
</div>"#
    );
    html(StatusCode::OK, page("Sign in", None, &body))
}

/// A form body (at most 16 KiB).
async fn form(req: Request<Body>) -> std::collections::HashMap<String, String> {
    let bytes = axum::body::to_bytes(req.into_body(), 16 << 10)
        .await
        .unwrap_or_default();
    berth_sigv4::query_pairs(&String::from_utf8_lossy(&bytes).replace('+', "%20"))
        .into_iter()
        .collect()
}

async fn sign_in(app: &App, peer: SocketAddr, req: Request<Body>) -> Response<Body> {
    let secure = secure(app, &req);
    let client = app.client_ip(peer.ip(), req.headers());
    let f = form(req).await;
    let get = |k: &str| {
        f.get(k)
            .map(String::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let now = crate::ids::now();
    let refused = |reason: &'static str| {
        crate::auth::failures::record(app, client, reason, "console sign-in refused");
        sign_in_page(Some(
            "Sign-in failed: the account, user name and password (or the access key) do not match.",
        ))
    };
    let claims = match get("how").as_str() {
        "password" => {
            let (account_in, user, password) = (
                get("account"),
                get("user"),
                f.get("password").cloned().unwrap_or_default(),
            );
            let Ok(accounts) = app.store.accounts().await else {
                return sign_in_page(Some("The registry cannot be reached right now; try again."));
            };
            let Some(account) = accounts
                .iter()
                .find(|a| a.id == account_in || a.alias.as_deref() == Some(account_in.as_str()))
            else {
                return refused("console_bad_password");
            };
            // The entity's stored name (user names are case-insensitive).
            let entity = app
                .store
                .entity(&account.id, berth_store::EntityKind::User, &user)
                .await
                .ok()
                .flatten();
            let profile = match &entity {
                Some(e) => app
                    .store
                    .login_profile(&account.id, &e.name)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            match profile {
                Some(p) if crate::iam::passwords::verify(&password, &p.password_hash) => Claims {
                    a: account.id.clone(),
                    u: Some(p.user),
                    k: None,
                    i: now,
                    e: now + session::LIFETIME,
                    c: crate::ids::unique_id(""),
                },
                _ => return refused("console_bad_password"),
            }
        }
        "key" => {
            let (id, secret) = (get("access_key_id"), get("secret_access_key"));
            let credential = app.caches.credential(&*app.store, &id).await.ok().flatten();
            match credential.as_deref() {
                Some(crate::auth::cache::Credential::Key(k))
                    if k.status == berth_store::KeyStatus::Active
                        && crate::auth::authenticate::same_secret(&k.secret, &secret) =>
                {
                    Claims {
                        a: k.account.clone(),
                        u: None,
                        k: Some(k.id.clone()),
                        i: now,
                        e: now + session::LIFETIME,
                        c: crate::ids::unique_id(""),
                    }
                }
                _ => return refused("console_bad_key"),
            }
        }
        _ => return sign_in_page(Some("Choose how to sign in.")),
    };
    let mut r = redirect("/console/repositories");
    let cookie = session::set_cookie(
        &session::seal(&app.token_key, &claims),
        session::LIFETIME,
        secure,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn text<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn time(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(t) => crate::ids::iso8601(t as i64),
        None => String::new(),
    }
}

fn size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

async fn repositories(ctx: &Ctx<'_>, next: Option<&str>, filter: Option<&str>) -> Response<Body> {
    let mut input = json!({ "maxResults": 100 });
    if let Some(n) = next {
        input["nextToken"] = json!(n);
    }
    let out = match ctx.ecr(Operation::DescribeRepositories, input).await {
        Ok(v) => v,
        Err(e) => return ctx.denied("Repositories", &e),
    };
    let filter = filter.unwrap_or("").trim();
    let mut rows = String::new();
    let repos = out["repositories"].as_array().cloned().unwrap_or_default();
    for r in repos
        .iter()
        .filter(|r| filter.is_empty() || text(r, "repositoryName").contains(filter))
    {
        let name = text(r, "repositoryName");
        rows.push_str(&format!(
            r#"<tr><td><a href="/console/repositories/{}">{}</a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            enc(name),
            esc(name),
            esc(text(r, "repositoryUri")),
            esc(text(r, "imageTagMutability")),
            if r["imageScanningConfiguration"]["scanOnPush"].as_bool() == Some(true) { "on push" } else { "manual" },
            esc(&time(r, "createdAt")),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="5" class="empty">No repositories to show.</td></tr>"#.into();
    }
    let more = match out.get("nextToken").and_then(Value::as_str) {
        Some(n) => format!(
            r#"<p><a class="button" href="/console/repositories?next={}">Next page</a></p>"#,
            enc(n)
        ),
        None => String::new(),
    };
    ctx.page(
        "Repositories",
        &format!(
            r#"<h1>Repositories</h1>
<form method="get" action="/console/repositories" class="search" role="search"><label>Filter<input name="q" value="{}"></label><button type="submit">Filter</button></form>
<table><thead><tr><th>Name</th><th>URI</th><th>Tags</th><th>Scanning</th><th>Created</th></tr></thead><tbody>{rows}</tbody></table>{more}"#,
            esc(filter)
        ),
    )
}

async fn images(ctx: &Ctx<'_>, name: &str, next: Option<&str>) -> Response<Body> {
    let name = percent_decode(name);
    let title = format!("Repository {name}");
    let mut input = json!({ "repositoryName": name, "maxResults": 100 });
    if let Some(n) = next {
        input["nextToken"] = json!(n);
    }
    let out = match ctx.ecr(Operation::DescribeImages, input).await {
        Ok(v) => v,
        Err(e) => return ctx.denied(&title, &e),
    };
    let mut rows = String::new();
    for i in out["imageDetails"].as_array().cloned().unwrap_or_default() {
        let tags: Vec<String> = i["imageTags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).map(esc).collect())
            .unwrap_or_default();
        rows.push_str(&format!(
            r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if tags.is_empty() { "<em>untagged</em>".to_string() } else { tags.join(", ") },
            esc(text(&i, "imageDigest")),
            esc(&size(i["imageSizeInBytes"].as_f64().unwrap_or(0.0))),
            esc(text(&i, "imageManifestMediaType")),
            esc(&time(&i, "imagePushedAt")),
            esc(&time(&i, "lastRecordedPullTime")),
        ));
    }
    if rows.is_empty() {
        rows = r#"<tr><td colspan="6" class="empty">No images.</td></tr>"#.into();
    }
    let more = match out.get("nextToken").and_then(Value::as_str) {
        Some(n) => format!(
            r#"<p><a class="button" href="/console/repositories/{}?next={}">Next page</a></p>"#,
            enc(&name),
            enc(n)
        ),
        None => String::new(),
    };
    ctx.page(
        &title,
        &format!(
            r#"<h1>{}</h1><p><a href="/console/policy/{}">Repository policy</a></p><table><thead><tr><th>Tags</th><th>Digest</th><th>Size</th><th>Media type</th><th>Pushed</th><th>Last pulled</th></tr></thead><tbody>{rows}</tbody></table>{more}"#,
            esc(&title),
            enc(&name)
        ),
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_escaped_and_paths_encoded() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&apos;"
        );
        assert_eq!(enc("team/app v1?&"), "team/app%20v1%3F%26");
        assert_eq!(percent_decode("team%2Fapp%20x"), "team/app x");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(size(1536.0), "1.5 KiB");
    }
}
