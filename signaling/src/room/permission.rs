//! Track subscription permissions, as LiveKit enforces them: a publisher's
//! `subscription_permission` allows every participant (the default), or
//! lists who may receive which of its tracks. A subscription the owner does
//! not allow is withheld, not refused: the subscriber is told with
//! `subscription_permission_update { allowed: false }`, and it is made (with
//! `allowed: true`) as soon as the owner allows it.

use livekit_protocol as proto;
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use super::participant::Participant;
use crate::ids::{ParticipantSid, TrackSid};

/// Entries (participants, plus listed track sids) one `subscription_permission`
/// may carry. Every entry is read for every subscriber and track when the
/// permissions change or a subscription is made, so an unbounded list (a
/// 2 MiB frame holds ~50,000) would stall the room for everyone.
const MAX_PERMISSION_ENTRIES: usize = 4096;

/// Whether `owner`'s permissions let `subscriber` receive `track`.
pub(crate) fn permits(owner: &Participant, subscriber: &Participant, track: &str) -> bool {
    let Some(perm) = &owner.subscription_permission else {
        return true;
    };
    perm.all_participants
        || perm.track_permissions.iter().any(|tp| {
            let names_subscriber = (!tp.participant_identity.is_empty()
                && tp.participant_identity == subscriber.info.identity)
                || (!tp.participant_sid.is_empty() && tp.participant_sid == subscriber.info.sid);
            names_subscriber && (tp.all_tracks || tp.track_sids.iter().any(|t| t == track))
        })
}

/// Whether a permission list is past [`MAX_PERMISSION_ENTRIES`].
fn too_large(perm: &proto::SubscriptionPermission) -> bool {
    let entries: usize = perm
        .track_permissions
        .iter()
        .map(|tp| 1 + tp.track_sids.len())
        .sum();
    entries > MAX_PERMISSION_ENTRIES
}

fn update(owner: &ParticipantSid, track: &TrackSid, allowed: bool) -> Out {
    Out::SubscriptionPermissionUpdate(proto::SubscriptionPermissionUpdate {
        participant_sid: owner.to_string(),
        track_sid: track.to_string(),
        allowed,
    })
}

impl RoomActor {
    /// The participant that published `track`.
    fn owner_of(&self, track: &TrackSid) -> Option<ParticipantSid> {
        self.participants
            .iter()
            .find(|(_, p)| p.info.tracks.iter().any(|t| t.sid == track.as_str()))
            .map(|(sid, _)| sid.clone())
    }

    /// Subscribes `sid` to `track`, unless the track's owner does not allow
    /// it: then the wish is kept (and met once allowed) and the subscriber
    /// is told. `Err` only for what the media layer refuses.
    pub(crate) fn subscribe_permitted(
        &mut self,
        sid: &ParticipantSid,
        track: &TrackSid,
    ) -> Result<(), nodo_sfu::SfuError> {
        let allowed = match self.owner_of(track) {
            Some(owner) => {
                let ok = match (self.participants.get(&owner), self.participants.get(sid)) {
                    (Some(o), Some(s)) => permits(o, s, track.as_str()),
                    _ => true,
                };
                if !ok {
                    if let Some(s) = self.participants.get_mut(sid) {
                        if s.withheld.insert(track.clone()) {
                            s.send(update(&owner, track, false));
                        }
                    }
                }
                ok
            }
            None => true,
        };
        if !allowed {
            return Ok(());
        }
        self.media.subscribe(sid, track)
    }

    /// Ends a subscription, and forgets it as a withheld wish too.
    pub(crate) fn unsubscribe(&mut self, sid: &ParticipantSid, track: &TrackSid) {
        self.media.unsubscribe(sid, track);
        if let Some(p) = self.participants.get_mut(sid) {
            p.withheld.remove(track);
        }
    }

