//! Trust on first use: registering hosts and checking their keys.

use rusqlite::{OptionalExtension, params};

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::protocol::ServerId;
use crate::secret::constant_time_eq;
use crate::store::plan::{key_hash, new_salt};
use crate::store::sqlite::writer::{Applied, Batch, KnownServer};

/// `last_seen` is rewritten at most this often per host.
const SEEN_RESOLUTION: Millis = 1000;

/// Fills the cache with the host named `name`, if it is registered;
/// returns whether it is.
fn known(name: &str, b: &mut Batch<'_>) -> Result<bool> {
    if b.caches.servers.contains_key(name) {
        return Ok(true);
    }
    let row =
        b.tx.read("SELECT id, key_salt, key_hash, ip, last_seen FROM servers WHERE name = ?1")?
            .query_row([name], |r| {
                let salt: Vec<u8> = r.get(1)?;
                let hash: Vec<u8> = r.get(2)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    salt,
                    hash,
                    r.get::<_, String>(3)?,
                    r.get::<_, Millis>(4)?,
                ))
            })
            .optional()?;
    let Some((id, salt, hash, ip, seen)) = row else {
        return Ok(false);
    };
    let (Ok(salt), Ok(hash)) = (salt.try_into(), hash.try_into()) else {
        return Err(Error::Storage(format!("corrupt key of server {name:?}")));
    };
    b.caches.servers.insert(
        name.to_owned(),
        KnownServer {
            id,
            salt,
            hash,
            ip,
            seen_written: seen,
            verified: None,
        },
    );
    Ok(true)
}

/// Registers a new host (trust on first use) or checks its key, and records
/// where it called from. A wrong key, or a new name that may not register
/// (`registration = closed`, or from outside `register-from`), is refused
/// before anything is written.
pub(in crate::store::sqlite) fn authenticate(
    server: &ServerId,
    ip: &str,
    b: &mut Batch<'_>,
) -> Result<i64> {
    known(&server.name, b)?;
    let now = b.now;
    match b.caches.servers.get_mut(&server.name) {
        Some(k) => {
            let cached = k
                .verified
                .as_deref()
                .is_some_and(|v| constant_time_eq(v.as_bytes(), server.key.as_bytes()));
            if !cached {
                if !constant_time_eq(&key_hash(&k.salt, &server.key), &k.hash) {
                    log::warn!(
                        "rejected a request for server {:?} from {ip}: invalid key",
                        server.name
                    );
                    return Err(Error::Forbidden("Invalid server key".into()));
                }
                k.verified = Some(server.key.clone());
            }
            if k.ip != ip || now - k.seen_written >= SEEN_RESOLUTION {
                b.tx.exec(
                    "UPDATE servers SET ip = ?2, last_seen = ?3 WHERE id = ?1",
                    params![k.id, ip, now],
                )?;
                k.ip = ip.to_owned();
                k.seen_written = now;
            }
            Ok(k.id)
        }
        None if !b.registration.allows(ip) => {
            log::warn!(
                "refused to register new server {:?} from {ip:?}: {}",
                server.name,
                if b.registration.open {
                    "not in register-from"
                } else {
                    "registration is closed"
                }
            );
            Err(Error::Forbidden("Unknown server".into()))
        }
        None => {
            let id = insert(server, ip, b)?;
            log::info!("registered new server {:?} from {ip}", server.name);
            Ok(id)
        }
    }
}

/// Registers a host an operator adds with its key, whatever the
/// registration rules say; `server_id` is `None` when the name is taken
/// (nothing is written then).
pub(in crate::store::sqlite) fn add_server(
    server: &ServerId,
    b: &mut Batch<'_>,
) -> Result<Applied> {
    if known(&server.name, b)? {
        return Ok(Applied::default());
    }
    let id = insert(server, "", b)?;
    log::info!("server {:?} added by an operator", server.name);
    Ok(Applied {
        server_id: Some(id),
        ..Applied::default()
    })
}

/// Writes a new host with a salted hash of its key.
fn insert(server: &ServerId, ip: &str, b: &mut Batch<'_>) -> Result<i64> {
    let salt = new_salt()?;
    let hash = key_hash(&salt, &server.key);
    let now = b.now;
    b.tx.exec(
        "INSERT INTO servers(name, title, key_salt, key_hash, ip, first_seen, last_seen)
         VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?5)",
        params![server.name, &salt[..], &hash[..], ip, now],
    )?;
    let id = b.tx.last_insert_rowid();
    b.caches.servers.insert(
        server.name.clone(),
        KnownServer {
            id,
            salt,
            hash,
            ip: ip.to_owned(),
            seen_written: now,
            verified: Some(server.key.clone()),
        },
    );
    Ok(id)
}
