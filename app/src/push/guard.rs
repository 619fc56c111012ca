//! Where pushes may go. A push endpoint is a URL a user hands the node, and
//! the node later POSTs to it: without a guard that is a request forgery
//! (SSRF) into the operator's network. Endpoints must be `https` URLs whose
//! host is a public address, checked when the subscription is stored and again
//! when a push is sent: the sending client resolves names through
//! [`PublicOnly`], which drops non-public answers, so a name that resolved to
//! a public address at subscribe time and to `127.0.0.1` later (DNS
//! rebinding) reaches nothing. `[push] allow_insecure_endpoints` lifts both
//! checks (tests and local push services).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// How long resolving an endpoint's host may take at subscribe time.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is a public unicast address: not loopback, private (RFC 1918,
/// ULA), link-local, CGNAT, unspecified, multicast, broadcast, documentation,
/// benchmarking, reserved, nor an IPv6 form (mapped, compatible, NAT64, 6to4)
/// that embeds such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0
        || a == 10 // RFC 1918
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local (cloud metadata lives here)
        || (a == 172 && (16..32).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // Forms that carry an IPv4 address: judged by that address.
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return is_public_v4(embedded(s[6], s[7])); // ::ffff:a.b.c.d
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4 2002::/16
    }
    // Global unicast is 2000::/3; everything else (::, ::1, ::a.b.c.d,
    // 100::/64, fc00::/7, fe80::/10, fec0::/10, ff00::/8, 64:ff9b:1::/48) is not.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let ietf = s[0] == 0x2001 && s[1] < 0x200; // 2001::/23 (Teredo, ORCHID, ...)
    let documentation = (s[0] == 0x2001 && s[1] == 0xdb8) || s[0] & 0xfff0 == 0x3ff0;
    !ietf && !documentation
}

/// Checks an endpoint's scheme and, unless `allow_insecure`, that its host is
/// a public address, resolving a name now (every answer must be public).
/// The error is the reason, for the subscriber.
pub async fn check_endpoint(url: &Url, allow_insecure: bool) -> Result<(), String> {
    check_url(url, allow_insecure)?;
    if allow_insecure {
        return Ok(());
    }
    let Some(Host::Name(name)) = host(url) else {
        return Ok(()); // an IP literal, checked by check_url
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| format!("endpoint host {name} does not resolve (no answer in time)"))?
        .map_err(|_| format!("endpoint host {name} does not resolve"))?
        .collect::<Vec<_>>();
    if addrs.is_empty() {
        return Err(format!("endpoint host {name} does not resolve"));
    }
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "endpoint host {name} resolves to {}, which is not a public address",
            bad.ip()
        ));
    }
    Ok(())
}

/// What can be checked without resolving: the scheme, no credentials, and
/// (unless `allow_insecure`) an IP-literal host is public. Run again before
/// every send, since the HTTP client does not resolve IP literals.
pub fn check_url(url: &Url, allow_insecure: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err("endpoint must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint must not carry credentials".into());
    }
    let ip = match host(url) {
        None => return Err("endpoint has no host".into()),
        Some(Host::Name(_)) => return Ok(()),
        Some(Host::Ip(ip)) => ip,
    };
    if !allow_insecure && !is_public(ip) {
        return Err(format!("endpoint address {ip} is not a public address"));
    }
    Ok(())
}

enum Host<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

/// The URL's host: an address literal (IPv6 in brackets) or a name.
fn host(url: &Url) -> Option<Host<'_>> {
    let h = url.host_str().filter(|h| !h.is_empty())?;
    let bare = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(h),
    })
}

/// The push client's resolver: the system's answers minus every non-public
/// address; a name with none left fails to resolve.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("an address"))
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!public(a), "{a} counted as public");
        }
    }

    #[test]
    fn public_addresses_are() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert!(public(a), "{a} counted as not public");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let check = |s: &str, insecure| check_url(&Url::parse(s).expect("url"), insecure);
        assert!(check("https://push.example.com/x", false).is_ok());
        assert!(check("https://93.184.216.34/x", false).is_ok());
        assert!(check("http://push.example.com/x", false).is_err());
        assert!(check("http://push.example.com/x", true).is_ok());
        assert!(check("ftp://push.example.com/x", true).is_err());
        assert!(check("https://user:pw@push.example.com/x", false).is_err());
        // The URL parser folds the exotic IPv4 spellings into the address.
        for s in [
            "https://127.0.0.1/x",
            "https://0x7f000001/x",
            "https://2130706433/x",
            "https://0177.0.0.1/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::1]:8443/x",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(check(s, false).is_err(), "{s} passed");
            assert!(
                check(s, true).is_ok(),
                "{s} refused with insecure endpoints allowed"
            );
        }
    }

    #[tokio::test]
    async fn names_that_resolve_inward_are_refused() {
        let url = Url::parse("https://localhost/push").expect("url");
        let why = check_endpoint(&url, false).await.expect_err("localhost");
        assert!(why.contains("not a public address"), "{why}");
        assert!(check_endpoint(&url, true).await.is_ok());
        // At send time the resolver drops the loopback answers: nothing left.
        let name: Name = "localhost".parse().expect("name");
        assert!(PublicOnly.resolve(name).await.is_err());
    }
}
