//! The JSON read API under `/ui/api/` (and, later, the page itself).

use super::api::{error_response, method_not_allowed};
use super::{App, Request, Response};
use crate::store::{AlertFilter, StatusFilter};

/// Default and largest look-back of the history and alert listings, in hours.
const DEFAULT_HOURS: u32 = 24;
const MAX_HOURS: u32 = 24 * 366;

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

pub(super) fn route(app: &App, req: &Request<'_>, path: &str) -> Response {
    if path == "/" {
        if req.method != "GET" && req.method != "HEAD" {
            return method_not_allowed("GET");
        }
        let mut r = Response {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: b"overc server: the read API is at /ui/api/status/\n".to_vec(),
        };
        r.headers.push(("Cache-Control".into(), "no-store".into()));
        return r;
    }
    let Some(rest) = path.strip_prefix("/ui/api/status") else {
        return Response::error(404, "Not found");
    };
    if req.method != "GET" {
        return method_not_allowed("GET");
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let store = &app.store;
    let grace = app.config.grace;
    let lag = app.supervisor.lag();
    let result = match parts.as_slice() {
        [] => store.status(StatusFilter::All, grace, lag),
        ["server", sid] => match id(sid) {
            Ok(i) => store.status(StatusFilter::Server(i), grace, lag),
            Err(r) => return r,
        },
        ["service", sid] => match id(sid) {
            Ok(i) => store.status(StatusFilter::Service(i), grace, lag),
            Err(r) => return r,
        },
        ["service", sid, "states"] => {
            let (i, h) = match (id(sid), hours(req.url)) {
                (Ok(i), Ok(h)) => (i, h),
                (Err(r), _) | (_, Err(r)) => return r,
            };
            let groups = matches!(query_param(req.url, "groups"), Some("1" | "true"));
            store.states(i, h, groups)
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
            store.alert_list(filter, h)
        }
        _ => return Response::error(404, "Not found"),
    };
    match result {
        Ok(Some(v)) => Response::json(200, &v),
        Ok(None) => Response::error(404, "Not found: no such server or service"),
        Err(e) => error_response(e),
    }
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
