//! What every participant task adds to: packet counts, losses, feedback,
//! latency and join histograms. The runtime is single-threaded, so plain
//! `Cell`s suffice; a [`Totals`] snapshot is taken at the start and the end
//! of the measurement window and the difference is reported.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds up to this (60 s).
const MAX_US: u64 = 60_000_000;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Running counters (all monotonic).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: Cell<u64>,)*
        }

        /// A snapshot of [`Counters`].
        #[derive(Debug, Default, Clone, Copy)]
        pub struct Totals {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> Totals {
                Totals { $($name: self.$name.get(),)* }
            }
        }

        impl Totals {
            /// `self - earlier`, field by field.
            pub fn since(&self, earlier: &Totals) -> Totals {
                Totals { $($name: self.$name.saturating_sub(earlier.$name),)* }
            }

            /// `self + other`, field by field (two threads' counters).
            pub fn plus(&self, other: &Totals) -> Totals {
                Totals { $($name: self.$name.wrapping_add(other.$name),)* }
            }
        }
    };
}

counters! {
    /// RTP packets received by subscribers (= packets the server forwarded).
    rx_packets,
    /// RTP payload bytes received by subscribers.
    rx_bytes,
    rx_video,
    rx_audio,
    /// Video packets received per simulcast layer (from the probe).
    rx_q,
    rx_h,
    rx_f,
    /// Sequence-number gaps (packets missing when a later one arrived).
    lost,
    /// Packets older than the highest seen (retransmissions, or reordering).
    late,
    /// Received packets whose probe could not be read.
    no_probe,
    /// NACKs and PLIs the subscribers sent.
    nack_sent,
    pli_sent,
    /// NACKs and PLIs the publishers got from the server.
    nack_recv,
    pli_recv,
    /// RTP packets the publishers wrote.
    tx_packets,
    /// Datagrams that could not be sent (socket buffer full, or an error).
    tx_dropped,
    /// Signal sessions opened, refused, ended.
    joined,
    join_failed,
    left,
    /// Connections up (ICE + DTLS), by direction.
    send_connected,
    recv_connected,
    /// Participants that received their first media packet.
    receiving,
    /// Publishing participants whose tracks the server accepted.
    published,
    /// Signaling messages and bytes the server sent us.
    signal_msgs_in,
    signal_bytes_in,
    /// RTP datagrams dropped on purpose before str0m saw them (`--recv-loss`).
    injected_loss,
    /// Generator-side work: timer wake-ups and datagrams read.
    wakes,
    datagrams_in,
}

/// Copies of a [`Shared`]'s histograms, to hand to another thread.
pub struct Histograms {
    pub latency: Histogram<u64>,
    pub latency_video: Histogram<u64>,
    pub latency_audio: Histogram<u64>,
    pub first_media: Histogram<u64>,
    pub pacing: Histogram<u64>,
    pub rx_lag: Histogram<u64>,
}

/// Everything shared by the participant tasks.
pub struct Shared {
    pub counters: Counters,
    /// Recording latencies (inside the measurement window).
    pub measuring: Cell<bool>,
    /// One-way added latency of probed packets, µs: all, video, audio.
    pub latency: RefCell<Histogram<u64>>,
    pub latency_video: RefCell<Histogram<u64>>,
    pub latency_audio: RefCell<Histogram<u64>>,
    /// Time from starting to join to the first media packet, µs.
    pub first_media: RefCell<Histogram<u64>>,
    /// How late publishers' frames went out against their schedule, µs.
    pub pacing: RefCell<Histogram<u64>>,
    /// How long probed packets waited in our sockets before we read them, µs
    /// (the generator's own delay, left out of `latency`).
    pub rx_lag: RefCell<Histogram<u64>>,
    /// First few errors, for the report (not per packet).
    pub errors: RefCell<Vec<String>>,
}

impl Shared {
    pub fn new() -> Result<Shared, String> {
        let hist = || Histogram::<u64>::new_with_bounds(1, MAX_US, 3).map_err(|e| e.to_string());
        Ok(Shared {
            counters: Counters::default(),
            measuring: Cell::new(false),
            latency: RefCell::new(hist()?),
            latency_video: RefCell::new(hist()?),
            latency_audio: RefCell::new(hist()?),
            first_media: RefCell::new(hist()?),
            pacing: RefCell::new(hist()?),
            rx_lag: RefCell::new(hist()?),
            errors: RefCell::new(Vec::new()),
        })
    }

    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get().wrapping_add(n));
    }

    pub fn inc(counter: &Cell<u64>) {
        Self::add(counter, 1);
    }

    pub fn record_latency_ns(&self, ns: u64, video: bool) {
        let us = (ns / 1000).clamp(1, MAX_US);
        let _ = self.latency.borrow_mut().record(us);
        let kind = if video {
            &self.latency_video
        } else {
            &self.latency_audio
        };
        let _ = kind.borrow_mut().record(us);
    }

    pub fn record_rx_lag_ns(&self, ns: u64) {
        let _ = self
            .rx_lag
            .borrow_mut()
            .record((ns / 1000).clamp(1, MAX_US));
    }

    pub fn record_pacing(&self, late: Duration) {
        let us = u64::try_from(late.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        let _ = self.pacing.borrow_mut().record(us);
    }

    /// Forgets the latencies (and pacing errors) recorded so far.
    pub fn reset_latency(&self) {
        for h in [
            &self.latency,
            &self.latency_video,
            &self.latency_audio,
            &self.pacing,
            &self.rx_lag,
        ] {
            if let Ok(mut h) = h.try_borrow_mut() {
                h.reset();
            }
        }
    }

    /// Copies of the histograms (for another thread to add to its own).
    pub fn histograms(&self) -> Histograms {
        Histograms {
            latency: self.latency.borrow().clone(),
            latency_video: self.latency_video.borrow().clone(),
            latency_audio: self.latency_audio.borrow().clone(),
            first_media: self.first_media.borrow().clone(),
            pacing: self.pacing.borrow().clone(),
            rx_lag: self.rx_lag.borrow().clone(),
        }
    }

    /// Adds another thread's histograms and errors to ours.
    pub fn absorb(&self, h: &Histograms, errors: &[String]) {
        for (mine, theirs) in [
            (&self.latency, &h.latency),
            (&self.latency_video, &h.latency_video),
            (&self.latency_audio, &h.latency_audio),
            (&self.first_media, &h.first_media),
            (&self.pacing, &h.pacing),
            (&self.rx_lag, &h.rx_lag),
        ] {
            // Same bounds on both sides, so adding cannot fail.
            let _ = mine.borrow_mut().add(theirs);
        }
        for e in errors {
            // Already printed by the thread that had it.
            self.keep_error(e.clone());
        }
    }

    pub fn record_first_media(&self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        let _ = self.first_media.borrow_mut().record(us);
    }

    /// Keeps the first 20 distinct error messages.
    pub fn error(&self, e: impl Into<String>) {
        let e = e.into();
        if self.keep_error(e.clone()) {
            eprintln!("loadgen: {e}");
        }
    }

    /// Keeps `e` if it is new and fewer than 20 are kept; whether it was.
    fn keep_error(&self, e: String) -> bool {
        let mut errors = self.errors.borrow_mut();
        let new = errors.len() < 20 && !errors.contains(&e);
        if new {
            errors.push(e);
        }
        new
    }
}

/// p50/p99/p99.9/max of a µs histogram, in ms.
pub fn percentiles_ms(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| us as f64 / 1000.0;
    serde_json::json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.5)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}
