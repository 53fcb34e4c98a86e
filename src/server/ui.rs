//! The web page (embedded assets), its JSON read API and its actions.

use serde_json::{Value, json};

use super::api::{error_response, method_not_allowed};
use super::{App, Request, Response, auth};
use crate::engine::Engine;
use crate::store::{AlertFilter, StatusFilter, StatusPart};

/// Default and largest look-back of the history and alert listings, in hours.
const DEFAULT_HOURS: f64 = 24.0;
const MAX_HOURS: f64 = 24.0 * 366.0;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Every value of the query parameter `name`, in order.
fn query_params<'a>(url: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_param<'a>(url: &'a str, name: &'a str) -> Option<&'a str> {
    query_params(url, name).next()
}

/// `hours=`: a look-back in hours, fractions allowed (`0.5`), as the
/// original took it.
fn hours(url: &str) -> Result<f64, Response> {
    match query_param(url, "hours") {
        None => Ok(DEFAULT_HOURS),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(h) if h > 0.0 && h <= MAX_HOURS => Ok(h),
            _ => Err(Response::error(
                400,
                &format!("\"hours\" should be a number above 0 and at most {MAX_HOURS}"),
            )),
        },
    }
}

/// `groups=`: folding of the history, on with `yes`, `1`, `true` (the
/// original took any value but an empty one), off when absent or `no`,
/// `0`, `false`, `off`, `""`. With it, each `expand=A-B` is a range of
/// record ids to leave unfolded (a group's `"group"` value). `None`: no
/// folding.
fn folding(url: &str) -> Result<Option<Vec<(i64, i64)>>, Response> {
    let on = query_param(url, "groups").is_some_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "off"
        )
    });
    if !on {
        return Ok(None);
    }
    let range = |v: &str| -> Option<(i64, i64)> {
        let (a, b) = v.trim().split_once('-')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    query_params(url, "expand")
        .map(|v| {
            range(v).ok_or_else(|| {
                Response::error(
                    400,
                    "\"expand\" should be a range of record ids FIRST-LAST, as a group's \"group\"",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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
    if let Some(rest) = path.trim_end_matches('/').strip_prefix("/ui/api/silences") {
        return silences(app, req, rest);
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
        let plugins: Vec<Value> = app
            .engine
            .send_test_alert()
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
    let store = app.store();
    let status = |filter| match status_json(&app.engine, filter) {
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
            match folding(req.url) {
                Ok(fold) => answer(store.states(i, h, fold.as_deref())),
                Err(r) => r,
            }
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
    if let ["service", sid, "ack"] = parts.as_slice() {
        return ack(app, req, sid);
    }
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
    let engine = &app.engine;
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
            engine.rename_server(id, &title)
        } else {
            engine.rename_service(id, &title)
        }
    } else if kind == "server" {
        engine.delete_server(id)
    } else {
        engine.delete_service(id)
    };
    match result {
        Ok(_) => Response::json(200, &json!({"ok": 1})),
        Err(e) => error_response(e),
    }
}

/// Who the page's actions are done by: the login's user name.
fn page_user(app: &App) -> &str {
    app.config
        .ui
        .username
        .as_deref()
        .unwrap_or(auth::DEFAULT_USER)
}

/// `POST /ui/api/item/service/<id>/ack` with `{"comment"?}` acknowledges
/// the service's problem (409 when it has none); `DELETE` removes the ack.
fn ack(app: &App, req: &Request<'_>, sid: &str) -> Response {
    if !matches!(req.method, "POST" | "DELETE") {
        return method_not_allowed("POST, DELETE");
    }
    if let Some(r) = auth::guard_action(req, &app.config.ui) {
        return r;
    }
    let id = match id(sid) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let result = if req.method == "DELETE" {
        app.engine.unack(id)
    } else {
        let comment = if req.body.trim_ascii().is_empty() {
            Ok(String::new())
        } else {
            crate::protocol::parse_object(req.body).and_then(|body| {
                match body.get("comment").filter(|c| !c.is_null()) {
                    None => Ok(String::new()),
                    Some(Value::String(c)) => crate::protocol::check_comment(c, "comment"),
                    Some(_) => Err(crate::Error::Invalid(
                        "Data: \"comment\" should be a string".into(),
                    )),
                }
            })
        };
        comment.and_then(|c| app.engine.ack(id, page_user(app), &c))
    };
    match result {
        Ok(()) => Response::json(200, &json!({"ok": 1})),
        Err(e) => error_response(e),
    }
}

/// `GET /ui/api/silences` (active ones and those ended in the last 24 h),
/// `POST /ui/api/silences` to set one, `DELETE /ui/api/silences/<id>` to
/// end one.
fn silences(app: &App, req: &Request<'_>, rest: &str) -> Response {
    if rest.is_empty() {
        return match req.method {
            "GET" | "HEAD" => match app.engine.silences() {
                Ok(list) => Response::json_of(200, &list),
                Err(e) => error_response(e),
            },
            "POST" => {
                if let Some(r) = auth::guard_action(req, &app.config.ui) {
                    return r;
                }
                let now = app.engine.clock().now();
                let silence = crate::protocol::parse_object(req.body)
                    .and_then(|body| page_silence(&body, now, page_user(app)));
                match silence.and_then(|s| app.engine.silence(s)) {
                    Ok(id) => Response::json(200, &json!({"ok": 1, "id": id})),
                    Err(e) => error_response(e),
                }
            }
            _ => method_not_allowed("GET, POST"),
        };
    }
    let Some(sid) = rest.strip_prefix('/').filter(|s| !s.contains('/')) else {
        return Response::error(404, "Not found");
    };
    if req.method != "DELETE" {
        return method_not_allowed("DELETE");
    }
    if let Some(r) = auth::guard_action(req, &app.config.ui) {
        return r;
    }
    match id(sid).map(|id| app.engine.end_silence(id)) {
        Ok(Ok(())) => Response::json(200, &json!({"ok": 1})),
        Ok(Err(e)) => error_response(e),
        Err(r) => r,
    }
}

/// The silence a page user asks for: `{"server": PATTERN, "service"?:
/// PATTERN, "duration"?: SECONDS | "ends"?: ISO 8601, "comment": TEXT}`,
/// from `now`, for at most a week (as a host's own).
fn page_silence(
    body: &serde_json::Map<String, Value>,
    now: crate::clock::Millis,
    author: &str,
) -> crate::Result<crate::policy::Silence> {
    use crate::policy::{MAX_SILENCE_SECONDS, check_pattern, check_silence_seconds};
    let bad = |m: String| crate::Error::Invalid(format!("Data: {m}"));
    let pattern = |key: &str| -> crate::Result<Option<String>> {
        match body.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(Value::String(p)) => check_pattern(p)
                .map(|()| Some(p.clone()))
                .map_err(|why| bad(format!("\"{key}\" {why}"))),
            Some(_) => Err(bad(format!("\"{key}\" should be a string (a pattern)"))),
        }
    };
    let server = pattern("server")?.ok_or_else(|| bad("\"server\" key is missing".into()))?;
    let service = pattern("service")?;
    let length = || {
        bad(format!(
            "a silence should last from 1 second to 7 days ({MAX_SILENCE_SECONDS} s)"
        ))
    };
    let duration = body.get("duration").filter(|v| !v.is_null());
    let ends = body.get("ends").filter(|v| !v.is_null());
    let ends = match (duration, ends) {
        (Some(d), None) => {
            let s = d
                .as_u64()
                .and_then(|s| check_silence_seconds(s).ok())
                .ok_or_else(length)?;
            now + i64::from(s) * 1000
        }
        (None, Some(e)) => {
            let t = e
                .as_str()
                .and_then(crate::clock::parse_iso8601)
                .ok_or_else(|| {
                    bad("\"ends\" should be an ISO 8601 time with its offset, e.g. 2026-11-24T18:00:00Z".into())
                })?;
            if t <= now || t - now > i64::from(MAX_SILENCE_SECONDS) * 1000 {
                return Err(length());
            }
            t
        }
        (Some(_), Some(_)) => return Err(bad("give \"duration\" or \"ends\", not both".into())),
        (None, None) => {
            return Err(bad(
                "\"duration\" (seconds) or \"ends\" (ISO 8601) is missing".into(),
            ));
        }
    };
    let comment = match body.get("comment") {
        Some(Value::String(c)) => crate::protocol::check_comment(c, "comment")?,
        Some(v) if !v.is_null() => return Err(bad("\"comment\" should be a string".into())),
        _ => String::new(),
    };
    if comment.is_empty() {
        return Err(bad(
            "\"comment\" should say why (it is shown with the silence)".into(),
        ));
    }
    Ok(crate::policy::Silence {
        id: 0,
        server,
        service,
        starts: now,
        ends,
        comment,
        author: author.to_owned(),
    })
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
    match app.engine.add_server(server.clone()) {
        Ok(added) => match added {
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
/// [`Engine::status_each`] hands them out: the whole view of 10,000 services
/// never exists at once, only its text.
fn status_json(engine: &Engine, filter: StatusFilter) -> crate::error::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut first = true;
    let found = engine.status_each(filter, |part| {
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
        assert_eq!(hours("/x?hours=48").ok(), Some(48.0));
        assert_eq!(hours("/x?hours=0.5").ok(), Some(0.5));
        assert_eq!(hours("/x").ok(), Some(24.0));
        for bad in [
            "0", "-1", "-0.5", "abc", "NaN", "nan", "inf", "-inf", "1e9", "",
        ] {
            assert!(hours(&format!("/x?hours={bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_and_expand() {
        for on in ["yes", "1", "true", "TRUE", "Yes", "on"] {
            assert_eq!(
                folding(&format!("/x?groups={on}")).ok(),
                Some(Some(vec![])),
                "{on}"
            );
        }
        for off in [
            "/x",
            "/x?groups=",
            "/x?groups=0",
            "/x?groups=no",
            "/x?groups=false",
        ] {
            assert_eq!(folding(off).ok(), Some(None), "{off}");
        }
        assert_eq!(
            folding("/x?groups=yes&expand=3-7&hours=1&expand=12-10").ok(),
            Some(Some(vec![(3, 7), (12, 10)]))
        );
        assert!(folding("/x?groups=yes&expand=3").is_err());
        assert!(folding("/x?groups=yes&expand=a-b").is_err());
        // Without folding there is nothing to expand.
        assert_eq!(folding("/x?expand=junk").ok(), Some(None));
    }
}
