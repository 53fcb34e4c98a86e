//! The web page (embedded assets), its JSON read API and its actions.

use serde_json::{Value, json};

use super::api::{error_response, method_not_allowed};
use super::{App, Request, Response, auth};
use crate::store::{AlertFilter, StatusFilter, StatusPart, Store};

/// Default and largest look-back of the history and alert listings, in hours.
const DEFAULT_HOURS: u32 = 24;
const MAX_HOURS: u32 = 24 * 366;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn hours(url: &str) -> Result<u32, Response> {
    match query_param(url, "hours") {
        None => Ok(DEFAULT_HOURS),
        Some(v) => match v.parse::<u32>() {
            Ok(h) if (1..=MAX_HOURS).contains(&h) => Ok(h),
            _ => Err(Response::error(
                400,
                &format!("\"hours\" should be 1 to {MAX_HOURS}"),
            )),
        },
    }
}

fn id(s: &str) -> Result<i64, Response> {
    s.parse::<i64>()
        .map_err(|_| Response::error(404, "Not found: the id should be a number"))
}

fn asset(content_type: &str, body: &str) -> Response {
    Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("Cache-Control".into(), "no-cache".into()),
            ("X-Content-Type-Options".into(), "nosniff".into()),
            ("Content-Security-Policy".into(), "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn answer<T: serde::Serialize>(result: crate::Result<Option<T>>) -> Response {
    match result {
        Ok(Some(v)) => Response::json_of(200, &v),
        Ok(None) => Response::error(404, "Not found: no such server or service"),
        Err(e) => error_response(e),
    }
}

pub(super) fn route(app: &App, req: &Request<'_>, path: &str) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    match path {
        "/" | "/ui" | "/ui/" | "/ui/index.html" if get => {
            return asset("text/html; charset=utf-8", INDEX_HTML);
        }
        "/ui/app.js" if get => return asset("text/javascript; charset=utf-8", APP_JS),
        "/ui/style.css" if get => return asset("text/css; charset=utf-8", STYLE_CSS),
        "/" | "/ui" | "/ui/" | "/ui/index.html" | "/ui/app.js" | "/ui/style.css" => {
            return method_not_allowed("GET");
        }
        "/ui/api/info" if get => {
            return Response::json(
                200,
                &json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "actions": app.config.ui.password.is_some(),
                    "alert_plugins": app.config.alert_plugins.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
                }),
            );
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/ui/api/item/") {
        return action(app, req, rest);
    }
    if path.trim_end_matches('/') == "/ui/api/hosts" {
        return add_host(app, req);
    }
    if path.trim_end_matches('/') == "/ui/api/test-alert" {
        if req.method != "POST" {
            return method_not_allowed("POST");
        }
        if let Some(r) = auth::guard_action(req, &app.config.ui) {
            return r;
        }
        let plugins: Vec<Value> = crate::alerts::send_test_alert(&app.config)
            .into_iter()
            .map(|o| json!({"plugin": o.plugin, "ok": o.failure.is_none(), "failure": o.failure}))
            .collect();
        return Response::json(200, &json!({ "plugins": plugins }));
    }
    let Some(rest) = path.strip_prefix("/ui/api/status") else {
        return Response::error(404, "Not found");
    };
    if !get {
        return method_not_allowed("GET");
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let store = &app.store;
    let grace = app.config.grace;
    let lag = app.supervisor.lag();
    let status = |filter| match status_json(store, filter, grace, lag) {
        Ok(Some(body)) => Response::json_text(200, body),
        Ok(None) => Response::error(404, "Not found: no such server or service"),
        Err(e) => error_response(e),
    };
    match parts.as_slice() {
        [] => status(StatusFilter::All),
        ["server", sid] => match id(sid) {
            Ok(i) => status(StatusFilter::Server(i)),
            Err(r) => r,
        },
        ["service", sid] => match id(sid) {
            Ok(i) => status(StatusFilter::Service(i)),
            Err(r) => r,
        },
        ["service", sid, "states"] => {
            let (i, h) = match (id(sid), hours(req.url)) {
                (Ok(i), Ok(h)) => (i, h),
                (Err(r), _) | (_, Err(r)) => return r,
            };
            let groups = matches!(query_param(req.url, "groups"), Some("1" | "true"));
            answer(store.states(i, h, groups))
        }
        ["alerts", tail @ ..] => {
            let h = match hours(req.url) {
                Ok(h) => h,
                Err(r) => return r,
            };
            let filter = match tail {
                [] => AlertFilter::All,
                ["server", sid] => match id(sid) {
                    Ok(i) => AlertFilter::Server(i),
                    Err(r) => return r,
                },
                ["service", sid] => match id(sid) {
                    Ok(i) => AlertFilter::Service(i),
                    Err(r) => return r,
                },
                _ => return Response::error(404, "Not found"),
            };
            answer(store.alert_list(filter, h))
        }
        _ => Response::error(404, "Not found"),
    }
}

