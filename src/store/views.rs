//! What storage hands out: typed views in the read API's shapes. The read
//! API and `/metrics` serialize these; no backend returns JSON values.

use serde::Serialize;

/// What [`Storage::status_each`](crate::store::Storage::status_each) hands out, in order.
#[derive(Debug, Clone)]
pub enum StatusPart {
    /// The totals, first.
    Stats(StatsView),
    /// Then each server (sorted by name) with its services.
    Server(ServerView),
}

/// The body of `GET /ui/api/status/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// Totals.
    pub stats: StatsView,
    /// Servers sorted by name.
    pub servers: Vec<ServerView>,
}

/// `stats` of [`StatusView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    /// Alerts of the last 24 h of the selection: all, one server's (its
    /// services' included) or one service's.
    pub n_alerts: i64,
    /// Id of the newest history record of the selection (0 when none).
    pub last_state_id: i64,
    /// Seconds overdue detection is behind.
    pub supervisor_lag: f64,
    /// The server that runs overdue detection and delivery, when several
    /// share the database (PostgreSQL); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderView>,
}

/// `stats.leader` of [`StatusView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderView {
    /// The leader's listen address.
    pub listen: String,
    /// The name of the machine it runs on.
    pub host: String,
    /// When it became the leader, ISO 8601.
    pub since: String,
}

/// A server in [`StatusView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerView {
    /// Server id.
    pub id: i64,
    /// Name it reports as.
    pub name: String,
    /// Display title.
    pub title: String,
    /// Address of its last request.
    pub ip: String,
    /// First request, ISO 8601.
    pub first_seen: String,
    /// Latest request, ISO 8601.
    pub last_seen: String,
    /// Alerts of the last 24 h about the server itself (its services'
    /// are counted on each service), as in OverC 1.0.9.
    pub n_alerts: i64,
    /// Services sorted by name.
    pub services: Vec<ServiceView>,
}

/// A service in [`ServerView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// Service id.
    pub id: i64,
    /// Name it reports as.
    pub name: String,
    /// Display title.
    pub title: String,
    /// Promised seconds between reports; `None` for alert-only services.
    pub period: Option<i64>,
    /// Alerts of the last 24 h.
    pub n_alerts: i64,
    /// Current state; `None` before the first report.
    pub state: Option<StateView>,
    /// Its state is a soft problem: not yet reported `retries` times in a
    /// row, so not notified (SPEC §9).
    pub soft: bool,
    /// It flaps: its state changes are held back (SPEC §9).
    pub flapping: bool,
    /// Whether an active silence matches it now.
    pub silenced: bool,
    /// Its acknowledgement, while it holds.
    pub ack: Option<AckView>,
}

/// The acknowledgement of a service in [`ServiceView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckView {
    /// Who acknowledged.
    pub author: String,
    /// What they wrote.
    pub comment: String,
    /// When, ISO 8601.
    pub ctime: String,
}

/// A silence in [`SilenceListView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilenceView {
    /// Silence id.
    pub id: i64,
    /// Server name pattern.
    pub server: String,
    /// Service name pattern; `None`: every service of the servers, and
    /// the servers' own events.
    pub service: Option<String>,
    /// When it started, ISO 8601.
    pub starts: String,
    /// When it ends or ended, ISO 8601.
    pub ends: String,
    /// Why.
    pub comment: String,
    /// A page user, or `host:<name>` for a host's own.
    pub author: String,
    /// Whether it holds now.
    pub active: bool,
    /// Whether it was ended before its time.
    pub ended_early: bool,
}

/// The body of `GET /ui/api/silences`: active silences and those ended in
/// the last 24 hours, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilenceListView {
    /// The silences.
    pub silences: Vec<SilenceView>,
}

/// The current state in [`ServiceView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateView {
    /// When it was reported, ISO 8601.
    pub rtime: String,
    /// Overdue: flagged, or past last report + period + grace.
    pub timed_out: bool,
    /// Seconds since the report.
    pub seen_ago: i64,
    /// `OK`, `WARN`, `FAIL` or `UNK`.
    pub state: String,
    /// Nagios perfdata parsed from `info`.
    pub perfdata: Vec<PerfdataView>,
    /// The text as reported.
    pub info: String,
}

/// One perfdata item in [`StateView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfdataView {
    /// Label.
    pub label: String,
    /// Value (`None` for `U`).
    pub value: Option<f64>,
    /// Unit of measurement.
    pub uom: String,
    /// Warning range.
    pub warn: Option<RangeView>,
    /// Critical range.
    pub crit: Option<RangeView>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// A threshold range; open ends are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeView {
    /// Lower bound.
    pub start: Option<f64>,
    /// Upper bound.
    pub end: Option<f64>,
    /// Alert inside rather than outside.
    pub inside: bool,
}

