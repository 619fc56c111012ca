//! The dispatcher's state machine: registered workers, the dispatches of
//! open rooms, and their jobs. Sans-IO: every input carries its time, and
//! what must go out (a message to a worker, a participant to remove) is
//! queued as an [`Action`] for the owner to carry out.
//!
//! A job's life: `Pending` (no worker offered yet) -> `Offered` (an
//! `AvailabilityRequest` is out to one worker) -> `Assigned` (the worker
//! accepted; it got a `JobAssignment` with a token) -> `Ended`. A worker
//! that refuses or does not answer in [`OFFER_TIMEOUT`] is skipped and the
//! next one is asked. A worker whose connection drops gets [`LOST_GRACE`] to
//! reconnect and claim its jobs back (`MigrateJobRequest`); after that its
//! jobs are given to another worker (LiveKit OSS leaves them dead,
//! agents#1472), and the lost job's participant is removed from the room so
//! two agents never answer at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::server_message::Message as Out;
use proto::worker_message::Message as In;
use proto::JobStatus;

use crate::auth::KeyStore;
use crate::error::Error;
use crate::ids::{new_sid, DispatchId, JobId, RoomName, WorkerId};

/// How long a worker has to answer an `AvailabilityRequest`.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lost worker's jobs wait for it to reconnect before they are
/// given to another worker. livekit-agents retries at once, then after 2 s.
pub const LOST_GRACE: Duration = Duration::from_secs(3);
/// Validity of the token a job joins its room with (it gets refreshed
/// tokens once connected), as LiveKit's.
pub const JOB_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Registered workers at once; more are refused.
pub const MAX_WORKERS: usize = 1024;
/// Offers a worker may let time out in a row before it is dropped (it
/// registered but does not answer: it would hold every job up).
const MAX_MISSED_OFFERS: u32 = 2;
/// Ended jobs listed per dispatch (the latest); older ones are forgotten.
const ENDED_JOBS_KEPT: usize = 8;
/// Closed room sids remembered, so a late event or dispatch for one is ignored.
const CLOSED_ROOMS_KEPT: usize = 256;
/// Largest participant identity or name a worker may ask for.
const MAX_IDENTITY: usize = 256;
/// Largest participant metadata plus attributes a worker may ask for.
const MAX_PARTICIPANT_DATA: usize = 64 * 1024;

/// What the owner of the hub must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message to a worker's connection.
    Send(WorkerId, Box<proto::ServerMessage>),
    /// Remove an agent participant whose job was given to another worker.
    RemoveParticipant { room: RoomName, identity: String },
    /// Close a worker's connection (it does not answer offers).
    Drop(WorkerId),
}

struct Worker {
    /// The API key its token was signed with: its jobs' tokens are signed
    /// with it too, and only a worker of the same key may claim them back.
    key: String,
    agent_name: String,
    permissions: proto::ParticipantPermission,
    available: bool,
    load: f32,
    registered_at: Instant,
    /// Offers it let time out in a row.
    missed: u32,
}

enum Stage {
    Pending,
    Offered { worker: WorkerId, deadline: Instant },
    Assigned { worker: WorkerId },
    Lost { since: Instant },
    Ended,
}

struct Job {
    proto: proto::Job,
    /// The API key of the worker that ran it.
    key: String,
    dispatch: DispatchId,
    room: RoomName,
    stage: Stage,
    /// Workers that refused this job or let the offer time out.
    tried: Vec<WorkerId>,
}

struct OpenRoom {
    info: proto::Room,
    /// Its Opened event was seen (its own dispatches are made).
    opened: bool,
}

/// Registered workers, open rooms' dispatches and their jobs.
pub struct Hub {
    keys: KeyStore,
    workers: HashMap<WorkerId, Worker>,
    rooms: HashMap<RoomName, OpenRoom>,
    dispatches: HashMap<DispatchId, proto::AgentDispatch>,
    /// Dispatches whose agent joins under an identity of Nodo's choosing
    /// (an assistant called like a person), not the worker's.
    identities: HashMap<DispatchId, String>,
    jobs: HashMap<JobId, Job>,
    /// Sids of rooms closed lately (newest last).
    closed: VecDeque<String>,
    actions: VecDeque<Action>,
}

fn unix_ns() -> i64 {
    crate::auth::unix_now_ms() * 1_000_000
}

