//! Periodic room-wide reports: active speakers and connection quality.

use std::collections::{HashMap, HashSet};

use super::{MediaRoom, SfuEvent, ACTIVE_SHARE};
use crate::ids::{ParticipantSid, TrackKind};

impl MediaRoom {
    pub(super) fn speaker_tick(&mut self) {
        let mut levels: HashMap<ParticipantSid, f32> = HashMap::new();
        for t in self
            .tracks
            .values_mut()
            .filter(|t| t.kind == TrackKind::Audio)
        {
            if t.audio_packets > 0 && !t.muted {
                let share = t.audio_active_packets as f32 / t.audio_packets as f32;
                if share >= ACTIVE_SHARE {
                    let level = t.audio_level_sum / t.audio_packets as f32;
                    let e = levels.entry(t.owner.clone()).or_default();
                    *e = e.max(level);
                }
            }
            t.audio_packets = 0;
            t.audio_active_packets = 0;
            t.audio_level_sum = 0.0;
        }
        let now_active: HashSet<ParticipantSid> = levels.keys().cloned().collect();
        if now_active == self.speakers && now_active.is_empty() {
            return;
        }
        let mut changes: Vec<(ParticipantSid, f32, bool)> =
            levels.into_iter().map(|(p, l)| (p, l, true)).collect();
        for gone in self.speakers.difference(&now_active) {
            changes.push((gone.clone(), 0.0, false));
        }
        changes.sort_by(|a, b| b.1.total_cmp(&a.1));
        if now_active != self.speakers || !changes.is_empty() {
            self.speakers = now_active;
            self.events.push_back(SfuEvent::Speakers(changes));
        }
    }

    pub(super) fn quality_tick(&mut self) {
        let mut out = Vec::new();
        for (sid, pp) in &self.participants {
            let mut score: f32 = 5.0;
            for id in [pp.publisher, pp.subscriber] {
                if let Some(p) = self.peers.get(&id) {
                    // Loss weighs most; RTT above 300 ms costs up to a point.
                    let loss_pen = (p.loss * 40.0).min(4.0);
                    let rtt_pen = p.rtt.map_or(0.0, |r| {
                        ((r.as_millis() as f32 - 300.0) / 300.0).clamp(0.0, 1.5)
                    });
                    score = score.min(5.0 - loss_pen - rtt_pen);
                }
            }
            out.push((sid.clone(), score.max(1.0)));
        }
        if !out.is_empty() {
            self.events.push_back(SfuEvent::Quality(out));
        }
    }
}
