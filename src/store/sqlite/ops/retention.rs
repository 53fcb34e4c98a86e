//! Keeping storage bounded: history per service, alerts past retention.

use rusqlite::params;

use crate::error::Result;
use crate::store::sqlite::StoreOptions;
use crate::store::sqlite::redo::Tx;
use crate::store::sqlite::writer::{Applied, Batch};

pub(in crate::store::sqlite) fn prune_history(
    tx: &mut Tx<'_>,
    service_id: i64,
    limit: u32,
) -> Result<u64> {
    let n = tx.exec(
        "DELETE FROM states WHERE service_id = ?1 AND id <= (
             SELECT id FROM states WHERE service_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        // The newest record is the current state: always kept.
        params![service_id, limit.max(1)],
    )?;
    Ok(n as u64)
}

pub(in crate::store::sqlite) fn prune_all(
    b: &mut Batch<'_>,
    opts: &StoreOptions,
) -> Result<Applied> {
    let now = b.now;
    let mut pruned = 0;
    let ids: Vec<i64> =
        b.tx.read("SELECT id FROM services")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    for id in ids {
        pruned += prune_history(&mut b.tx, id, opts.history_limit)?;
    }
    let cutoff = now - i64::from(opts.retention_days) * 86_400_000;
    b.tx.exec(
        "DELETE FROM deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE ctime < ?1)",
        params![cutoff],
    )?;
    // An alert no plugin took within the whole retention period is given up
    // too: otherwise a plugin that is broken for good grows the outbox forever.
    let abandoned = b.tx.exec(
        "DELETE FROM alerts WHERE ctime < ?1 AND delivered = 0",
        params![cutoff],
    )?;
    if abandoned > 0 {
        log::warn!(
            "gave up {abandoned} alerts that no alert plugin took in {} days",
            opts.retention_days
        );
    }
    pruned += abandoned as u64;
    pruned += b.tx.exec(
        "DELETE FROM alerts WHERE ctime < ?1 AND delivered = 1",
        params![cutoff],
    )? as u64;
    Ok(Applied {
        pruned,
        ..Applied::default()
    })
}