/// The perfdata in an info text, as views.
pub fn perfdata_views(info: &str) -> Vec<PerfdataView> {
    let range = |r: Option<crate::perfdata::Range>| {
        r.map(|r| RangeView {
            start: r.start.is_finite().then_some(r.start),
            end: r.end.is_finite().then_some(r.end),
            inside: r.inside,
        })
    };
    crate::perfdata::parse_output(info)
        .perfdata
        .into_iter()
        .map(|p| PerfdataView {
            label: p.label,
            value: p.value,
            uom: p.uom,
            warn: range(p.warn),
            crit: range(p.crit),
            min: p.min,
            max: p.max,
        })
        .collect()
}

/// Row counts per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableCounts {
    /// Registered hosts.
    pub servers: i64,
    /// Known services.
    pub services: i64,
    /// History records.
    pub states: i64,
    /// Alerts.
    pub alerts: i64,
}

/// An alert in the read API (`/ui/api/status/alerts/`, and each history
/// record's `alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// Alert id.
    pub id: i64,
    /// The server's id; `None` for overc's own alerts.
    pub server_id: Option<i64>,
    /// The server's name.
    pub server: Option<String>,
    /// The service's id, if the alert is about one.
    pub service_id: Option<i64>,
    /// The service's name.
    pub service: Option<String>,
    /// When it was raised, ISO 8601.
    pub ctime: String,
    /// e.g. `service:state`, `plugin`, `api`.
    pub channel: String,
    /// e.g. `WARN`, `offline`, `alert`.
    pub event: String,
    /// The alert's text.
    pub message: String,
    /// `OK`, `WARN`, `FAIL` or `UNK`.
    pub severity: String,
    /// The info of the service's state when it was raised (as OverC 1.0.9);
    /// `None` for an alert raised without a state.
    pub state_info: Option<String>,
    /// The service's state when it was raised (`OK`, `WARN`, `FAIL`, `UNK`);
    /// `None` for an alert raised without a state.
    pub state: Option<String>,
    /// Whether every plugin it was routed to took it (or gave up on it).
    pub delivered: bool,
    /// A soft state change (or a recovery from one): recorded, not notified.
    pub soft: bool,
    /// Whether an active silence matched it: recorded, never delivered.
    pub silenced: bool,
    /// Its delivery to each plugin it was routed to, by plugin name.
    pub deliveries: Vec<DeliveryView>,
}

/// The delivery of an alert to one plugin, in [`AlertView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// The plugin's name (`[alert:NAME]`).
    pub plugin: String,
    /// `delivered`, `pending` (not tried yet), `failing` (refused, to be
    /// tried again at `next_try`) or `given-up`.
    pub state: &'static str,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is tried again (ISO 8601), for `failing`.
    pub next_try: Option<String>,
    /// What the plugin said when it last refused it.
    pub error: Option<String>,
}

/// The body of `GET /ui/api/status/alerts/…`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertListView {
    /// The alerts.
    pub alerts: Vec<AlertView>,
}

/// A history record in [`HistoryView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordView {
    /// Record id.
    pub id: i64,
    /// When it was reported, ISO 8601.
    pub rtime: String,
    /// `OK`, `WARN`, `FAIL` or `UNK`.
    pub state: String,
    /// The perfdata in `info`.
    pub perfdata: Vec<PerfdataView>,
    /// The info text as reported.
    pub info: String,
    /// Alerts this record raised.
    pub alerts: Vec<AlertView>,
    /// The service's name.
    pub service: String,
    /// The service's id.
    pub service_id: i64,
}

/// The middle of a run of same-state records without alerts, folded (its
/// first and last records stay apart, as in OverC 1.0.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The lowest (oldest) folded record's id.
    pub id: i64,
    /// The run's state.
    pub state: String,
    /// `"<lowest id>-<highest id>"`, as `expand=` takes it.
    pub group: String,
    /// Records folded (two or more).
    pub group_count: usize,
}

/// One entry of a service's history: a record, or a folded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HistoryEntry {
    /// One record.
    Record(RecordView),
    /// A folded run of records.
    Group(GroupView),
}

/// The body of `GET /ui/api/status/service/<id>/states`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// The records and folded runs.
    pub states: Vec<HistoryEntry>,
}