fn job_status(s: i32) -> JobStatus {
    JobStatus::try_from(s).unwrap_or(JobStatus::JsPending)
}

impl Hub {
    pub fn new(keys: KeyStore) -> Hub {
        Hub {
            keys,
            workers: HashMap::new(),
            rooms: HashMap::new(),
            dispatches: HashMap::new(),
            identities: HashMap::new(),
            jobs: HashMap::new(),
            closed: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// Next thing to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether a registered worker serves `agent_name`.
    pub fn serves(&self, agent_name: &str) -> bool {
        self.workers.values().any(|w| w.agent_name == agent_name)
    }

    /// The agent names the registered workers serve, each once.
    pub fn served_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .workers
            .values()
            .map(|w| w.agent_name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether another worker may register.
    pub fn has_room_for_a_worker(&self) -> bool {
        self.workers.len() < MAX_WORKERS
    }

    /// A worker registered with a token of API key `key` (its request was
    /// checked by the caller: a room job type). Pending jobs for its agent
    /// are offered to it.
    pub fn register(
        &mut self,
        id: WorkerId,
        key: &str,
        req: &proto::RegisterWorkerRequest,
        now: Instant,
    ) -> proto::RegisterWorkerResponse {
        let permissions =
            req.allowed_permissions
                .clone()
                .unwrap_or_else(|| proto::ParticipantPermission {
                    can_subscribe: true,
                    can_publish: true,
                    can_publish_data: true,
                    can_update_metadata: true,
                    ..Default::default()
                });
        tracing::info!(worker = %id, agent = %req.agent_name, version = %req.version, "agent worker registered");
        self.workers.insert(
            id.clone(),
            Worker {
                key: key.to_string(),
                agent_name: req.agent_name.clone(),
                permissions,
                available: true,
                load: 0.0,
                registered_at: now,
                missed: 0,
            },
        );
        self.offer_pending(now);
        proto::RegisterWorkerResponse {
            worker_id: id.as_str().to_string(),
            ..Default::default()
        }
    }

    /// A message from a registered worker.
    pub fn on_message(&mut self, from: &WorkerId, msg: In, now: Instant) {
        match msg {
            In::Availability(r) => self.on_availability(from, r, now),
            In::UpdateJob(u) => self.on_job_update(from, u),
            In::UpdateWorker(u) => {
                let Some(w) = self.workers.get_mut(from) else {
                    return;
                };
                let was = w.available;
                if let Some(s) = u.status {
                    w.available = s == proto::WorkerStatus::WsAvailable as i32;
                }
                if u.load.is_finite() {
                    w.load = u.load.clamp(0.0, 1.0);
                }
                if w.available && !was {
                    self.offer_pending(now);
                }
            }
            In::MigrateJob(m) => self.on_migrate(from, &m.job_ids),
            // Handled by the connection, or not offered by Nodo.
            In::Register(_) | In::Ping(_) | In::SimulateJob(_) => {}
        }
    }

    /// A worker's connection closed. Offers out to it move on at once; its
    /// running jobs wait [`LOST_GRACE`] for it to come back.
    pub fn worker_gone(&mut self, id: &WorkerId, now: Instant) {
        if self.workers.remove(id).is_none() {
            return;
        }
        tracing::info!(worker = %id, "agent worker gone");
        let mut retry = Vec::new();
        for (jid, job) in &mut self.jobs {
            match &job.stage {
                Stage::Offered { worker, .. } if worker == id => {
                    job.tried.push(id.clone());
                    job.stage = Stage::Pending;
                    retry.push(jid.clone());
                }
                Stage::Assigned { worker } if worker == id => {
                    job.stage = Stage::Lost { since: now };
                }
                _ => {}
            }
        }
        for jid in retry {
            self.offer(&jid, now);
        }
    }

    /// A room opened on this node: its dispatches are made and launched.
    /// `agents: None` dispatches every unnamed agent (LiveKit's default);
    /// `Some` exactly those listed (none for an empty list).
    pub fn room_opened(
        &mut self,
        room: proto::Room,
        agents: Option<Vec<proto::RoomAgentDispatch>>,
        now: Instant,
    ) {
        if self.closed.contains(&room.sid) {
            return; // it closed before this event arrived
        }
        let name = RoomName::new(room.name.clone());
        match self.rooms.get_mut(&name) {
            Some(r) if r.info.sid == room.sid => {
                if r.opened {
                    return;
                }
                r.opened = true;
            }
            _ => {
                self.forget_room(&name);
                let open = OpenRoom {
                    info: room,
                    opened: true,
                };
                self.rooms.insert(name.clone(), open);
            }
        }
        let agents = agents.unwrap_or_else(|| vec![proto::RoomAgentDispatch::default()]);
        for a in agents {
            let unnamed = a.agent_name.is_empty();
            if unnamed && !self.serves("") {
                // Nothing to dispatch; a later unnamed worker is not sent
                // into rooms opened before it (as LiveKit).
                continue;
            }
            let d = new_dispatch(&name, a);
            if !unnamed && !self.serves(&d.agent_name) {
                tracing::warn!(room = %name, agent = %d.agent_name, "dispatch for an agent no worker serves; it waits for one");
            }
            self.add_dispatch(d, now);
        }
    }

    /// Whether room `sid` was seen closing (lately).
    pub fn is_closed(&self, sid: &str) -> bool {
        self.closed.iter().any(|s| s == sid)
    }

    /// Room `sid` closed: its jobs are terminated and its dispatches
    /// forgotten. A room of the same name opened since is left alone.
    pub fn room_closed(&mut self, name: &RoomName, sid: &str) {
        if self.closed.len() >= CLOSED_ROOMS_KEPT {
            self.closed.pop_front();
        }
        self.closed.push_back(sid.to_string());
        if self.rooms.get(name).is_some_and(|r| r.info.sid == sid) {
            self.forget_room(name);
        }
    }

    /// Terminates a room's jobs and forgets its dispatches.
    fn forget_room(&mut self, name: &RoomName) {
        if self.rooms.remove(name).is_none() {
            return;
        }
        self.dispatches.retain(|_, d| d.room != name.as_str());
        let dispatches = &self.dispatches;
        self.identities.retain(|id, _| dispatches.contains_key(id));
        let gone: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| &j.room == name)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(job) = self.jobs.remove(&id) {
                self.terminate(&id, &job);
            }
        }
    }

    /// `CreateDispatch` into an open room (`room` is its current info).
    /// With `identity`, the agent joins under it whatever its worker asks.
    pub fn create_dispatch(
        &mut self,
        room: proto::Room,
        req: proto::CreateAgentDispatchRequest,
        identity: Option<String>,
        now: Instant,
    ) -> Result<proto::AgentDispatch, Error> {
        if !self.serves(&req.agent_name) {
            return Err(Error::NoAgentWorker(req.agent_name));
        }
        if self.closed.contains(&room.sid) {
            return Err(Error::RoomClosing);
        }
        let name = RoomName::new(room.name.clone());
        if self.rooms.get(&name).is_none_or(|r| r.info.sid != room.sid) {
            // The room's Opened event is still on its way: note the room
            // now; the event then finds it and adds only its own dispatches.
            self.forget_room(&name);
            let open = OpenRoom {
                info: room,
                opened: false,
            };
            self.rooms.insert(name.clone(), open);
        }
        let asked = proto::RoomAgentDispatch {
            agent_name: req.agent_name,
            metadata: req.metadata,
            attributes: req.attributes,
            restart_policy: req.restart_policy,
            deployment: req.deployment,
        };
        let d = new_dispatch(&name, asked);
        if let Some(identity) = identity {
            self.identities
                .insert(DispatchId::new(d.id.clone()), identity);
        }
        let id = self.add_dispatch(d, now);
        Ok(self.dispatch_view(&id).unwrap_or_default())
    }

    /// The dispatches of a room (one if `id` is given), with their jobs.
    pub fn list(&self, room: &RoomName, id: &str) -> Vec<proto::AgentDispatch> {
        let mut out: Vec<proto::AgentDispatch> = self
            .dispatches
            .values()
            .filter(|d| d.room == room.as_str() && (id.is_empty() || d.id == id))
            .filter_map(|d| self.dispatch_view(&DispatchId::new(d.id.clone())))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// `DeleteDispatch`: its jobs are terminated.
    pub fn delete(&mut self, room: &RoomName, id: &str) -> Result<proto::AgentDispatch, Error> {
        let did = DispatchId::new(id);
        let found = self
            .dispatches
            .get(&did)
            .is_some_and(|d| d.room == room.as_str());
        if !found {
            return Err(Error::DispatchNotFound(id.to_string()));
        }
        let mut view = self.dispatch_view(&did).unwrap_or_default();
        self.dispatches.remove(&did);
        self.identities.remove(&did);
        let jobs: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.dispatch == did)
            .map(|(id, _)| id.clone())
            .collect();
        for jid in jobs {
            if let Some(job) = self.jobs.remove(&jid) {
                self.terminate(&jid, &job);
            }
        }
        if let Some(s) = view.state.as_mut() {
            s.deleted_at = unix_ns();
        }
        Ok(view)
    }

    /// Offers that timed out move on; lost jobs past their grace are
    /// given to another worker.
    pub fn tick(&mut self, now: Instant) {
        let mut retry = Vec::new();
        let mut lost = Vec::new();
        let mut silent = Vec::new();
        for (jid, job) in &mut self.jobs {
            match &job.stage {
                Stage::Offered { worker, deadline } if *deadline <= now => {
                    let worker = worker.clone();
                    tracing::info!(job = %jid, worker = %worker, "agent worker did not answer the job offer");
                    job.tried.push(worker.clone());
                    job.stage = Stage::Pending;
                    retry.push(jid.clone());
                    silent.push(worker);
                }
                Stage::Lost { since } if *since + LOST_GRACE <= now => lost.push(jid.clone()),
                _ => {}
            }
        }
        for w in silent {
            let Some(worker) = self.workers.get_mut(&w) else {
                continue;
            };
            worker.missed += 1;
            if worker.missed >= MAX_MISSED_OFFERS {
                tracing::warn!(worker = %w, "agent worker dropped: it does not answer job offers");
                self.actions.push_back(Action::Drop(w.clone()));
                self.worker_gone(&w, now);
            }
        }
        for jid in retry {
            self.offer(&jid, now);
        }
        for jid in lost {
            self.redispatch(&jid, now);
        }
    }

    fn add_dispatch(&mut self, mut d: proto::AgentDispatch, now: Instant) -> DispatchId {
        d.state = Some(proto::AgentDispatchState {
            created_at: unix_ns(),
            ..Default::default()
        });
        let id = DispatchId::new(d.id.clone());
        let room = RoomName::new(d.room.clone());
        self.dispatches.insert(id.clone(), d);
        self.launch(&id, &room, now);
        id
    }

    /// A dispatch as the API shows it: with every job it has had.
    fn dispatch_view(&self, id: &DispatchId) -> Option<proto::AgentDispatch> {
        let mut d = self.dispatches.get(id)?.clone();
        let mut jobs: Vec<proto::Job> = self
            .jobs
            .values()
            .filter(|j| &j.dispatch == id)
            .map(|j| j.proto.clone())
            .collect();
        jobs.sort_by_key(|j| j.state.as_ref().map_or(0, |s| s.updated_at));
        if let Some(s) = d.state.as_mut() {
            s.jobs = jobs;
        }
        Some(d)
    }

    fn on_job_update(&mut self, from: &WorkerId, u: proto::UpdateJobStatus) {
        let id = JobId::new(u.job_id.clone());
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !matches!(&job.stage, Stage::Assigned { worker } if worker == from) {
            return;
        }
        let status = job_status(u.status);
        if matches!(status, JobStatus::JsSuccess | JobStatus::JsFailed) {
            tracing::info!(job = %id, ?status, error = %u.error, "agent job ended");
            let error: String = u.error.chars().take(1024).collect();
            self.end(&id, status, &error);
        } else {
            set_status(&mut job.proto, status, "");
        }
    }

    /// A reconnected worker claims jobs it was running. Jobs it may not
    /// have (gone, ended, given to another worker, another key's) are
    /// terminated on its side, so no two agents run one job.
    fn on_migrate(&mut self, from: &WorkerId, ids: &[String]) {
        let Some((agent, key)) = self
            .workers
            .get(from)
            .map(|w| (w.agent_name.clone(), w.key.clone()))
        else {
            return;
        };
        for jid in ids.iter().take(1024) {
            let claimable = self.jobs.get(&JobId::new(jid.clone())).is_some_and(|j| {
                matches!(j.stage, Stage::Lost { .. }) && j.proto.agent_name == agent && j.key == key
            });
            if !claimable {
                let stop = Out::Termination(proto::JobTermination {
                    job_id: jid.clone(),
                });
                self.send(from, stop);
                continue;
            }
            if let Some(job) = self.jobs.get_mut(&JobId::new(jid.clone())) {
                tracing::info!(job = %jid, worker = %from, "agent job taken back by its reconnected worker");
                job.stage = Stage::Assigned {
                    worker: from.clone(),
                };
                if let Some(s) = job.proto.state.as_mut() {
                    s.worker_id = from.as_str().to_string();
                    s.updated_at = unix_ns();
                }
            }
        }
    }

    /// A lost job ends failed, its participant is removed, and its dispatch
    /// gets a new job unless its restart policy says never.
    fn redispatch(&mut self, id: &JobId, now: Instant) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        if !matches!(job.stage, Stage::Lost { .. }) {
            return;
        }
        let (dispatch, room) = (job.dispatch.clone(), job.room.clone());
        let restart = self
            .dispatches
            .get(&dispatch)
            .is_some_and(|d| d.restart_policy != proto::JobRestartPolicy::JrpNever as i32);
        tracing::warn!(job = %id, room = %room, restart, "agent worker lost");
        self.remove_participant(id);
        self.end(id, JobStatus::JsFailed, "agent worker lost");
        if restart {
            self.launch(&dispatch, &room, now);
        }
    }

