//! What a write decides, apart from the database it is written to: key
//! hashes, a service's policy memory and what a report does to it, and the
//! small rules the read views follow. Every backend calls these, so the
//! backends differ in their SQL only.

use sha2::{Digest, Sha256};

use crate::clock::{Millis, iso8601};
use crate::error::{Error, Result};
use crate::policy::{
    self, FlapHistory, Held, PolicyConfig, Problem, Silence, Streak, UntoldProblem,
};
use crate::protocol::{HostSilence, HostUnsilence};
use crate::rules::{self, Event};
use crate::state::State;
use crate::store::views::{SilenceView, StateView, perfdata_views};

/// A day in milliseconds: the read API counts the alerts of the last one.
pub(crate) const DAY: Millis = 86_400_000;
/// Most alerts one listing returns.
pub(crate) const MAX_ALERTS: i64 = 5000;

/// The salted SHA-256 of a host's key, as stored.
pub(crate) fn key_hash(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A new random key salt.
pub(crate) fn new_salt() -> Result<[u8; 16]> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| Error::Storage(format!("no randomness for a key salt: {e}")))?;
    Ok(salt)
}

/// What a backend knows of a service when a report comes: its current
/// state and the notification policy's memory of it.
#[derive(Clone)]
pub(crate) struct ServiceMemory {
    pub(crate) id: i64,
    /// The current state (of the newest history record).
    pub(crate) state: Option<State>,
    /// The retries rule's memory (`None` before the first report).
    pub(crate) streak: Option<Streak>,
    /// Whether it flaps, and its last states (loaded only with `flapping = on`).
    pub(crate) flapping: bool,
    pub(crate) flaps: FlapHistory,
    pub(crate) overdue: bool,
    pub(crate) period: Option<u32>,
}

/// What one service's report changes.
pub(crate) struct ReportPlan {
    /// The retries rule's memory after it.
    pub(crate) streak: Streak,
    /// Whether it flaps after it.
    pub(crate) flapping: bool,
    /// The flap window after it.
    pub(crate) flaps: FlapHistory,
    /// Whether the service row changes (period, policy memory or overdue
    /// flag); its current state is the history record about to be written.
    pub(crate) write_row: bool,
    /// The events it raises, each with why it is held back, if it is.
    pub(crate) events: Vec<(Event, Option<Held>)>,
}

impl ReportPlan {
    /// The columns `hard`, `hard_state` and `streak` of the service row.
    pub(crate) fn row_memory(&self) -> (bool, Option<&'static str>, u32) {
        let s = self.streak;
        (
            s.hard,
            s.hard_state.map(State::as_str),
            if s.hard { 1 } else { s.count },
        )
    }
}

/// Applies the retries and flapping rules of `policy` to a report of
/// `state` (with `period`, `retries`) for the service `row`.
pub(crate) fn plan_report(
    row: &ServiceMemory,
    state: State,
    period: u32,
    retries: u8,
    policy: &PolicyConfig,
) -> ReportPlan {
    let retried = policy::on_report(row.streak, state, retries);
    let (flaps, flap) = if policy.flapping {
        let flaps = row.flaps.push(state);
        let f = policy::on_flap_report(
            &flaps.states(),
            row.flapping,
            policy.flap_high,
            policy.flap_low,
        );
        (flaps, Some(f))
    } else {
        (row.flaps, None)
    };
    let flapping = flap.as_ref().is_some_and(|f| f.flapping);
    let streak = retried.streak;
    let remembered =
        |k: &Option<Streak>| k.map(|k| (k.hard, k.hard_state, if k.hard { 1 } else { k.count }));
    let write_row = row.overdue
        || row.period != Some(period)
        || remembered(&row.streak) != remembered(&Some(streak))
        || row.flapping != flapping;
    let mut events = Vec::new();
    if let Some(change) = retried.change {
        let held = policy::held(change.event.channel, change.soft, flapping, false);
        events.push((change.event, held));
    }
    if row.overdue {
        events.push((rules::on_return(), None));
    }
    if let Some(event) = flap.and_then(|f| f.event) {
        events.push((event, None));
    }
    ReportPlan {
        streak,
        flapping,
        flaps,
        write_row,
        events,
    }
}

/// A service's current state as the read API shows it.
pub(crate) struct CurrentState {
    pub(crate) state: String,
    pub(crate) info: String,
    pub(crate) rtime: Millis,
}