    /// A publisher's new permissions: subscriptions it no longer allows are
    /// ended and withheld, withheld ones it now allows are made; each
    /// subscriber concerned is told.
    pub(crate) fn set_subscription_permission(
        &mut self,
        owner: &ParticipantSid,
        perm: proto::SubscriptionPermission,
    ) {
        if too_large(&perm) {
            tracing::warn!(participant = %owner, "subscription_permission with over {MAX_PERMISSION_ENTRIES} entries ignored");
            return;
        }
        let Some(o) = self.participants.get_mut(owner) else {
            return;
        };
        o.subscription_permission = (!perm.all_participants).then_some(perm);
        let tracks: Vec<TrackSid> = o
            .info
            .tracks
            .iter()
            .map(|t| TrackSid::new(&t.sid))
            .collect();
        let others: Vec<ParticipantSid> = self
            .participants
            .keys()
            .filter(|s| *s != owner)
            .cloned()
            .collect();
        for sid in others {
            for track in &tracks {
                let (Some(o), Some(s)) =
                    (self.participants.get(owner), self.participants.get(&sid))
                else {
                    continue;
                };
                let allowed = permits(o, s, track.as_str());
                let withheld = s.withheld.contains(track);
                if !allowed && self.media.is_subscribed(&sid, track) {
                    tracing::debug!(subscriber = %sid, %track, "subscription revoked by the publisher's permissions");
                    self.media.unsubscribe(&sid, track);
                    if let Some(s) = self.participants.get_mut(&sid) {
                        s.withheld.insert(track.clone());
                        s.send(update(owner, track, false));
                    }
                } else if allowed && withheld {
                    if let Some(s) = self.participants.get_mut(&sid) {
                        s.withheld.remove(track);
                        s.send(update(owner, track, true));
                    }
                    if let Err(e) = self.media.subscribe(&sid, track) {
                        tracing::debug!(%sid, %track, "allowed subscription failed: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::auth::claims_for;
    use crate::room::participant::JoinOptions;

    fn participant(sid: &str, identity: &str) -> Participant {
        let (tx, _rx) = mpsc::channel(1);
        let claims = claims_for("devkey", identity, Duration::from_secs(60), None);
        Participant::new(
            &ParticipantSid::new(sid),
            &claims,
            JoinOptions::default(),
            tx,
            1,
        )
    }

    fn allow(entries: Vec<proto::TrackPermission>) -> Option<proto::SubscriptionPermission> {
        Some(proto::SubscriptionPermission {
            all_participants: false,
            track_permissions: entries,
        })
    }

    #[test]
    fn allow_lists_match_by_identity_or_sid_and_by_track() {
        let mut owner = participant("PA_owner", "owner");
        let bob = participant("PA_bob", "bob");
        let carol = participant("PA_carol", "carol");
        assert!(permits(&owner, &bob, "TR_a"), "everyone by default");
        owner.subscription_permission = allow(vec![
            proto::TrackPermission {
                participant_identity: "bob".into(),
                all_tracks: true,
                ..Default::default()
            },
            proto::TrackPermission {
                participant_sid: "PA_carol".into(),
                track_sids: vec!["TR_b".into()],
                ..Default::default()
            },
        ]);
        assert!(permits(&owner, &bob, "TR_a") && permits(&owner, &bob, "TR_b"));
        assert!(!permits(&owner, &carol, "TR_a"));
        assert!(permits(&owner, &carol, "TR_b"));
        // An entry naming nobody (empty identity and sid) matches nobody.
        owner.subscription_permission = allow(vec![proto::TrackPermission {
            all_tracks: true,
            ..Default::default()
        }]);
        assert!(!permits(&owner, &bob, "TR_a"));
    }

    #[test]
    fn an_oversized_list_is_refused() {
        let entry = |n: usize| proto::TrackPermission {
            participant_identity: format!("p{n}"),
            track_sids: vec!["TR_x".into(); 3],
            ..Default::default()
        };
        let perm = |n: usize| proto::SubscriptionPermission {
            all_participants: false,
            track_permissions: (0..n).map(entry).collect(),
        };
        assert!(!too_large(&perm(MAX_PERMISSION_ENTRIES / 4)));
        assert!(too_large(&perm(MAX_PERMISSION_ENTRIES / 4 + 1)));
    }
}
