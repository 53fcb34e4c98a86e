//! `GET /metrics` in the Prometheus text exposition format.

use std::collections::HashSet;
use std::fmt::Write;

use super::App;
use crate::error::Result;
use crate::state::State;
use crate::store::{StatusFilter, StatusPart};

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v > 0.0 {
        "+Inf".into()
    } else if v < 0.0 {
        "-Inf".into()
    } else {
        "NaN".into()
    }
}

/// Renders every metric for the current data.
pub(super) fn render(app: &App) -> Result<String> {
    // One pass over the services, each family in its own buffer (the format
    // wants a family's series together), so the services' views are never
    // all in memory at once.
    let mut state = String::new();
    let mut overdue = String::new();
    let mut last_report = String::new();
    let mut perfdata = String::new();
    let mut flapping = String::new();
    head(
        &mut flapping,
        "overc_service_flapping",
        "gauge",
        "1 while a service flaps (its state changes are held back).",
    );
    let mut silenced = String::new();
    let mut acked = String::new();
    head(
        &mut silenced,
        "overc_service_silenced",
        "gauge",
        "1 when an active silence matches a service.",
    );
    head(
        &mut acked,
        "overc_service_acknowledged",
        "gauge",
        "1 when a service's problem is acknowledged.",
    );
    head(
        &mut state,
        "overc_service_state",
        "gauge",
        "Current state of a service: 0 OK, 1 WARN, 2 FAIL, 3 UNK.",
    );
    head(
        &mut overdue,
        "overc_service_overdue",
        "gauge",
        "1 when a service missed its deadline (last report + period + grace).",
    );
    head(
        &mut last_report,
        "overc_service_last_report_timestamp_seconds",
        "gauge",
        "Unix time of a service's last report.",
    );
    head(
        &mut perfdata,
        "overc_perfdata",
        "gauge",
        "Nagios performance data of a service's last report, in the plugin's unit.",
    );
    let now = app.engine.clock().now() / 1000;
    app.engine.status_each(StatusFilter::All, |part| {
        let StatusPart::Server(srv) = part else {
            return Ok(());
        };
        for svc in &srv.services {
            let Some(st) = &svc.state else { continue };
            let l = format!(
                "server=\"{}\",service=\"{}\"",
                escape_label(&srv.name),
                escape_label(&svc.name)
            );
            let v = State::parse(&st.state).unwrap_or(State::Unk).value();
            let _ = writeln!(state, "overc_service_state{{{l}}} {v}");
            let _ = writeln!(
                overdue,
                "overc_service_overdue{{{l}}} {}",
                u8::from(st.timed_out)
            );
            let _ = writeln!(
                last_report,
                "overc_service_last_report_timestamp_seconds{{{l}}} {}",
                now - st.seen_ago
            );
            let _ = writeln!(
                flapping,
                "overc_service_flapping{{{l}}} {}",
                u8::from(svc.flapping)
            );
            let _ = writeln!(
                silenced,
                "overc_service_silenced{{{l}}} {}",
                u8::from(svc.silenced)
            );
            let _ = writeln!(
                acked,
                "overc_service_acknowledged{{{l}}} {}",
                u8::from(svc.ack.is_some())
            );
            let mut seen = HashSet::new();
            for p in &st.perfdata {
                let Some(value) = p.value else { continue };
                // Prometheus refuses duplicate series; the first item of a label wins.
                if !seen.insert((p.label.as_str(), p.uom.as_str())) {
                    continue;
                }
                let _ = writeln!(
                    perfdata,
                    "overc_perfdata{{{l},label=\"{}\",uom=\"{}\"}} {}",
                    escape_label(&p.label),
                    escape_label(&p.uom),
                    num(value)
                );
            }
        }
        Ok(())
    })?;
    let mut out = state;
    out.push_str(&overdue);
    out.push_str(&last_report);
    out.push_str(&flapping);
    out.push_str(&silenced);
    out.push_str(&acked);
    out.push_str(&perfdata);
    head(
        &mut out,
        "overc_http_requests_total",
        "counter",
        "HTTP requests answered, by endpoint and status code.",
    );
    for ((endpoint, code), n) in &app.counters.http.snapshot() {
        let _ = writeln!(
            out,
            "overc_http_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}"
        );
    }
    head(
        &mut out,
        "overc_reports_total",
        "counter",
        "Service states accepted.",
    );
    let _ = writeln!(
        out,
        "overc_reports_total {}",
        app.engine.services_reported()
    );
    head(
        &mut out,
        "overc_alerts_raised_total",
        "counter",
        "Alerts written to the outbox.",
    );
    let _ = writeln!(
        out,
        "overc_alerts_raised_total {}",
        app.store().alerts_raised()
    );
    head(
        &mut out,
        "overc_alerts_delivered_total",
        "counter",
        "Deliveries of an alert to an alert plugin that it took.",
    );
    let _ = writeln!(
        out,
        "overc_alerts_delivered_total {}",
        app.engine.alerts_delivered()
    );
    head(
        &mut out,
        "overc_notifications_total",
        "counter",
        "Delivery attempts per alert plugin and outcome (delivered, failed, given_up).",
    );
    for p in app.engine.plugin_stats() {
        let plugin = escape_label(&p.plugin);
        for (outcome, n) in [
            ("delivered", p.delivered),
            ("failed", p.failed),
            ("given_up", p.given_up),
        ] {
            let _ = writeln!(
                out,
                "overc_notifications_total{{plugin=\"{plugin}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    head(
        &mut out,
        "overc_supervisor_lag_seconds",
        "gauge",
        "How far overdue detection is behind.",
    );
    let _ = writeln!(
        out,
        "overc_supervisor_lag_seconds {}",
        num(app.engine.lag())
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("плюс/🚀"), "плюс/🚀");
    }
}