/// The view of a service's current state: overdue when flagged or past
/// its deadline plus grace.
pub(crate) fn state_view(
    current: CurrentState,
    overdue: bool,
    period: Option<i64>,
    grace_ms: Millis,
    now: Millis,
) -> StateView {
    let t = current.rtime;
    StateView {
        rtime: iso8601(t),
        timed_out: rules::is_overdue(overdue, period, Some(t), grace_ms, now),
        seen_ago: (now - t).max(0) / 1000,
        state: current.state,
        perfdata: perfdata_views(&current.info),
        info: current.info,
    }
}

/// How the read API names a delivery's state (stored as 0 pending, 1
/// delivered, 2 given up).
pub(crate) fn delivery_state(state: i64, attempts: u32) -> &'static str {
    match state {
        1 => "delivered",
        2 => "given-up",
        _ if attempts == 0 => "pending",
        _ => "failing",
    }
}

/// The start of a look-back of `hours` (fractions allowed) from `now`.
pub(crate) fn since(now: Millis, hours: f64) -> Millis {
    now.saturating_sub((hours * 3_600_000.0) as Millis)
}

/// A problem as the `acks.problem` column holds it: `WARN`, `FAIL`, `UNK`
/// or `offline` ([`Problem::name`]).
pub(crate) fn parse_problem(text: &str) -> Problem {
    match text {
        "offline" => Problem::Offline,
        s => Problem::State(State::parse(s).unwrap_or(State::Unk)),
    }
}

/// The author of a host's own silences, by which `/api/set/unsilence`
/// finds them.
pub(crate) fn host_author(name: &str) -> String {
    format!("host:{name}")
}

/// The silence a host sets on its own services at `now`: its name,
/// escaped, is the server pattern, so it matches that host only.
pub(crate) fn host_silence(r: &HostSilence, now: Millis) -> Silence {
    Silence {
        id: 0,
        server: policy::glob_escape(&r.server.name),
        service: r.service.clone(),
        starts: now,
        ends: now + Millis::from(r.duration) * 1000,
        comment: r.comment.clone(),
        author: host_author(&r.server.name),
    }
}

/// A silence about to be stored: it starts at `now`.
///
/// # Errors
/// [`Error::Invalid`] when it would end by then.
pub(crate) fn starting_silence(mut s: Silence, now: Millis) -> Result<Silence> {
    s.starts = now;
    if s.ends <= s.starts {
        return Err(Error::Invalid(
            "Data: a silence should end in the future".into(),
        ));
    }
    Ok(s)
}

/// Logs a silence just stored (with its id).
pub(crate) fn log_silence(s: &Silence) {
    log::info!(
        "silence {} by {}: {} {} until {}",
        s.id,
        s.author,
        s.server,
        s.service.as_deref().unwrap_or("*"),
        iso8601(s.ends)
    );
}

/// Which of the `unfinished` silences a host's `/api/set/unsilence` ends:
/// its own, the one it names or all of them.
///
/// # Errors
/// [`Error::NotFound`] when it names an id that is not an unfinished
/// silence of this host (another host's is not found either).
pub(crate) fn host_unsilenced(unfinished: &[Silence], r: &HostUnsilence) -> Result<Vec<i64>> {
    let author = host_author(&r.server.name);
    let ids: Vec<i64> = unfinished
        .iter()
        .filter(|s| s.author == author && r.id.is_none_or(|id| id == s.id))
        .map(|s| s.id)
        .collect();
    match (r.id, ids.is_empty()) {
        (Some(id), true) => Err(Error::NotFound(format!(
            "no active silence {id} of this host"
        ))),
        _ => Ok(ids),
    }
}

/// The refusal to end silence `id` that is not unfinished: it `exists`
/// and has ended, or there is none.
pub(crate) fn not_ending(id: i64, exists: bool) -> Error {
    Error::NotFound(if exists {
        format!("silence {id} has already ended")
    } else {
        format!("no silence {id}")
    })
}

/// A silence as `GET /ui/api/silences` lists it at `now`.
pub(crate) fn silence_view(s: Silence, ended_early: bool, now: Millis) -> SilenceView {
    SilenceView {
        id: s.id,
        active: s.is_active(now),
        starts: iso8601(s.starts),
        ends: iso8601(s.ends),
        server: s.server,
        service: s.service,
        comment: s.comment,
        author: s.author,
        ended_early,
    }
}

/// A service whose newest change (state or offline/online) since a
/// silence started was silenced, as read when the silence ends, with what
/// an alert about it carries.
pub(crate) struct SilencedService {
    pub(crate) service_id: i64,
    pub(crate) server_id: i64,
    pub(crate) server: String,
    pub(crate) service: String,
    /// Its current state and info (of the history record `state_id`).
    pub(crate) state: Option<String>,
    pub(crate) info: Option<String>,
    pub(crate) state_id: Option<i64>,
    pub(crate) hard: bool,
    pub(crate) overdue: bool,
    /// The problem its acknowledgement is for, if it has one.
    pub(crate) acked: Option<Problem>,
}

