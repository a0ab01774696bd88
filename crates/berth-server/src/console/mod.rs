//! The web console at `/console`: server-rendered HTML, every asset in the binary (one
//! stylesheet, one small script that only adds to pages that work without it: line
//! numbers and lint as you type in the policy editors). Sign-in as IAM does it (account id or alias, user name and
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

pub mod activity;
pub mod browse;
pub mod iam_pages;
pub mod policy;
pub mod session;
pub mod tools;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::auth::Caller;
use crate::ecr::router::Operation;
use crate::query::{ApiError, Params};
use crate::serve::App;
use session::Claims;

/// Where the console lives.
pub const PREFIX: &str = "/console";

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

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

pub(crate) fn with_headers(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
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

pub(crate) fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    with_headers(r)
}

pub(crate) fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    with_headers(r)
}

/// The console's sections, in the navigation's order: (path, label).
const SECTIONS: &[(&str, &str)] = &[
    ("/console/repositories", "Repositories"),
    ("/console/registry-policy", "Registry policy"),
    ("/console/playground", "Playground"),
    ("/console/who-can", "Who can"),
    ("/console/decode", "Why denied?"),
    ("/console/iam", "IAM"),
    ("/console/activity", "Activity"),
];

/// A whole page: `who` is the signed-in principal (and its CSRF token), if any.
fn page(title: &str, who: Option<(&Caller, &str)>, body: &str) -> String {
    let (nav, meta) = match who {
        Some((caller, csrf)) => {
            let links: String = SECTIONS
                .iter()
                .map(|(href, label)| format!(r#"<a href="{href}">{label}</a>"#))
                .collect();
            (
                format!(
                    r#"<nav aria-label="Sections">{links}<span class="who">{}</span><form method="post" action="/console/signout"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form></nav>"#,
                    esc(caller.arn()),
                    esc(csrf)
                ),
                format!(r#"<meta name="csrf" content="{}">"#, esc(csrf)),
            )
        }
        None => (String::new(), String::new()),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{meta}<title>{} · Berth</title><link rel="stylesheet" href="/console/static/console.css"><script src="/console/static/console.js" defer></script></head><body><header><a class="brand" href="/console/">Berth</a>{nav}</header><main>{body}</main></body></html>"#,
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
    let asset = match path.as_str() {
        "/console/static/console.css" => Some((CSS, "text/css; charset=utf-8")),
        "/console/static/console.js" => Some((JS, "text/javascript; charset=utf-8")),
        _ => None,
    };
    if let Some((text, kind)) = asset {
        let mut r = Response::new(Body::from(text));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
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
        (Method::POST, "/console/password") => change_password(app, peer, req).await,
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
            let query =
                berth_sigv4::query_pairs(&req.uri().query().unwrap_or("").replace('+', "%20"));
            let ctx = Ctx {
                app,
                caller: &caller,
                origin: &origin,
                csrf: &claims.c,
            };
            let method = req.method().clone();
            if method == Method::GET {
                return get(&ctx, &path, &query).await;
            }
            if method == Method::POST {
                let json = path == "/console/api/lint";
                let header_token = req
                    .headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let form = form(req).await;
                let token = if json {
                    header_token.as_ref()
                } else {
                    form.get("csrf")
                };
                if token != Some(&claims.c) {
                    return forbidden("the form's CSRF token is missing or not this session's");
                }
                if json {
                    return policy::lint_api(
                        form.get("kind").map(String::as_str),
                        form.get("text").map(String::as_str).unwrap_or(""),
                    );
                }
                return post(&ctx, &path, &form).await;
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

/// A signed-in page.
async fn get(ctx: &Ctx<'_>, path: &str, query: &[(String, String)]) -> Response<Body> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let rest = |prefix: &str| path.strip_prefix(prefix).map(percent_decode);
    if path == "/console/" || path == "/console/repositories" {
        return browse::repositories(ctx, q("after"), q("q")).await;
    }
    if let Some(name) = rest("/console/repositories/") {
        return browse::images(ctx, &name, q("next")).await;
    }
    if let Some(name) = rest("/console/image/") {
        return browse::image(ctx, &name, q("digest").unwrap_or("")).await;
    }
    if let Some(name) = rest("/console/delete-image/") {
        return browse::confirm_image_delete(ctx, &name, q("digest").unwrap_or("")).await;
    }
    if let Some(name) = rest("/console/delete-repository/") {
        return browse::confirm_repository_delete(ctx, &name).await;
    }
    if let Some(name) = rest("/console/lifecycle/") {
        return browse::lifecycle(ctx, &name).await;
    }
    if let Some(name) = rest("/console/policy/") {
        return policy::page(ctx, &policy::Target::Repository(name), None, false, None).await;
    }
    match path {
        "/console/registry-policy" => {
            policy::page(ctx, &policy::Target::Registry, None, false, None).await
        }
        "/console/playground" => tools::playground(ctx, query).await,
        "/console/decode" => tools::decode_page(ctx, None).await,
        "/console/who-can" => tools::who_can(ctx, q("repository"), q("action")).await,
        "/console/iam" => iam_pages::overview(ctx).await,
        "/console/activity" => activity::page(ctx, query).await,
        _ => match rest("/console/iam/users/") {
            Some(user) => iam_pages::user(ctx, &user, None).await,
            None => not_found(ctx),
        },
    }
}

/// A signed-in form (its CSRF token already checked).
async fn post(
    ctx: &Ctx<'_>,
    path: &str,
    form: &std::collections::HashMap<String, String>,
) -> Response<Body> {
    let rest = |prefix: &str| path.strip_prefix(prefix).map(percent_decode);
    if let Some(name) = rest("/console/policy/") {
        return policy::post(ctx, &policy::Target::Repository(name), form).await;
    }
    if let Some(name) = rest("/console/delete-image/") {
        return browse::delete_image(ctx, &name, form).await;
    }
    if let Some(name) = rest("/console/delete-repository/") {
        return browse::delete_repository(ctx, &name, form).await;
    }
    if let Some(name) = rest("/console/lifecycle/") {
        return browse::lifecycle_preview(ctx, &name).await;
    }
    if let Some(user) = rest("/console/iam/users/") {
        return iam_pages::post(ctx, &user, form).await;
    }
    match path {
        "/console/registry-policy" => policy::post(ctx, &policy::Target::Registry, form).await,
        "/console/playground" => tools::run_playground(ctx, form).await,
        "/console/decode" => tools::decode(ctx, form).await,
        _ => not_found(ctx),
    }
}

fn query_params(params: &[(&str, &str)]) -> Params {
    Params::from_pairs(
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// What a signed-in page needs.
pub struct Ctx<'a> {
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

    /// An IAM operation (query-protocol parameters) as the signed-in principal.
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let params = query_params(params);
        crate::iam::handle(&self.query_call(&params), action).await
    }

    /// An STS operation as the signed-in principal.
    async fn sts(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let params = query_params(params);
        crate::sts::handle(&self.query_call(&params), action).await
    }

    fn query_call<'c>(&'c self, params: &'c Params) -> crate::query::Call<'c> {
        crate::query::Call {
            app: self.app,
            caller: self.caller,
            origin: self.origin,
            params,
        }
    }

    /// The signed-in principal's own registry, for calls into the ECR handlers that are
    /// not operations of their own (the console's repository search).
    fn registry_call<'c>(&'c self, input: &'c Value) -> crate::ecr::EcrCall<'c> {
        crate::ecr::EcrCall {
            app: self.app,
            caller: self.caller,
            origin: self.origin,
            input,
            registry: self.caller.account.to_string(),
            repository: None,
        }
    }

    /// Whether the signed-in principal may do `action` on `resource` (for what the
    /// console shows beyond the APIs' own answers: the access diff, who-can, activity).
    fn may(&self, action: &str, resource: &str) -> bool {
        crate::auth::authorizer::authorize(
            self.app,
            self.caller,
            self.origin,
            &crate::auth::authorizer::Authorization {
                action,
                resource,
                resource_account: &self.caller.account,
                resource_policies: &[],
                context: &[],
                resource_must_allow: false,
            },
        )
        .is_ok()
    }

    /// A page saying what the signed-in principal may not see, and why.
    fn needs(&self, title: &str, action: &str, what: &str) -> Response<Body> {
        html(
            StatusCode::FORBIDDEN,
            page(
                title,
                Some((self.caller, self.csrf)),
                &format!(
                    r#"<h1>{}</h1><div class="error" role="alert"><p>{} needs <code>{}</code>, which {} is not allowed.</p></div>"#,
                    esc(title),
                    esc(what),
                    esc(action),
                    esc(self.caller.arn())
                ),
            ),
        )
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

pub(crate) fn not_found(ctx: &Ctx<'_>) -> Response<Body> {
    html(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            Some((ctx.caller, ctx.csrf)),
            "<h1>Not found</h1><p>No console page here.</p>",
        ),
    )
}

pub(crate) fn forbidden(why: &str) -> Response<Body> {
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

/// A form body (at most 64 KiB: a policy of 10,240 characters, percent-encoded).
pub(crate) async fn form(req: Request<Body>) -> std::collections::HashMap<String, String> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 << 10)
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
                Some(p) if crate::iam::passwords::verify(&password, &p.password_hash) => {
                    match password_state(app, &p, now).await {
                        PasswordState::Good => {}
                        PasswordState::MustChange(why) => {
                            return change_password_page(&account.id, &p.user, why, None)
                        }
                        PasswordState::Expired => {
                            return sign_in_page(Some(
                                "Your password has expired and this account does not let users set a new one: ask an administrator to reset it.",
                            ))
                        }
                    }
                    Claims {
                        a: account.id.clone(),
                        u: Some(p.user),
                        k: None,
                        i: now,
                        e: now + session::LIFETIME,
                        c: crate::ids::unique_id(""),
                    }
                }
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
    signed_in(app, &claims, secure)
}

/// The answer that starts a session: its cookie, and the way to the repositories.
fn signed_in(app: &App, claims: &Claims, secure: bool) -> Response<Body> {
    let mut r = redirect("/console/repositories");
    let cookie = session::set_cookie(
        &session::seal(&app.token_key, claims),
        session::LIFETIME,
        secure,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Whether a password that matched may sign in now.
enum PasswordState {
    Good,
    /// A new one must be chosen first (the reset an administrator asked for, or an
    /// expired password the user may replace), and why.
    MustChange(&'static str),
    /// Expired, and the account's policy does not let the user replace it (HardExpiry).
    Expired,
}

async fn password_state(app: &App, p: &berth_store::LoginProfile, now: i64) -> PasswordState {
    if p.reset_required {
        return PasswordState::MustChange("An administrator asked you to choose a new password.");
    }
    let policy = app
        .store
        .password_policy(&p.account)
        .await
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str::<crate::iam::passwords::PasswordPolicy>(&t).ok());
    match policy {
        Some(policy)
            if policy
                .max_password_age
                .is_some_and(|days| now >= p.changed + days * 86_400) =>
        {
            if policy.hard_expiry {
                PasswordState::Expired
            } else {
                PasswordState::MustChange("Your password has expired: choose a new one.")
            }
        }
        _ => PasswordState::Good,
    }
}

/// The page asking for a new password before signing in.
fn change_password_page(
    account: &str,
    user: &str,
    why: &str,
    error: Option<&str>,
) -> Response<Body> {
    let alert = error
        .map(|e| format!(r#"<div class="error" role="alert"><p>{}</p></div>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Choose a new password</h1><p>{}</p>{alert}
<form id="change-password-form" method="post" action="/console/password" class="card">
<input type="hidden" name="account" value="{}"><input type="hidden" name="user" value="{}">
<label>Current password<input name="old" type="password" autocomplete="current-password" required></label>
<label>New password<input name="new" type="password" autocomplete="new-password" required></label>
<label>New password again<input name="again" type="password" autocomplete="new-password" required></label>
<button type="submit">Change password and sign in</button>
</form>"#,
        esc(why),
        esc(account),
        esc(user)
    );
    html(StatusCode::OK, page("Choose a new password", None, &body))
}

/// A user whose password must change sets a new one (as `iam:ChangePassword`, with the
/// old password proving who it is), then is signed in.
async fn change_password(app: &App, peer: SocketAddr, req: Request<Body>) -> Response<Body> {
    let secure = secure(app, &req);
    let client = app.client_ip(peer.ip(), req.headers());
    let transport = req
        .extensions()
        .get::<crate::serve::connections::Transport>()
        .copied();
    let headers = req.headers().clone();
    let f = form(req).await;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (account, user, old, new) = (get("account"), get("user"), get("old"), get("new"));
    let now = crate::ids::now();
    let profile = app
        .store
        .login_profile(&account, &user)
        .await
        .ok()
        .flatten();
    let Some(profile) = profile.filter(|p| crate::iam::passwords::verify(&old, &p.password_hash))
    else {
        crate::auth::failures::record(
            app,
            client,
            "console_bad_password",
            "console password change refused",
        );
        return sign_in_page(Some(
            "Sign-in failed: the account, user name and password (or the access key) do not match.",
        ));
    };
    let why = "Choose a new password.";
    if new != get("again") {
        return change_password_page(
            &account,
            &profile.user,
            why,
            Some("The two new passwords differ."),
        );
    }
    // The user as a caller, as its session would make it (which a pending reset refuses).
    let key = berth_store::AccessKey {
        id: String::new(),
        secret: String::new(),
        account: account.clone(),
        user: Some(profile.user.clone()),
        status: berth_store::KeyStatus::Active,
        created: profile.created,
    };
    let Ok(caller) = crate::auth::authenticate::caller_for(
        app,
        "",
        &crate::auth::cache::Credential::Key(key),
        now,
    )
    .await
    else {
        return sign_in_page(Some("The registry cannot be reached right now; try again."));
    };
    let origin = app.origin(
        peer.ip(),
        transport.as_ref(),
        &headers,
        crate::ids::request_id(),
        now,
        app.config.region.clone(),
    );
    let params = Params::from_pairs(vec![
        ("OldPassword".into(), old.clone()),
        ("NewPassword".into(), new.clone()),
    ]);
    let call = crate::query::Call {
        app,
        caller: &caller,
        origin: &origin,
        params: &params,
    };
    if let Err(e) = crate::iam::handle(&call, "ChangePassword").await {
        let m = format!("{}: {}", e.code, e.message);
        return change_password_page(&account, &profile.user, why, Some(&m));
    }
    // Signed in from after the change (sessions older than a change are refused).
    let now = crate::ids::now();
    let claims = Claims {
        a: account,
        u: Some(profile.user),
        k: None,
        i: now,
        e: now + session::LIFETIME,
        c: crate::ids::unique_id(""),
    };
    signed_in(app, &claims, secure)
}

pub(crate) fn text<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn time(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(t) => crate::ids::iso8601(t as i64),
        None => String::new(),
    }
}

pub(crate) fn size(bytes: f64) -> String {
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

pub(crate) fn percent_decode(s: &str) -> String {
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
