//! Who may use the console: whoever has the login token, kept in the store's folder (mode
//! 0600). A browser logs in once and gets the token as an HttpOnly, SameSite=Strict cookie;
//! every state change also needs the CSRF token the page carries, so another site cannot
//! make a logged-in browser press a button. Scripts may send `Authorization: Bearer <token>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const COOKIE: &str = "sidekick_console";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Clone)]
pub struct Keys {
    token: String,
    csrf: String,
    /// Served over HTTPS: the cookie is marked `Secure`, never sent over plain HTTP.
    secure: bool,
}

impl Keys {
    pub fn new(token: String) -> Keys {
        let csrf = hex(&Sha256::digest(format!("sidekick console csrf:{token}").as_bytes())[..16]);
        Keys { token, csrf, secure: false }
    }

    /// Marks the login cookie `Secure` (the console serves HTTPS).
    pub fn secure(mut self, secure: bool) -> Keys {
        self.secure = secure;
        self
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn is_token(&self, candidate: &str) -> bool {
        same(candidate.as_bytes(), self.token.as_bytes())
    }

    /// How the request proves it may look: the cookie or a bearer token.
    pub fn login_of(&self, headers: &HeaderMap) -> Option<Login> {
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.is_token(t.trim())) {
            return Some(Login::Bearer);
        }
        cookie(headers, COOKIE).filter(|c| self.is_token(c)).map(|_| Login::Cookie)
    }

    /// A browser's state change also carries the CSRF token; a bearer token needs none (a
    /// browser never adds that header by itself).
    pub fn may_change(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match self.login_of(headers) {
            None => Err(Refusal::NotLoggedIn),
            Some(Login::Bearer) => Ok(()),
            Some(Login::Cookie) => {
                let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                if same(sent.as_bytes(), self.csrf.as_bytes()) {
                    Ok(())
                } else {
                    Err(Refusal::NoCsrf)
                }
            }
        }
    }

    /// The `Set-Cookie` header that logs a browser in.
    pub fn login_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}", self.token)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Cookie,
    Bearer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotLoggedIn,
    NoCsrf,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotLoggedIn => {
                (StatusCode::UNAUTHORIZED, "log in first: open the console's URL with its token (printed when it first started)")
                    .into_response()
            }
            Refusal::NoCsrf => {
                (StatusCode::FORBIDDEN, "refused: this change did not come from the console's page (no CSRF token); reload the page")
                    .into_response()
            }
        }
    }
}

/// A handler's proof that the request may look (a page or a state read).
pub struct Viewer;

impl<S: Send + Sync> FromRequestParts<S> for Viewer
where
    Keys: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = Keys::from_ref(state);
        match keys.login_of(&parts.headers) {
            Some(_) => Ok(Viewer),
            // A person opening the page is sent to log in; a script is told.
            None if parts.uri.path() == "/" => Err(Redirect::to("/login").into_response()),
            None => Err(Refusal::NotLoggedIn.into_response()),
        }
    }
}

/// A handler's proof that the request may change something.
pub struct Changer;

impl<S: Send + Sync> FromRequestParts<S> for Changer
where
    Keys: FromRef<S>,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Keys::from_ref(state).may_change(&parts.headers).map(|()| Changer)
    }
}

pub use axum::extract::FromRef;

/// The login token in `dir/console.token`, made (random, mode 0600) when there is none;
/// `true` when it was made now, so it is printed once.
pub fn load_or_create(dir: &Path) -> std::io::Result<(String, bool)> {
    let path = dir.join("console.token");
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().len() >= 32 => return Ok((token.trim().to_string(), false)),
        Ok(_) => {
            return Err(std::io::Error::other(format!("{} is too short to be a login token; delete it to get a new one", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let token = hex(&rand::random::<[u8; 24]>());
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok((token, true))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_token_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (token, made) = load_or_create(dir.path()).unwrap();
        assert!(made && token.len() == 48);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("console.token")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(dir.path()).unwrap(), (token, false));
    }

    #[test]
    fn a_change_needs_the_cookie_and_the_csrf_token_or_a_bearer_token() {
        let keys = Keys::new("t".repeat(48));
        let cookie = format!("other=1; {COOKIE}={}", "t".repeat(48));
        assert_eq!(keys.may_change(&headers(&[])), Err(Refusal::NotLoggedIn));
        assert_eq!(keys.may_change(&headers(&[("cookie", &cookie)])), Err(Refusal::NoCsrf));
        assert_eq!(keys.may_change(&headers(&[("cookie", &cookie), (CSRF_HEADER, "wrong")])), Err(Refusal::NoCsrf));
        assert_eq!(keys.may_change(&headers(&[("cookie", &cookie), (CSRF_HEADER, keys.csrf())])), Ok(()));
        let bearer = format!("Bearer {}", "t".repeat(48));
        assert_eq!(keys.may_change(&headers(&[("authorization", &bearer)])), Ok(()));
        assert_eq!(keys.login_of(&headers(&[("cookie", "sidekick_console=guess")])), None);
    }
}