/// What the end of the silence `ended` tells at `now`: each of `held`
/// still in a problem (a soft one was never to be told) that no
/// acknowledgement holds (its owner knows) and that no other of
/// `unfinished` still silences, with the event
/// ([`policy::on_silence_end`]).
pub(crate) fn told_at_silence_end<'a>(
    ended: &Silence,
    unfinished: &[Silence],
    held: &'a [SilencedService],
    now: Millis,
) -> Vec<(&'a SilencedService, Event)> {
    let mut untold = Vec::new();
    let mut rows = Vec::new();
    for h in held {
        let state = h
            .state
            .as_deref()
            .map(|s| State::parse(s).unwrap_or(State::Unk));
        let Some(problem) = Problem::of(state, h.hard, h.overdue) else {
            continue;
        };
        if h.acked == Some(problem) {
            continue;
        }
        untold.push(UntoldProblem {
            service_id: h.service_id,
            server: h.server.clone(),
            service: h.service.clone(),
            problem,
        });
        rows.push(h);
    }
    policy::on_silence_end(ended, unfinished, &untold, now)
        .into_iter()
        .filter_map(|(u, event)| {
            let i = untold.iter().position(|x| x.service_id == u.service_id)?;
            Some((rows[i], event))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_depends_on_salt() {
        assert_ne!(key_hash(&[0; 16], "k"), key_hash(&[1; 16], "k"));
        assert_eq!(key_hash(&[0; 16], "k"), key_hash(&[0; 16], "k"));
    }

    #[test]
    fn problems_read_back_as_named() {
        for p in [
            Problem::Offline,
            Problem::State(State::Warn),
            Problem::State(State::Fail),
            Problem::State(State::Unk),
        ] {
            assert_eq!(parse_problem(p.name()), p);
        }
    }

    fn held(
        id: i64,
        server: &str,
        state: &str,
        hard: bool,
        acked: Option<Problem>,
    ) -> SilencedService {
        SilencedService {
            service_id: id,
            server_id: 1,
            server: server.into(),
            service: "svc".into(),
            state: Some(state.into()),
            info: None,
            state_id: None,
            hard,
            overdue: false,
            acked,
        }
    }

    #[test]
    fn a_silence_end_tells_open_unacknowledged_problems_it_matches() {
        let ended = Silence {
            id: 1,
            server: "h*".into(),
            starts: 0,
            ends: 1_000,
            ..Silence::default()
        };
        let held = [
            held(1, "h1", "FAIL", true, None),
            held(2, "h1", "FAIL", false, None),
            held(3, "h1", "OK", true, None),
            held(4, "h1", "WARN", true, Some(Problem::State(State::Warn))),
            held(5, "h1", "FAIL", true, Some(Problem::State(State::Warn))),
            held(6, "db", "FAIL", true, None),
        ];
        let told: Vec<(i64, String)> = told_at_silence_end(&ended, &[], &held, 1_000)
            .into_iter()
            .map(|(h, e)| (h.service_id, e.message.into_owned()))
            .collect();
        assert_eq!(
            told,
            [
                (1, "Silence ended: still FAIL".to_owned()),
                (5, "Silence ended: still FAIL".to_owned())
            ]
        );
        let still = Silence {
            id: 2,
            ends: 5_000,
            ..ended.clone()
        };
        assert!(told_at_silence_end(&ended, &[ended.clone(), still], &held, 1_000).is_empty());
    }

    #[test]
    fn a_host_ends_only_its_own_silences() {
        use crate::protocol::ServerId;
        let r = |id| HostUnsilence {
            server: ServerId {
                name: "h".into(),
                key: "k".into(),
            },
            id,
        };
        let s = |id, author: &str| Silence {
            id,
            author: author.into(),
            ..Silence::default()
        };
        let list = [
            s(1, "host:h"),
            s(2, "admin"),
            s(3, "host:h"),
            s(4, "host:o"),
        ];
        assert_eq!(host_unsilenced(&list, &r(None)).unwrap(), [1, 3]);
        assert_eq!(host_unsilenced(&list, &r(Some(3))).unwrap(), [3]);
        for other in [2, 4, 9] {
            assert!(matches!(
                host_unsilenced(&list, &r(Some(other))),
                Err(Error::NotFound(_))
            ));
        }
        assert!(host_unsilenced(&[], &r(None)).unwrap().is_empty());
    }
}
