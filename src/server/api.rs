//! The ingest endpoints of the OverC protocol: `/api/ping`,
//! `/api/set/service/status`, `/api/set/alerts`; and a host's own silences:
//! `/api/set/silence`, `/api/set/unsilence`.

use super::{App, Request, Response};
use crate::error::Error;
use crate::protocol::{AlertReport, HostSilence, HostUnsilence, Ping, StatusReport, parse_object};

/// Maps a library error to the protocol's status codes without leaking
/// internals: storage details go to the log, the client gets a retry hint.
pub(super) fn error_response(e: Error) -> Response {
    match e {
        Error::Invalid(m) => Response::error(400, &m),
        Error::Forbidden(m) => Response::error(403, &m),
        Error::NotFound(m) => Response::error(404, &format!("Not found: {m}")),
        Error::Conflict(m) => Response::error(409, &m),
        e if e.is_storage() => {
            log::error!("storage unavailable: {e}");
            Response::error(503, "Storage unavailable; please retry")
        }
        other => {
            log::error!("internal error: {other}");
            Response::error(500, "Internal server error")
        }
    }
}

pub(super) fn method_not_allowed(allow: &str) -> Response {
    let mut r = Response::error(405, &format!("Method not allowed; use {allow}"));
    r.headers.push(("Allow".into(), allow.into()));
    r
}

pub(super) fn route(app: &App, req: &Request<'_>, path: &str) -> Response {
    let path = path.trim_end_matches('/');
    let endpoint = match path {
        "/api/ping"
        | "/api/set/service/status"
        | "/api/set/alerts"
        | "/api/set/silence"
        | "/api/set/unsilence" => path,
        _ => return Response::error(404, "Not found"),
    };
    if req.method != "POST" {
        return method_not_allowed("POST");
    }
    let engine = &app.engine;
    // The answers are constant: written as bytes, not built as JSON values.
    let result = match endpoint {
        "/api/ping" => parse_object(req.body)
            .and_then(|body| Ping::from_json(&body))
            .and_then(|p| engine.ping(p, req.remote))
            .map(|_| br#"{"pong":1}"#.to_vec()),
        "/api/set/service/status" => {
            let mut answer = None;
            statuses(app, std::slice::from_ref(req), |_, r| answer = Some(r));
            return answer.unwrap_or_else(|| Response::error(500, "Internal server error"));
        }
        "/api/set/silence" => parse_object(req.body).and_then(|body| {
            let id = engine.host_silence(HostSilence::from_json(&body)?, req.remote)?;
            Ok(format!(r#"{{"ok":1,"id":{id}}}"#).into_bytes())
        }),
        "/api/set/unsilence" => parse_object(req.body).and_then(|body| {
            let ended = engine.host_unsilence(HostUnsilence::from_json(&body)?, req.remote)?;
            Ok(serde_json::json!({"ok": 1, "ended": ended})
                .to_string()
                .into_bytes())
        }),
        _ => parse_object(req.body).and_then(|body| {
            engine.post_alerts(AlertReport::from_json(&body)?, req.remote)?;
            Ok(br#"{"ok":1}"#.to_vec())
        }),
    };
    match result {
        Ok(body) => Response::json_text(200, body),
        Err(e) => error_response(e),
    }
}

/// `/api/set/service/status` for many POSTs at once: the valid reports go
/// to the store together, so one wait covers them all. `answer` gets each
/// request's position and response, as [`route`] would give it, as soon as
/// it is known: refusals first, then each report once it is durable.
pub(super) fn statuses(
    app: &App,
    requests: &[Request<'_>],
    mut answer: impl FnMut(usize, Response),
) {
    let mut reports = Vec::with_capacity(requests.len());
    // Position among the requests of each valid report.
    let mut valid = Vec::with_capacity(requests.len());
    for (i, req) in requests.iter().enumerate() {
        match StatusReport::parse(req.body) {
            Ok(r) => {
                valid.push(i);
                reports.push((r, req.remote.to_owned()));
            }
            Err(e) => answer(i, error_response(e)),
        }
    }
    app.engine.report_each(reports, |k, result| {
        if let Some(&i) = valid.get(k) {
            answer(
                i,
                match result {
                    Ok(()) => Response::json_text(200, br#"{"ok":1}"#.to_vec()),
                    Err(e) => error_response(e),
                },
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_internal_errors_do_not_leak_details() {
        let r = error_response(Error::Storage(
            "disk I/O error at /var/lib/overc/overc.db".into(),
        ));
        assert_eq!(r.status, 503);
        assert_eq!(r.body_json()["error"], "Storage unavailable; please retry");
        let r = error_response(Error::Io(std::io::Error::other(
            "SELECT * FROM servers failed",
        )));
        assert_eq!(r.status, 500);
        assert_eq!(r.body_json()["error"], "Internal server error");
        assert_eq!(error_response(Error::Invalid("Data: x".into())).status, 400);
        assert_eq!(
            error_response(Error::Forbidden("Invalid server key".into())).status,
            403
        );
        assert_eq!(
            error_response(Error::NotFound("no such server".into())).status,
            404
        );
    }
}
