//! The common case of a status report, read without building a
//! [`Value`] tree first (whose maps and strings cost more than the rest of
//! validating it). It takes only plain objects with each known key once and
//! the period as a JSON integer; for anything else [`StatusReport::parse`]
//! falls back to the general path, so both always agree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{MAX_ITEMS, Result, invalid};
use super::{ServerId, ServiceReport, StatusReport, check_key, check_name, check_period};

/// A string borrowed from the body unless it had escapes.
pub(super) struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a JSON object (never a list, which derived structs would also
/// take) key by key: `field` reads the value of a key it knows and says
/// so; other values are read and dropped.
fn object<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut field: impl FnMut(&str, &mut A) -> std::result::Result<bool, A::Error>,
) -> std::result::Result<(), A::Error> {
    while let Some(key) = map.next_key::<Str<'de>>()? {
        if !field(&key.0, map)? {
            // Read as the general path reads it (not skipped), so that
            // what it refuses here (a lone surrogate, a number out of
            // range) is refused here too.
            map.next_value::<serde_json::Value>()?;
        }
    }
    Ok(())
}

fn need<T, E: de::Error>(v: Option<T>) -> std::result::Result<T, E> {
    v.ok_or_else(|| E::custom("a key is missing"))
}

/// Sets `slot` from the next value, refusing a second one.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
) -> std::result::Result<bool, A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom("a key is given twice"));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

pub(super) struct Server<'a> {
    name: Str<'a>,
    key: Str<'a>,
}

pub(super) struct Service<'a> {
    name: Str<'a>,
    state: Str<'a>,
    info: Option<Str<'a>>,
    period: Option<u64>,
    retries: Option<u64>,
}

pub(super) struct Report<'a> {
    server: Server<'a>,
    period: u64,
    services: Vec<Service<'a>>,
    retries: Option<u64>,
}

macro_rules! object_visitor {
    ($ty:ident, $what:literal, |$map:ident| $body:block) => {
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut $map: A,
                    ) -> std::result::Result<$ty<'de>, A::Error> {
                        $body
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

object_visitor!(Server, "a server object", |map| {
    let (mut name, mut key) = (None, None);
    object(&mut map, |k, map| match k {
        "name" => once(map, &mut name),
        "key" => once(map, &mut key),
        _ => Ok(false),
    })?;
    Ok(Server {
        name: need(name)?,
        key: need(key)?,
    })
});

object_visitor!(Service, "a service object", |map| {
    let (mut name, mut state, mut info, mut period, mut retries) = (None, None, None, None, None);
    object(&mut map, |k, map| match k {
        "name" => once(map, &mut name),
        "state" => once(map, &mut state),
        "info" => once(map, &mut info),
        "period" => once(map, &mut period),
        "retries" => once(map, &mut retries),
        _ => Ok(false),
    })?;
    Ok(Service {
        name: need(name)?,
        state: need(state)?,
        info: info.flatten(),
        period: period.flatten(),
        retries: retries.flatten(),
    })
});

object_visitor!(Report, "a status report object", |map| {
    let (mut server, mut period, mut services, mut retries) = (None, None, None, None);
    object(&mut map, |k, map| match k {
        "server" => once(map, &mut server),
        "period" => once(map, &mut period),
        "services" => once(map, &mut services),
        "retries" => once(map, &mut retries),
        _ => Ok(false),
    })?;
    Ok(Report {
        server: need(server)?,
        period: need(period)?,
        services: need(services)?,
        retries: retries.flatten(),
    })
});

impl Report<'_> {
    /// The same checks as [`StatusReport::from_json`]; its errors are
    /// not shown (the general path names the field), so they carry no
    /// path.
    pub(super) fn validate(self) -> Result<StatusReport> {
        let period = |p: u64| check_period(i64::try_from(p).unwrap_or(i64::MAX), "");
        let retries = |r: Option<u64>| -> Result<Option<u8>> {
            r.map(|r| {
                crate::policy::check_retries(i64::try_from(r).unwrap_or(i64::MAX))
                    .map_err(|_| invalid(String::new()))
            })
            .transpose()
        };
        if self.services.len() > MAX_ITEMS {
            return Err(invalid(String::new()));
        }
        let server = ServerId {
            name: check_name(&self.server.name.0, "")?,
            key: check_key(&self.server.key.0)?,
        };
        let report_period = period(self.period)?;
        let mut services = Vec::with_capacity(self.services.len());
        for s in self.services {
            let own = match s.period {
                Some(p) => Some(period(p)?),
                None => None,
            };
            let info = s.info.map(|i| i.0.into_owned()).unwrap_or_default();
            services.push(ServiceReport::new(
                check_name(&s.name.0, "")?,
                &s.state.0,
                info,
                own,
                retries(s.retries)?,
            ));
        }
        Ok(StatusReport {
            server,
            period: report_period,
            services,
            retries: retries(self.retries)?,
        })
    }
}
