//! Offering jobs to workers: a new job, the choice of worker, the
//! availability answer and the token an accepted job joins with.

use std::time::Instant;

use livekit_protocol as proto;
use proto::server_message::Message as Out;
use proto::{JobStatus, JobType};

use super::{
    new_sid, set_status, unix_ns, Hub, Job, Stage, JOB_TOKEN_TTL, MAX_IDENTITY,
    MAX_PARTICIPANT_DATA, OFFER_TIMEOUT,
};
use crate::auth::{claims_for, KeyStore, VideoGrant};
use crate::error::Error;
use crate::ids::{DispatchId, JobId, RoomName, WorkerId};

impl Hub {
    /// Makes a new job for a dispatch and offers it.
    pub(super) fn launch(&mut self, dispatch: &DispatchId, room: &RoomName, now: Instant) {
        let (Some(d), Some(r)) = (self.dispatches.get(dispatch), self.rooms.get(room)) else {
            return;
        };
        let id = JobId::new(new_sid("AJ_"));
        let job = proto::Job {
            id: id.as_str().to_string(),
            dispatch_id: d.id.clone(),
            r#type: JobType::JtRoom as i32,
            room: Some(r.info.clone()),
            metadata: d.metadata.clone(),
            agent_name: d.agent_name.clone(),
            deployment: d.deployment.clone(),
            attributes: d.attributes.clone(),
            state: Some(proto::JobState {
                status: JobStatus::JsPending as i32,
                updated_at: unix_ns(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.jobs.insert(
            id.clone(),
            Job {
                proto: job,
                key: String::new(),
                dispatch: dispatch.clone(),
                room: room.clone(),
                stage: Stage::Pending,
                tried: Vec::new(),
            },
        );
        self.offer(&id, now);
    }

    /// Offers every pending job to a worker that may take it.
    pub(super) fn offer_pending(&mut self, now: Instant) {
        let pending: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.stage, Stage::Pending))
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            self.offer(&id, now);
        }
    }

    /// Sends a pending job's `AvailabilityRequest` to the least loaded
    /// available worker of its agent that has not refused it.
    pub(super) fn offer(&mut self, id: &JobId, now: Instant) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        if !matches!(job.stage, Stage::Pending) {
            return;
        }
        let best = self
            .workers
            .iter()
            .filter(|(wid, w)| {
                w.available && w.agent_name == job.proto.agent_name && !job.tried.contains(wid)
            })
            .min_by(|(_, a), (_, b)| {
                a.load
                    .total_cmp(&b.load)
                    .then(a.registered_at.cmp(&b.registered_at))
            })
            .map(|(wid, _)| wid.clone());
        let Some(worker) = best else {
            // Every worker of the agent refused it or let it time out: it
            // fails (with none registered, or all busy, it waits instead).
            let untried = self
                .workers
                .iter()
                .any(|(wid, w)| w.agent_name == job.proto.agent_name && !job.tried.contains(wid));
            if !untried && !job.tried.is_empty() {
                self.end(id, JobStatus::JsFailed, "no agent worker accepted the job");
            }
            return;
        };
        let request = proto::AvailabilityRequest {
            job: Some(job.proto.clone()),
            resuming: false,
        };
        if let Some(job) = self.jobs.get_mut(id) {
            job.stage = Stage::Offered {
                worker: worker.clone(),
                deadline: now + OFFER_TIMEOUT,
            };
        }
        self.send(&worker, Out::Availability(request));
    }

    pub(super) fn on_availability(
        &mut self,
        from: &WorkerId,
        r: proto::AvailabilityResponse,
        now: Instant,
    ) {
        let id = JobId::new(r.job_id.clone());
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !matches!(&job.stage, Stage::Offered { worker, .. } if worker == from) {
            return;
        }
        if let Some(w) = self.workers.get_mut(from) {
            w.missed = 0;
        }
        if r.available && !participant_fits(&r) {
            tracing::warn!(job = %id, worker = %from, "agent worker asked for an oversized identity, name, metadata or attributes; taken as a refusal");
        }
        if !r.available || !participant_fits(&r) {
            if r.terminate {
                // The agent declined the job for good (livekit-agents'
                // `reject()`): nobody else is asked, as LiveKit.
                self.end(&id, JobStatus::JsSuccess, "rejected by the agent");
                return;
            }
            job.tried.push(from.clone());
            job.stage = Stage::Pending;
            self.offer(&id, now);
            return;
        }
        let identity = match self.identities.get(&job.dispatch) {
            Some(fixed) => fixed.clone(),
            None if r.participant_identity.is_empty() => format!("agent-{}", id.as_str()),
            None => r.participant_identity.clone(),
        };
        let (key, permissions) = self
            .workers
            .get(from)
            .map(|w| (w.key.clone(), w.permissions.clone()))
            .unwrap_or_default();
        let token = match job_token(&self.keys, &key, &job.room, &identity, &r, &permissions) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(job = %id, "cannot sign an agent token: {e}");
                job.stage = Stage::Ended;
                set_status(
                    &mut job.proto,
                    JobStatus::JsFailed,
                    "no API key to sign with",
                );
                return;
            }
        };
        job.stage = Stage::Assigned {
            worker: from.clone(),
        };
        job.key = key;
        if let Some(s) = job.proto.state.as_mut() {
            s.status = JobStatus::JsRunning as i32;
            s.participant_identity = identity;
            s.worker_id = from.as_str().to_string();
            s.started_at = unix_ns();
            s.updated_at = s.started_at;
        }
        let assignment = proto::JobAssignment {
            job: Some(job.proto.clone()),
            url: None,
            token,
        };
        self.send(from, Out::Assignment(assignment));
    }
}

/// The token a job's agent joins its room with.
fn job_token(
    keys: &KeyStore,
    key: &str,
    room: &RoomName,
    identity: &str,
    r: &proto::AvailabilityResponse,
    p: &proto::ParticipantPermission,
) -> Result<String, Error> {
    let grant = VideoGrant {
        room_join: true,
        room: room.as_str().to_string(),
        can_publish: Some(p.can_publish),
        can_subscribe: Some(p.can_subscribe),
        can_publish_data: Some(p.can_publish_data),
        can_update_own_metadata: Some(p.can_update_metadata),
        hidden: p.hidden,
        agent: true,
        ..Default::default()
    };
    let mut claims = claims_for(key, identity, JOB_TOKEN_TTL, Some(grant));
    claims.name = r.participant_name.clone();
    claims.metadata = r.participant_metadata.clone();
    claims.attributes = r.participant_attributes.clone();
    claims.kind = "agent".to_string();
    keys.sign(key, &claims)
}

/// Whether what a worker asks its participant to be fits the limits.
fn participant_fits(r: &proto::AvailabilityResponse) -> bool {
    let attributes: usize = r
        .participant_attributes
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    r.participant_identity.len() <= MAX_IDENTITY
        && r.participant_name.len() <= MAX_IDENTITY
        && r.participant_metadata.len() + attributes <= MAX_PARTICIPANT_DATA
}
