//! HTTP Basic login for the page, its API and /metrics, and the guards on
//! actions: read-only without a password, and no cross-site requests.

use sha2::{Digest, Sha256};

use super::{Request, Response};
use crate::basic_auth::basic_credentials;
use crate::config::UiConfig;
use crate::secret::constant_time_eq;

/// The header every action must carry. A cross-site form cannot send it, and
/// a cross-site script cannot either without a CORS preflight we never grant.
pub const ACTION_HEADER: &str = "X-Overc-Action";

/// User name expected when `[ui] password` is set without `username`.
pub const DEFAULT_USER: &str = "admin";

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// `Some(401)` when a password is configured and the request lacks the login.
pub(super) fn require_login(req: &Request<'_>, ui: &UiConfig) -> Option<Response> {
    let password = ui.password.as_deref()?;
    let user = ui.username.as_deref().unwrap_or(DEFAULT_USER);
    let given = req
        .header("Authorization")
        .and_then(basic_credentials)
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(given) = given {
        if let Some((u, p)) = given.split_once(':') {
            // Compare digests so neither timing nor length tells what matched.
            let user_ok = constant_time_eq(&digest(u.as_bytes()), &digest(user.as_bytes()));
            let pass_ok = constant_time_eq(&digest(p.as_bytes()), &digest(password.as_bytes()));
            if user_ok & pass_ok {
                return None;
            }
        }
        log::warn!("rejected a login to the page from {}", req.remote);
    }
    let mut r = Response::error(401, "Login required");
    r.headers.push((
        "WWW-Authenticate".into(),
        "Basic realm=\"overc\", charset=\"UTF-8\"".into(),
    ));
    Some(r)
}

/// `Some(403)` when actions are disabled or the request may come from another site.
pub(super) fn guard_action(req: &Request<'_>, ui: &UiConfig) -> Option<Response> {
    if ui.password.is_none() {
        return Some(Response::error(
            403,
            "The page is read-only: set [ui] username and password in the server config to enable actions",
        ));
    }
    if req.header(ACTION_HEADER).is_none() {
        return Some(Response::error(
            403,
            &format!("Actions need the {ACTION_HEADER} header"),
        ));
    }
    if let Some(site) = req.header("Sec-Fetch-Site") {
        if !matches!(site, "same-origin" | "none") {
            return Some(Response::error(403, "Cross-site requests are refused"));
        }
    }
    if let (Some(origin), Some(host)) = (req.header("Origin"), req.header("Host")) {
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Some(Response::error(403, "Cross-site requests are refused"));
        }
    }
    None
}
