//! What the kernel says about the server and about us: CPU time from
//! `/proc/<pid>/stat`, RSS from `/proc/<pid>/status`, UDP buffer drops from
//! `/proc/net/snmp`.

use std::time::Instant;

/// CPU time of a process, in clock ticks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub user: u64,
    pub sys: u64,
}

/// `utime` and `stime` of `/proc/<pid>/stat` (`pid` may be `self`).
pub fn cpu(pid: &str) -> Option<Cpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    Some(Cpu {
        user: fields.get(11)?.parse().ok()?,
        sys: fields.get(12)?.parse().ok()?,
    })
}

/// `VmRSS` of `/proc/<pid>/status`, in kB.
pub fn rss_kb(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// UDP counters of `/proc/net/snmp` that mean the kernel dropped datagrams.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpErrors {
    pub rcvbuf: u64,
    pub sndbuf: u64,
    pub in_errors: u64,
}

pub fn udp_errors() -> Option<UdpErrors> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some(UdpErrors {
        rcvbuf: get("RcvbufErrors")?,
        sndbuf: get("SndbufErrors")?,
        in_errors: get("InErrors")?,
    })
}

/// Busy CPU time of the whole host (all cores), in clock ticks: the first
/// line of `/proc/stat` less idle and iowait.
pub fn host_busy() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = v.iter().take(8).sum();
    Some(total.saturating_sub(*v.get(3)?).saturating_sub(*v.get(4)?))
}

/// Clock ticks per second (`USER_HZ`).
pub fn ticks_per_sec() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// One reading of everything, at the edges of a measurement window.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub server: Option<Cpu>,
    pub server_rss_kb: Option<u64>,
    pub own: Option<Cpu>,
    pub udp: Option<UdpErrors>,
    pub host_busy: Option<u64>,
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Sample {
        let pid = server_pid.map(|p| p.to_string());
        Sample {
            at: Instant::now(),
            server: pid.as_deref().and_then(cpu),
            server_rss_kb: pid.as_deref().and_then(rss_kb),
            own: cpu("self"),
            udp: udp_errors(),
            host_busy: host_busy(),
        }
    }
}

/// Raises the open-file limit to its hard maximum (each participant holds a
/// WebSocket and up to two UDP sockets). Returns the limit now in force.
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let max = limit.maximum;
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: max,
            maximum: max,
        },
    );
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(cpu("self").is_some());
        assert!(rss_kb("self").is_some_and(|kb| kb > 0));
        assert!(udp_errors().is_some());
        assert!(host_busy().is_some());
    }
}
