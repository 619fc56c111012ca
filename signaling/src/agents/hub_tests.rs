//! The dispatcher's rules, driven without sockets.

use std::collections::BTreeMap;

use super::*;

fn hub() -> Hub {
    Hub::new(KeyStore::new(BTreeMap::from([(
        "devkey".to_string(),
        "secret-secret-secret-secret-secret".to_string(),
    )])))
}

fn room(name: &str, sid: &str) -> proto::Room {
    proto::Room {
        name: name.into(),
        sid: sid.into(),
        ..Default::default()
    }
}

fn register(h: &mut Hub, id: &str, agent: &str, now: Instant) -> WorkerId {
    let id = WorkerId::new(id);
    let req = proto::RegisterWorkerRequest {
        agent_name: agent.into(),
        ..Default::default()
    };
    let resp = h.register(id.clone(), "devkey", &req, now);
    assert_eq!(resp.worker_id, id.as_str());
    id
}

/// Every message queued for workers, in order.
fn sent(h: &mut Hub) -> Vec<(String, Out)> {
    let mut out = Vec::new();
    while let Some(a) = h.poll_action() {
        if let Action::Send(w, m) = a {
            out.push((w.as_str().to_string(), m.message.clone().expect("message")));
        }
    }
    out
}

fn offered_job(msgs: &[(String, Out)], worker: &str) -> String {
    msgs.iter()
        .find_map(|(w, m)| match m {
            Out::Availability(r) if w == worker => r.job.as_ref().map(|j| j.id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no offer to {worker} in {msgs:?}"))
}

fn accept(h: &mut Hub, worker: &WorkerId, job: &str, identity: &str, now: Instant) {
    let r = proto::AvailabilityResponse {
        job_id: job.into(),
        available: true,
        participant_identity: identity.into(),
        ..Default::default()
    };
    h.on_message(worker, In::Availability(r), now);
}

#[test]
fn an_unnamed_worker_is_offered_every_new_room_and_gets_a_token_when_it_accepts() {
    let now = Instant::now();
    let mut h = hub();
    let w = register(&mut h, "AW_1", "", now);
    h.room_opened(room("r1", "RM_1"), None, now);
    let msgs = sent(&mut h);
    let job = offered_job(&msgs, "AW_1");
    accept(&mut h, &w, &job, "", now);
    let msgs = sent(&mut h);
    let Some((_, Out::Assignment(a))) = msgs.first() else {
        panic!("no assignment: {msgs:?}");
    };
    let claims = h.keys.verify(&a.token).expect("valid token");
    assert_eq!(claims.identity(), format!("agent-{job}"));
    assert_eq!(claims.kind, "agent");
    let g = claims.video();
    assert!(g.room_join && g.agent && g.room == "r1");
    let list = h.list(&RoomName::new("r1"), "");
    assert_eq!(list.len(), 1);
    let state = list[0].state.as_ref().expect("state");
    assert_eq!(state.jobs.len(), 1);
    assert_eq!(
        state.jobs[0].state.as_ref().map(|s| s.worker_id.as_str()),
        Some("AW_1")
    );
}

#[test]
fn a_named_agent_is_only_dispatched_explicitly() {
    let now = Instant::now();
    let mut h = hub();
    register(&mut h, "AW_1", "helper", now);
    h.room_opened(room("r1", "RM_1"), None, now);
    assert!(
        sent(&mut h).is_empty(),
        "a named agent went to a room nobody asked it into"
    );
    let req = proto::CreateAgentDispatchRequest {
        agent_name: "helper".into(),
        room: "r1".into(),
        metadata: "m".into(),
        ..Default::default()
    };
    let d = h
        .create_dispatch(room("r1", "RM_1"), req, None, now)
        .expect("dispatch");
    assert_eq!(d.agent_name, "helper");
    let job = offered_job(&sent(&mut h), "AW_1");
    assert!(job.starts_with("AJ_"));
    let missing = proto::CreateAgentDispatchRequest {
        agent_name: "nobody".into(),
        room: "r1".into(),
        ..Default::default()
    };
    let err = h.create_dispatch(room("r1", "RM_1"), missing, None, now);
    assert!(matches!(err, Err(Error::NoAgentWorker(n)) if n == "nobody"));
}

#[test]
fn a_refused_or_unanswered_offer_goes_to_the_next_worker() {
    let now = Instant::now();
    let mut h = hub();
    let a = register(&mut h, "AW_a", "", now);
    let b = register(&mut h, "AW_b", "", now + Duration::from_millis(1));
    h.room_opened(room("r1", "RM_1"), None, now);
    let job = offered_job(&sent(&mut h), "AW_a");
    let no = proto::AvailabilityResponse {
        job_id: job.clone(),
        available: false,
        ..Default::default()
    };
    h.on_message(&a, In::Availability(no), now);
    assert_eq!(offered_job(&sent(&mut h), "AW_b"), job);
    // b never answers: everyone was asked, so the job fails.
    h.tick(now + OFFER_TIMEOUT);
    assert!(sent(&mut h).is_empty());
    // A late answer from b does not count any more.
    accept(&mut h, &b, &job, "", now + OFFER_TIMEOUT);
    assert!(sent(&mut h).is_empty());
    let jobs = h.list(&RoomName::new("r1"), "")[0]
        .state
        .clone()
        .expect("state")
        .jobs;
    let state = jobs[0].state.clone().expect("job state");
    assert_eq!(state.status, JobStatus::JsFailed as i32);
    assert_eq!(state.error, "no agent worker accepted the job");
    // A worker that lets a second offer time out is dropped.
    h.room_opened(room("r2", "RM_2"), None, now);
    assert_eq!(offered_job(&sent(&mut h), "AW_a"), offered_job_id(&h, "r2"));
    let no = proto::AvailabilityResponse {
        job_id: offered_job_id(&h, "r2"),
        available: false,
        ..Default::default()
    };
    h.on_message(&a, In::Availability(no), now);
    sent(&mut h);
    h.tick(now + OFFER_TIMEOUT * 2);
    let mut dropped = false;
    while let Some(action) = h.poll_action() {
        dropped |= action == Action::Drop(b.clone());
    }
    assert!(dropped, "a worker that never answers is kept");
    assert!(h.serves(""), "the answering worker is still there");
}

fn offered_job_id(h: &Hub, room: &str) -> String {
    h.list(&RoomName::new(room), "")[0]
        .state
        .clone()
        .expect("state")
        .jobs[0]
        .id
        .clone()
}

#[test]
fn a_lost_workers_job_goes_to_another_worker_after_the_grace() {
    let now = Instant::now();
    let mut h = hub();
    let a = register(&mut h, "AW_a", "", now);
    h.room_opened(room("r1", "RM_1"), None, now);
    let job = offered_job(&sent(&mut h), "AW_a");
    accept(&mut h, &a, &job, "bot-a", now);
    sent(&mut h);
    register(&mut h, "AW_b", "", now);
    h.worker_gone(&a, now);
    h.tick(now + LOST_GRACE / 2);
    assert!(sent(&mut h).is_empty(), "re-dispatched within the grace");
    h.tick(now + LOST_GRACE);
    let mut actions = Vec::new();
    while let Some(a) = h.poll_action() {
        actions.push(a);
    }
    assert!(actions.contains(&Action::RemoveParticipant {
        room: RoomName::new("r1"),
        identity: "bot-a".into()
    }));
    let offered = actions.iter().any(|a| {
        matches!(a, Action::Send(w, m) if w.as_str() == "AW_b"
            && matches!(&m.message, Some(Out::Availability(r)) if r.job.as_ref().is_some_and(|j| j.id != job)))
    });
    assert!(offered, "{actions:?}");
    let jobs = &h.list(&RoomName::new("r1"), "")[0]
        .state
        .clone()
        .expect("state")
        .jobs;
    let old = jobs.iter().find(|j| j.id == job).expect("old job listed");
    assert_eq!(
        old.state.as_ref().map(|s| s.status),
        Some(JobStatus::JsFailed as i32)
    );
}

#[test]
fn a_reconnected_worker_takes_its_job_back() {
    let now = Instant::now();
    let mut h = hub();
    let a = register(&mut h, "AW_a", "", now);
    h.room_opened(room("r1", "RM_1"), None, now);
    let job = offered_job(&sent(&mut h), "AW_a");
    accept(&mut h, &a, &job, "bot", now);
    sent(&mut h);
    h.worker_gone(&a, now);
    // Another key's worker may not take it; a job it names that is not
    // its own is stopped on its side.
    let other = WorkerId::new("AW_other");
    let req = proto::RegisterWorkerRequest::default();
    h.register(other.clone(), "otherkey", &req, now);
    let migrate = proto::MigrateJobRequest {
        job_ids: vec![job.clone()],
    };
    h.on_message(&other, In::MigrateJob(migrate.clone()), now);
    let msgs = sent(&mut h);
    assert!(matches!(&msgs[..], [(w, Out::Termination(t))] if w == "AW_other" && t.job_id == job));
    h.worker_gone(&other, now);
    let a2 = register(&mut h, "AW_a2", "", now);
    h.on_message(&a2, In::MigrateJob(migrate), now);
    h.tick(now + LOST_GRACE * 2);
    assert!(h.poll_action().is_none(), "the job was re-dispatched");
}

#[test]
fn a_rejection_that_terminates_ends_the_job_and_a_late_close_spares_a_reopened_room() {
    let now = Instant::now();
    let mut h = hub();
    let a = register(&mut h, "AW_a", "", now);
    register(&mut h, "AW_b", "", now + Duration::from_millis(1));
    h.room_opened(room("r1", "RM_1"), None, now);
    let job = offered_job(&sent(&mut h), "AW_a");
    let no = proto::AvailabilityResponse {
        job_id: job.clone(),
        available: false,
        terminate: true,
        ..Default::default()
    };
    h.on_message(&a, In::Availability(no), now);
    assert!(
        sent(&mut h).is_empty(),
        "a terminated job went to another worker"
    );
    // The room reopens under a new sid before the old close arrives.
    h.room_opened(room("r1", "RM_2"), None, now);
    sent(&mut h);
    h.room_closed(&RoomName::new("r1"), "RM_1");
    assert_eq!(
        h.list(&RoomName::new("r1"), "").len(),
        1,
        "the new room lost its dispatch"
    );
    // And a late Opened for a closed room does nothing.
    h.room_closed(&RoomName::new("r1"), "RM_2");
    h.room_opened(room("r1", "RM_2"), None, now);
    assert!(h.list(&RoomName::new("r1"), "").is_empty());
}

#[test]
fn closing_a_room_terminates_its_jobs_and_deleting_a_dispatch_too() {
    let now = Instant::now();
    let mut h = hub();
    let a = register(&mut h, "AW_a", "helper", now);
    h.room_opened(room("r1", "RM_1"), None, now);
    let req = |room: &str| proto::CreateAgentDispatchRequest {
        agent_name: "helper".into(),
        room: room.into(),
        ..Default::default()
    };
    let d = h
        .create_dispatch(room("r1", "RM_1"), req("r1"), None, now)
        .expect("dispatch");
    let job = offered_job(&sent(&mut h), "AW_a");
    accept(&mut h, &a, &job, "bot", now);
    sent(&mut h);
    assert!(matches!(
        h.delete(&RoomName::new("r1"), "AD_nope"),
        Err(Error::DispatchNotFound(_))
    ));
    let deleted = h.delete(&RoomName::new("r1"), &d.id).expect("delete");
    assert!(deleted.state.is_some_and(|s| s.deleted_at > 0));
    let msgs = sent(&mut h);
    assert!(matches!(&msgs[..], [(w, Out::Termination(t))] if w == "AW_a" && t.job_id == job));
    // Same for a room that closes.
    h.room_opened(room("r2", "RM_2"), None, now);
    h.create_dispatch(room("r2", "RM_2"), req("r2"), None, now)
        .expect("dispatch");
    let job = offered_job(&sent(&mut h), "AW_a");
    accept(&mut h, &a, &job, "bot", now);
    sent(&mut h);
    h.room_closed(&RoomName::new("r2"), "RM_2");
    let msgs = sent(&mut h);
    assert!(matches!(&msgs[..], [(_, Out::Termination(t))] if t.job_id == job));
    assert!(h.list(&RoomName::new("r2"), "").is_empty());
}

#[test]
fn a_dispatch_made_before_its_rooms_open_event_keeps_the_default_dispatch() {
    let now = Instant::now();
    let mut h = hub();
    register(&mut h, "AW_u", "", now);
    register(&mut h, "AW_n", "helper", now);
    let req = proto::CreateAgentDispatchRequest {
        agent_name: "helper".into(),
        room: "r1".into(),
        ..Default::default()
    };
    h.create_dispatch(room("r1", "RM_1"), req, None, now)
        .expect("dispatch");
    h.room_opened(room("r1", "RM_1"), None, now);
    h.room_opened(room("r1", "RM_1"), None, now);
    let msgs = sent(&mut h);
    offered_job(&msgs, "AW_n");
    offered_job(&msgs, "AW_u");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(h.list(&RoomName::new("r1"), "").len(), 2);
}

#[test]
fn an_assistant_dispatch_joins_under_the_identity_nodo_gives_it() {
    let now = Instant::now();
    let mut h = hub();
    let w = register(&mut h, "AW_1", "helper", now);
    h.room_opened(room("call-1", "RM_1"), None, now);
    let req = proto::CreateAgentDispatchRequest {
        agent_name: "helper".into(),
        room: "call-1".into(),
        ..Default::default()
    };
    h.create_dispatch(room("call-1", "RM_1"), req, Some("helper".into()), now)
        .expect("dispatch");
    let job = offered_job(&sent(&mut h), "AW_1");
    accept(&mut h, &w, &job, "agent-picked-by-worker", now);
    let msgs = sent(&mut h);
    let Some((_, Out::Assignment(a))) = msgs.first() else {
        panic!("no assignment: {msgs:?}");
    };
    assert_eq!(h.keys.verify(&a.token).expect("token").identity(), "helper");
}
