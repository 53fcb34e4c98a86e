//! What the page and the delivery loop change: deletes, titles, delivery
//! marks, and overc's own alerts.

use rusqlite::{OptionalExtension, params};

use super::acks;
use super::reports::{NewAlert, insert_alert};
use crate::error::{Error, Result};
use crate::rules::Event;
use crate::store::DeliveryOutcome;
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
        "DELETE FROM acks WHERE service_id IN (SELECT id FROM services WHERE server_id = ?1)",
        "DELETE FROM deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE server_id = ?1)",
        "DELETE FROM deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE service_id IN
             (SELECT id FROM services WHERE server_id = ?1))",
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
    acks::forget(b.caches, &services);
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
    acks::forget(b.caches, &[id]);
    for sql in [
        "DELETE FROM states WHERE service_id = ?1",
        "DELETE FROM acks WHERE service_id = ?1",
        "DELETE FROM deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE service_id = ?1)",
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

/// Writes the deliveries of alerts (one per plugin that gets it) and
/// marks the alerts routed; an alert no plugin gets is done at once.
pub(in crate::store::sqlite) fn route(
    b: &mut Batch<'_>,
    routes: &[(i64, Vec<String>)],
) -> Result<Applied> {
    for (alert_id, plugins) in routes {
        for plugin in plugins {
            // An alert deleted meanwhile gets none.
            b.tx.exec(
                "INSERT OR IGNORE INTO deliveries(plugin, alert_id)
                 SELECT ?1, id FROM alerts WHERE id = ?2",
                params![plugin, alert_id],
            )?;
        }
        b.tx.exec(
            "UPDATE alerts SET routed = 1, delivered = ?2 WHERE id = ?1",
            params![alert_id, plugins.is_empty()],
        )?;
    }
    Ok(Applied::default())
}

/// Records what one plugin did with one alert.
pub(in crate::store::sqlite) fn delivery(
    b: &mut Batch<'_>,
    plugin: &str,
    alert_id: i64,
    outcome: &DeliveryOutcome,
) -> Result<Applied> {
    let (state, error, retry_at) = match outcome {
        DeliveryOutcome::Delivered => (1, None, None),
        DeliveryOutcome::GivenUp { error } => (2, Some(error.as_str()), None),
        DeliveryOutcome::Failed { error, retry_at } => (0, Some(error.as_str()), Some(*retry_at)),
    };
    b.tx.exec(
        "UPDATE deliveries SET state = ?3, attempts = attempts + 1, error = ?4,
             next_attempt = COALESCE(?5, next_attempt)
         WHERE plugin = ?1 AND alert_id = ?2",
        params![plugin, alert_id, state, error, retry_at],
    )?;
    if state != 0 {
        b.tx.exec(
            "UPDATE alerts SET delivered = 1 WHERE id = ?1 AND NOT EXISTS
                 (SELECT 1 FROM deliveries WHERE alert_id = ?1 AND state = 0)",
            params![alert_id],
        )?;
    }
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
        held: None,
    };
    let now = b.now;
    Ok(Applied {
        alerts: vec![insert_alert(&mut b.tx, &alert, now)?],
        ..Applied::default()
    })
}
