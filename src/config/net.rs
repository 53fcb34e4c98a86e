//! Networks in the config: `register-from`, `trusted-proxies`.

use std::net::IpAddr;

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`; a bare address
/// is a network of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4 peers) counts
    /// as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether any of `nets` holds `ip`.
    pub fn any_contains(nets: &[Cidr], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Cidr, String> {
        let bad =
            || format!("{s:?} is not an IP address or network (such as 10.0.0.0/8 or fd00::/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(bad()),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Reads `CIDR, CIDR …` (commas and/or blanks between them; empty: none).
pub(super) fn parse_cidrs(v: &str) -> std::result::Result<Vec<Cidr>, String> {
    v.split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Who may register a new server name (trust on first use): `[overc]
/// registration` and `register-from`. Hosts already registered keep
/// reporting whatever this says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `registration = open` (the default, as OverC 1.0.9): an unknown name
    /// registers with the key it brings. `closed`: only an operator adds
    /// hosts (`POST /ui/api/hosts`).
    pub open: bool,
    /// `register-from`: the networks new names may register from; empty
    /// means from anywhere.
    pub from: Vec<Cidr>,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            open: true,
            from: Vec::new(),
        }
    }
}

impl Registration {
    /// Whether a client at `ip` (as text; empty when unknown) may register
    /// a new server name.
    pub fn allows(&self, ip: &str) -> bool {
        self.open
            && (self.from.is_empty()
                || ip
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| Cidr::any_contains(&self.from, ip)))
    }
}