    /// Asks for a job's agent participant to be removed from its room.
    fn remove_participant(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        let identity = job
            .proto
            .state
            .as_ref()
            .map(|s| s.participant_identity.clone())
            .unwrap_or_default();
        if !identity.is_empty() {
            let room = job.room.clone();
            self.actions
                .push_back(Action::RemoveParticipant { room, identity });
        }
    }

    /// Ends a job, keeping the latest [`ENDED_JOBS_KEPT`] ended jobs of its
    /// dispatch for the API.
    fn end(&mut self, id: &JobId, status: JobStatus, error: &str) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        set_status(&mut job.proto, status, error);
        job.stage = Stage::Ended;
        let dispatch = job.dispatch.clone();
        let mut ended: Vec<(i64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.dispatch == dispatch && matches!(j.stage, Stage::Ended))
            .map(|(jid, j)| {
                (
                    j.proto.state.as_ref().map_or(0, |s| s.ended_at),
                    jid.clone(),
                )
            })
            .collect();
        if ended.len() > ENDED_JOBS_KEPT {
            ended.sort();
            for (_, old) in &ended[..ended.len() - ENDED_JOBS_KEPT] {
                self.jobs.remove(old);
            }
        }
    }

    /// Tells a job's worker to stop it, if one has it; a lost job's
    /// participant is removed instead (nobody can tell it to stop).
    fn terminate(&mut self, id: &JobId, job: &Job) {
        match &job.stage {
            Stage::Assigned { worker } | Stage::Offered { worker, .. } => {
                let msg = Out::Termination(proto::JobTermination {
                    job_id: id.as_str().to_string(),
                });
                self.send(worker, msg);
            }
            Stage::Lost { .. } => {
                if let Some(identity) = job.proto.state.as_ref().map(|s| &s.participant_identity) {
                    if !identity.is_empty() {
                        self.actions.push_back(Action::RemoveParticipant {
                            room: job.room.clone(),
                            identity: identity.clone(),
                        });
                    }
                }
            }
            Stage::Pending | Stage::Ended => {}
        }
    }

    fn send(&mut self, worker: &WorkerId, msg: Out) {
        self.actions.push_back(Action::Send(
            worker.clone(),
            Box::new(proto::ServerMessage { message: Some(msg) }),
        ));
    }
}

/// A fresh dispatch into `room` of what a room's settings or the API asked for.
fn new_dispatch(room: &RoomName, a: proto::RoomAgentDispatch) -> proto::AgentDispatch {
    proto::AgentDispatch {
        id: new_sid("AD_"),
        agent_name: a.agent_name,
        room: room.as_str().to_string(),
        metadata: a.metadata,
        attributes: a.attributes,
        restart_policy: a.restart_policy,
        deployment: a.deployment,
        ..Default::default()
    }
}

fn set_status(job: &mut proto::Job, status: JobStatus, error: &str) {
    let now = unix_ns();
    let s = job.state.get_or_insert_with(Default::default);
    s.status = status as i32;
    s.error = error.to_string();
    s.updated_at = now;
    if matches!(status, JobStatus::JsSuccess | JobStatus::JsFailed) {
        s.ended_at = now;
    }
}

#[path = "hub_jobs.rs"]
mod jobs;

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