/// `DELETE /ui/api/item/{server,service}/<id>` and
/// `POST /ui/api/item/{server,service}/<id>/title` with `{"title": "..."}`.
fn action(app: &App, req: &Request<'_>, rest: &str) -> Response {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (kind, sid, rename) = match parts.as_slice() {
        [kind @ ("server" | "service"), sid] => (*kind, *sid, false),
        [kind @ ("server" | "service"), sid, "title"] => (*kind, *sid, true),
        _ => return Response::error(404, "Not found"),
    };
    let expected = if rename { "POST" } else { "DELETE" };
    if req.method != expected {
        return method_not_allowed(expected);
    }
    if let Some(r) = auth::guard_action(req, &app.config.ui) {
        return r;
    }
    let id = match id(sid) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let store = &app.store;
    let result = if rename {
        let body = match crate::protocol::parse_object(req.body) {
            Ok(b) => b,
            Err(e) => return error_response(e),
        };
        let title = match body.get("title").and_then(Value::as_str).map(str::trim) {
            Some(t)
                if !t.is_empty()
                    && t.chars().count() <= 128
                    && !t.chars().any(char::is_control) =>
            {
                t.to_owned()
            }
            _ => {
                return Response::error(
                    400,
                    "Data: \"title\" should be a string of 1 to 128 characters",
                );
            }
        };
        if kind == "server" {
            store.rename_server(id, &title)
        } else {
            store.rename_service(id, &title)
        }
    } else {
        let r = if kind == "server" {
            store.delete_server(id)
        } else {
            store.delete_service(id)
        };
        if let Ok(applied) = &r {
            app.supervisor.removed(applied.removed_services.clone());
        }
        r
    };
    match result {
        Ok(_) => Response::json(200, &json!({"ok": 1})),
        Err(e) => error_response(e),
    }
}

/// `POST /ui/api/hosts` with `{"name", "key"?}`: registers a host with its
/// key (a new one when none is given), also when `registration = closed`.
/// Answers `{"ok": 1, "id", "name", "key"}`; 409 when the name is taken.
fn add_host(app: &App, req: &Request<'_>) -> Response {
    if req.method != "POST" {
        return method_not_allowed("POST");
    }
    if let Some(r) = auth::guard_action(req, &app.config.ui) {
        return r;
    }
    let body = match crate::protocol::parse_object(req.body) {
        Ok(b) => b,
        Err(e) => return error_response(e),
    };
    let key = match body.get("key").filter(|k| !k.is_null()) {
        Some(k) => k.clone(),
        None => match crate::secret::new_key() {
            Ok(k) => Value::String(k),
            Err(e) => return error_response(e),
        },
    };
    let name = body.get("name").cloned().unwrap_or(Value::Null);
    let server = json!({"server": {"name": name, "key": key}});
    // The ingest API's own checks, so a host added here can always report;
    // its messages name the fields of this body.
    let server = match server.as_object().map(crate::protocol::ServerId::from_json) {
        Some(Ok(s)) => s,
        Some(Err(crate::Error::Invalid(m))) => {
            let m = m
                .replace("\"server.name\"", "\"name\"")
                .replace("\"server.key\"", "\"key\"");
            return Response::error(400, &m);
        }
        Some(Err(e)) => return error_response(e),
        None => return Response::error(500, "Internal server error"),
    };
    match app.store.add_server(server.clone()) {
        Ok(applied) => match applied.server_id {
            Some(id) => Response::json(
                200,
                &json!({"ok": 1, "id": id, "name": server.name, "key": server.key}),
            ),
            None => Response::error(
                409,
                &format!("A server named {:?} already exists", server.name),
            ),
        },
        Err(e) => error_response(e),
    }
}

/// The JSON of [`crate::store::StatusView`], written server by server as
/// [`Store::status_each`] hands them out: the whole view of 10,000 services
/// never exists at once, only its text.
fn status_json(
    store: &Store,
    filter: StatusFilter,
    grace: u32,
    lag: f64,
) -> crate::error::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut first = true;
    let found = store.status_each(filter, grace, lag, |part| {
        let written = match part {
            StatusPart::Stats(stats) => {
                body.extend_from_slice(b"{\"stats\":");
                let w = serde_json::to_writer(&mut body, &stats);
                body.extend_from_slice(b",\"servers\":[");
                w
            }
            StatusPart::Server(server) => {
                if !first {
                    body.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut body, &server)
            }
        };
        written.map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))
    })?;
    body.extend_from_slice(b"]}");
    Ok(found.then_some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param("/x?hours=5&groups=1", "groups"), Some("1"));
        assert_eq!(query_param("/x?hours=5", "groups"), None);
        assert_eq!(query_param("/x", "hours"), None);
        assert_eq!(hours("/x?hours=48").ok(), Some(48));
        assert!(hours("/x?hours=0").is_err());
        assert!(hours("/x?hours=abc").is_err());
    }
}
