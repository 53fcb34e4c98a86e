//! Folding a service's history for the read API, as OverC 1.0.9 did; the
//! same for every backend.

use crate::store::views::{GroupView, HistoryEntry, RecordView};

/// Folds a history (newest first) as OverC 1.0.9 did. A record is a change
/// when its state differs from the newer record's or it raised alerts; the
/// records between two changes are a run's quiet part. When that part has
/// three or more records, all but its oldest become one group: the change
/// that starts a run and the run's oldest record stay visible, the two or
/// more in between are one row `{"id": <lowest id>, "group": "<lowest
/// id>-<highest id>", "group_count", "state"}`. A group that overlaps one of
/// the `expand` ranges (either order of its ends) is left unfolded.
pub(crate) fn fold_runs(states: Vec<RecordView>, expand: &[(i64, i64)]) -> Vec<HistoryEntry> {
    let mut out = Vec::with_capacity(states.len());
    let mut quiet: Vec<RecordView> = Vec::new();
    let mut newer_state: Option<String> = None;
    for record in states {
        let change =
            newer_state.as_deref() != Some(record.state.as_str()) || !record.alerts.is_empty();
        if change {
            newer_state = Some(record.state.clone());
            fold_quiet(&mut out, &mut quiet, expand);
            out.push(HistoryEntry::Record(record));
        } else {
            quiet.push(record);
        }
    }
    fold_quiet(&mut out, &mut quiet, expand);
    out
}

/// Moves a run's quiet records (newest first) to `out`, folded as
/// [`fold_runs`] says.
fn fold_quiet(out: &mut Vec<HistoryEntry>, quiet: &mut Vec<RecordView>, expand: &[(i64, i64)]) {
    if quiet.len() < 3 {
        out.extend(quiet.drain(..).map(HistoryEntry::Record));
        return;
    }
    let oldest = quiet.pop().expect("three or more");
    let (low, high) = (quiet[quiet.len() - 1].id, quiet[0].id);
    let expanded = expand
        .iter()
        .any(|&(a, b)| a.min(b) <= high && a.max(b) >= low);
    if expanded {
        out.extend(quiet.drain(..).map(HistoryEntry::Record));
    } else {
        out.push(HistoryEntry::Group(GroupView {
            id: low,
            state: quiet[0].state.clone(),
            group: format!("{low}-{high}"),
            group_count: quiet.len(),
        }));
        quiet.clear();
    }
    out.push(HistoryEntry::Record(oldest));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::views::AlertView;

    fn st(id: i64, state: &str, alerts: usize) -> RecordView {
        let alert = AlertView {
            id: 1,
            server_id: None,
            server: None,
            service_id: None,
            service: None,
            ctime: String::new(),
            channel: String::new(),
            event: String::new(),
            message: String::new(),
            severity: String::new(),
            state_info: None,
            state: None,
            delivered: false,
            soft: false,
            silenced: false,
            deliveries: Vec::new(),
        };
        RecordView {
            id,
            rtime: String::new(),
            state: state.into(),
            perfdata: Vec::new(),
            info: String::new(),
            alerts: vec![alert; alerts],
            service: "svc".into(),
            service_id: 1,
        }
    }

    /// The rows of a folded history: a record's id, or `lo-hi/count` for a group.
    fn folded(states: Vec<RecordView>, expand: &[(i64, i64)]) -> Vec<String> {
        fold_runs(states, expand)
            .into_iter()
            .map(|e| match e {
                HistoryEntry::Record(r) => r.id.to_string(),
                HistoryEntry::Group(g) => {
                    assert_eq!(g.id.to_string(), g.group.split('-').next().unwrap());
                    format!("{}/{}", g.group, g.group_count)
                }
            })
            .collect()
    }

    /// Newest first: ids `n` down to 1, states as given (`!` after a state:
    /// the record raised an alert).
    fn history(states: &[&str]) -> Vec<RecordView> {
        let n = states.len() as i64;
        states
            .iter()
            .enumerate()
            .map(|(i, s)| match s.strip_suffix('!') {
                Some(s) => st(n - i as i64, s, 1),
                None => st(n - i as i64, s, 0),
            })
            .collect()
    }

    #[test]
    fn folds_the_middle_of_runs_keeping_their_first_and_last_records() {
        // A run of four: its newest and oldest stay, the two between fold.
        assert_eq!(
            folded(history(&["OK", "OK", "OK", "OK"]), &[]),
            ["4", "2-3/2", "1"]
        );
        // Three or fewer: nothing to fold.
        assert_eq!(folded(history(&["OK", "OK", "OK"]), &[]), ["3", "2", "1"]);
        // Runs end at a change of state and at a record with alerts.
        assert_eq!(
            folded(
                history(&[
                    "OK!", "OK", "OK", "OK", "OK", "WARN!", "WARN", "WARN", "OK", "OK!", "OK",
                    "OK", "OK"
                ]),
                &[]
            ),
            ["13", "10-12/3", "9", "8", "7", "6", "5", "4", "2-3/2", "1"]
        );
        // The group's state is its records'.
        let g = fold_runs(history(&["FAIL", "FAIL", "FAIL", "FAIL", "FAIL"]), &[]);
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(
            v[1],
            serde_json::json!({"id": 2, "state": "FAIL", "group": "2-4", "group_count": 3})
        );
    }

    #[test]
    fn an_expanded_range_is_left_unfolded() {
        let h = || history(&["OK", "OK", "OK", "OK", "OK", "WARN", "WARN", "WARN", "WARN"]);
        assert_eq!(folded(h(), &[]), ["9", "6-8/3", "5", "4", "2-3/2", "1"]);
        assert_eq!(
            folded(h(), &[(7, 7)]),
            ["9", "8", "7", "6", "5", "4", "2-3/2", "1"]
        );
        // Any overlap, either order of the ends.
        assert_eq!(
            folded(h(), &[(4, 1)]),
            ["9", "6-8/3", "5", "4", "3", "2", "1"]
        );
        assert_eq!(
            folded(h(), &[(100, 200), (8, 9), (3, 3)]),
            ["9", "8", "7", "6", "5", "4", "3", "2", "1"]
        );
    }
}
