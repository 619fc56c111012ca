//! The JSON line of a run: CPU per forwarded packet (server user and sys),
//! throughput, loss, feedback, latency, memory, and whether the run counts
//! (the generator not saturated, no kernel drops, everyone up).

use serde_json::{json, Value};

use crate::scenario::Shape;
use crate::stats::{percentiles_ms, Shared, Totals};
use crate::sysinfo::{ticks_per_sec, Cpu, Sample};
use crate::{Args, Scenario};

/// Above this share of its core the generator is the bottleneck.
const LOADGEN_CPU_LIMIT: f64 = 80.0;
/// Publishers' frames later than this (p99) mean the generator lags.
const PACING_LIMIT_MS: f64 = 5.0;
/// Other processes using more than this share of a core disturb the run.
const OTHER_CPU_LIMIT: f64 = 15.0;

pub struct Window<'a> {
    pub args: &'a Args,
    pub shape: &'a Shape,
    pub room: &'a str,
    /// Everyone joined and received before the window.
    pub ready: bool,
    /// Before anyone joined.
    pub base: Sample,
    pub start: Sample,
    pub end: Sample,
    /// Counters over the window.
    pub delta: Totals,
    /// Counters since the start.
    pub total: Totals,
    pub shared: &'a Shared,
}

fn cpu_delta(a: Option<Cpu>, b: Option<Cpu>) -> Option<Cpu> {
    let (a, b) = (a?, b?);
    Some(Cpu {
        user: b.user.saturating_sub(a.user),
        sys: b.sys.saturating_sub(a.sys),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub fn build(w: &Window) -> Value {
    let d = &w.delta;
    let secs = w
        .end
        .at
        .saturating_duration_since(w.start.at)
        .as_secs_f64()
        .max(1e-3);
    let tps = ticks_per_sec() as f64;
    let us_per_tick = 1e6 / tps;
    let pkts = d.rx_packets;
    let per_pkt =
        |ticks: u64| (pkts > 0).then(|| round(ticks as f64 * us_per_tick / pkts as f64, 3));
    let server = cpu_delta(w.start.server, w.end.server);
    let own = cpu_delta(w.start.own, w.end.own);
    let loadgen_cpu_pct = own.map(|c| round((c.user + c.sys) as f64 / tps / secs * 100.0, 1));
    let server_cpu_pct = server.map(|c| round((c.user + c.sys) as f64 / tps / secs * 100.0, 1));
    // What neither the server nor we used: other processes on the box.
    let other_cpu_pct = match (w.start.host_busy, w.end.host_busy) {
        (Some(a), Some(b)) => {
            let mine = server.map_or(0, |c| c.user + c.sys) + own.map_or(0, |c| c.user + c.sys);
            Some(round(
                b.saturating_sub(a).saturating_sub(mine) as f64 / tps / secs * 100.0,
                1,
            ))
        }
        _ => None,
    };
    let unique = d.rx_packets.saturating_sub(d.late);
    let expected = unique + d.lost;
    let pct = |x: u64| {
        if expected == 0 {
            0.0
        } else {
            round(x as f64 * 100.0 / expected as f64, 4)
        }
    };
    let participants = w.shape.participants() as u64;
    let rss_per = match (w.base.server_rss_kb, w.end.server_rss_kb) {
        // Churn has no steady population to divide by.
        _ if w.args.scenario == Scenario::D => None,
        (Some(b), Some(e)) if participants > 0 => {
            Some(round(e.saturating_sub(b) as f64 / participants as f64, 1))
        }
        _ => None,
    };
    let udp = |f: fn(&crate::sysinfo::UdpErrors) -> u64| -> Option<u64> {
        Some(f(&w.end.udp?).saturating_sub(f(&w.start.udp?)))
    };
    let rcvbuf = udp(|u| u.rcvbuf);
    let sndbuf = udp(|u| u.sndbuf);

    let mut invalid = Vec::new();
    if loadgen_cpu_pct.is_some_and(|p| p > LOADGEN_CPU_LIMIT) {
        invalid.push("loadgen_saturated");
    }
    if rcvbuf.is_some_and(|x| x > 0) || sndbuf.is_some_and(|x| x > 0) {
        invalid.push("udp_buffer_drops");
    }
    if other_cpu_pct.is_some_and(|p| p > OTHER_CPU_LIMIT) {
        invalid.push("host_busy");
    }
    if !w.ready {
        invalid.push("not_everyone_up");
    }
    if w.total.join_failed > 0 {
        invalid.push("join_failures");
    }

    // performance.md §4.3: app loss < 0.1 %, no kernel drops, p99 < 20 ms.
    let p99_ms = w.shared.latency.borrow().value_at_quantile(0.99) as f64 / 1000.0;
    let within_capacity =
        pct(d.lost) < 0.1 && rcvbuf.is_none_or(|x| x == 0) && p99_ms < 20.0 && w.ready;
    // The generator's own timers: frames sent later than scheduled.
    let pacing_p99_ms = w.shared.pacing.borrow().value_at_quantile(0.99) as f64 / 1000.0;
    if pacing_p99_ms > PACING_LIMIT_MS {
        invalid.push("loadgen_pacing");
    }
    let n = match w.args.scenario {
        Scenario::C => json!(w.args.m.unwrap_or(4)),
        Scenario::D => json!(w.args.ramp_rate),
        _ => json!(w.args.n),
    };
    let mut out = json!({
        "server": format!("{:?}", w.args.server).to_lowercase(),
        "scenario": format!("{:?}", w.args.scenario),
        "n": n,
        "m": w.args.m,
        "room": w.room,
        "publishers": w.shape.publishers.len(),
        "receivers": w.shape.receivers.len(),
        "simulcast": !w.args.no_simulcast,
        "quality": match w.args.size {
            Some((wd, ht)) => format!("{wd}x{ht}"),
            None => format!("{:?}", w.args.quality).to_lowercase(),
        },
        "seconds": round(secs, 3),
        "joined": w.total.joined,
        "join_failed": w.total.join_failed,
        "receiving": w.total.receiving,
        "forwarded_packets": pkts,
        "forwarded_pps": round(pkts as f64 / secs, 1),
        "video_pps": round(d.rx_video as f64 / secs, 1),
        "audio_pps": round(d.rx_audio as f64 / secs, 1),
        "video_layer_pps": {
            "q": round(d.rx_q as f64 / secs, 1),
            "h": round(d.rx_h as f64 / secs, 1),
            "f": round(d.rx_f as f64 / secs, 1),
        },
        "rx_payload_mbps": round(d.rx_bytes as f64 * 8.0 / secs / 1e6, 3),
        "published_pps": round(d.tx_packets as f64 / secs, 1),
        "server_cpu_pct": server_cpu_pct,
        "server_user_us_per_pkt": server.and_then(|c| per_pkt(c.user)),
        "server_sys_us_per_pkt": server.and_then(|c| per_pkt(c.sys)),
        "server_us_per_pkt": server.and_then(|c| per_pkt(c.user + c.sys)),
        "loss_pct": pct(d.lost),
        "loss_after_rtx_pct": pct(d.lost.saturating_sub(d.late)),
        "nack": d.nack_sent,
        "nack_to_publishers": d.nack_recv,
        "pli": d.pli_sent,
        "pli_to_publishers": d.pli_recv,
        "rtx": d.late,
        "no_probe": d.no_probe,
        "tx_dropped": d.tx_dropped,
        "latency_ms": percentiles_ms(&w.shared.latency.borrow()),
        "latency_video_ms": percentiles_ms(&w.shared.latency_video.borrow()),
        "latency_audio_ms": percentiles_ms(&w.shared.latency_audio.borrow()),
        "first_media_ms": percentiles_ms(&w.shared.first_media.borrow()),
        "pacing_error_ms": percentiles_ms(&w.shared.pacing.borrow()),
        "rx_lag_ms": percentiles_ms(&w.shared.rx_lag.borrow()),
        "injected_loss": d.injected_loss,
        "server_rss_kb": w.end.server_rss_kb,
        "server_rss_base_kb": w.base.server_rss_kb,
        "rss_per_participant_kb": rss_per,
        "loadgen_cpu_pct": loadgen_cpu_pct,
        "loadgen_us_per_pkt": own.and_then(|c| per_pkt(c.user + c.sys)),
        "loadgen_wakes_per_s": round(d.wakes as f64 / secs, 0),
        "loadgen_datagrams_in_per_s": round(d.datagrams_in as f64 / secs, 0),
        "other_cpu_pct": other_cpu_pct,
        "signal_msgs_in_per_s": round(d.signal_msgs_in as f64 / secs, 1),
        "signal_kbps_in": round(d.signal_bytes_in as f64 * 8.0 / secs / 1000.0, 1),
        "udp_rcvbuf_errors": rcvbuf,
        "udp_sndbuf_errors": sndbuf,
        "udp_in_errors": udp(|u| u.in_errors),
        "within_capacity": within_capacity,
        "valid": invalid.is_empty(),
        "invalid": invalid,
        "errors": *w.shared.errors.borrow(),
    });
    if w.args.scenario == Scenario::D {
        let joins = d.joined;
        out["joins"] = json!(joins);
        out["joins_per_s"] = json!(round(joins as f64 / secs, 2));
        out["cpu_ms_per_join"] = json!(server.and_then(|c| (joins > 0)
            .then(|| round((c.user + c.sys) as f64 * 1000.0 / tps / joins as f64, 3))));
    }
    out
}
