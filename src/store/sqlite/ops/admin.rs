//! What the page and the delivery loop change: deletes, titles, delivery
//! marks, and overc's own alerts.

use rusqlite::{OptionalExtension, params};

use super::reports::{NewAlert, insert_alert};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::rules::Event;
use crate::store::sqlite::writer::{Applied, Batch};

/// Deletes a server with its services, their history and alerts.
pub(in crate::store::sqlite) fn delete_server(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    let name: Option<String> =
        b.tx.read("SELECT name FROM servers WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
    let Some(name) = name else {
        return Err(Error::NotFound("no such server".into()));
    };
    let services: Vec<i64> =
        b.tx.read("SELECT id FROM services WHERE server_id = ?1")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    // What ON DELETE CASCADE did while the writer enforced foreign keys
    // (see `Writer::new`), children first.
    for sql in [
        "DELETE FROM states WHERE service_id IN (SELECT id FROM services WHERE server_id = ?1)",
        "DELETE FROM alerts WHERE server_id = ?1",
        "DELETE FROM alerts WHERE service_id IN (SELECT id FROM services WHERE server_id = ?1)",
        "DELETE FROM services WHERE server_id = ?1",
        "DELETE FROM servers WHERE id = ?1",
    ] {
        b.tx.exec(sql, params![id])?;
    }
    log::info!("deleted server {name:?} with {} services", services.len());
    b.caches.servers.remove(&name);
    b.caches.services.remove(&id);
    Ok(Applied {
        server_id: Some(id),
        removed_services: services,
        ..Applied::default()
    })
}

/// Deletes a service with its history and alerts.
pub(in crate::store::sqlite) fn delete_service(b: &mut Batch<'_>, id: i64) -> Result<Applied> {
    for names in b.caches.services.values_mut() {
        names.retain(|_, known| known.id != id);
    }
    for sql in [
        "DELETE FROM states WHERE service_id = ?1",
        "DELETE FROM alerts WHERE service_id = ?1",
    ] {
        b.tx.exec(sql, params![id])?;
    }
    if b.tx
        .exec("DELETE FROM services WHERE id = ?1", params![id])?
        == 0
    {
        return Err(Error::NotFound("no such service".into()));
    }
    Ok(Applied {
        removed_services: vec![id],
        ..Applied::default()
    })
}

/// Sets the display title of a server (`service = false`) or service.
pub(in crate::store::sqlite) fn rename(
    b: &mut Batch<'_>,
    service: bool,
    id: i64,
    title: &str,
) -> Result<Applied> {
    let sql = if service {
        "UPDATE services SET title = ?2 WHERE id = ?1"
    } else {
        "UPDATE servers SET title = ?2 WHERE id = ?1"
    };
    if b.tx.exec(sql, params![id, title])? == 0 {
        return Err(Error::NotFound(format!(
            "no such {}",
            if service { "service" } else { "server" }
        )));
    }
    Ok(Applied::default())
}

/// At least one alert plugin took these alerts.
pub(in crate::store::sqlite) fn delivered(b: &mut Batch<'_>, ids: &[i64]) -> Result<Applied> {
    for id in ids {
        b.tx.exec(
            "UPDATE alerts SET delivered = 1, attempts = attempts + 1 WHERE id = ?1",
            params![id],
        )?;
    }
    Ok(Applied::default())
}

/// Every plugin failed: try again at `at`.
pub(in crate::store::sqlite) fn defer(b: &mut Batch<'_>, id: i64, at: Millis) -> Result<Applied> {
    b.tx.exec(
        "UPDATE alerts SET attempts = attempts + 1, next_attempt = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(Applied::default())
}

/// An alert of overc itself (no server), e.g. a failing alert plugin.
pub(in crate::store::sqlite) fn system_alert(b: &mut Batch<'_>, event: &Event) -> Result<Applied> {
    let alert = NewAlert {
        server_id: None,
        service_id: None,
        state_id: None,
        event,
        state: None,
    };
    let now = b.now;
    Ok(Applied {
        alerts: vec![insert_alert(&mut b.tx, &alert, now)?],
        ..Applied::default()
    })
}
