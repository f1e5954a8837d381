//! Address ranges, as `trusted_proxies` and `metrics.allow` name them.

use std::fmt;
use std::net::IpAddr;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `IP/prefix` or a bare IP.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint =
            "write an address range such as 10.0.0.0/8, 172.31.0.0/16 or 2001:db8::/32, or one IP";
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("invalid address range `{text}`: `{ip}` is not an IP; {hint}"))?;
        let ip = ip.to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                format!("invalid address range `{text}`: the prefix length must be 0 to {max}; {hint}")
            })?,
        };
        let cidr = Self {
            network: ip,
            prefix,
        };
        if cidr.mask(ip) != ip {
            return Err(format!(
                "invalid address range `{text}`: `{ip}` has bits set beyond /{prefix}; \
                 write the network address, {}/{prefix}",
                cidr.mask(ip)
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the range; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }

    /// Whether `ip` is in any of `ranges`.
    pub fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
        ranges.iter().any(|range| range.contains(ip))
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                // A shift by the full width (prefix 0) is None: nothing is kept.
                let bits = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & bits).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & bits).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let range = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(range.contains(ip("10.200.1.2")));
        assert!(range.contains(ip("::ffff:10.0.0.1")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(!range.contains(ip("::1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert_eq!(
            Cidr::parse("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        for (bad, why) in [
            ("10.0.0.1/8", "write the network address, 10.0.0.0/8"),
            ("10.0.0.0/33", "0 to 32"),
            ("10.0.0.0/x", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("localhost", "not an IP"),
            ("", "not an IP"),
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
