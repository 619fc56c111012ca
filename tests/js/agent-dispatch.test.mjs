// The Twirp AgentDispatchService over JSON with livekit-server-sdk's
// AgentDispatchClient, against a worker that speaks the /agent protocol with
// @livekit/protocol's own messages (the Python tests run real livekit-agents
// workers; this one checks the JSON path and the worker messages byte for byte).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { AgentDispatchClient, AccessToken, RoomServiceClient } from 'livekit-server-sdk';
import { WorkerMessage, ServerMessage, JobStatus } from '@livekit/protocol';
import { startNode } from './harness.mjs';

let node;
before(async () => { node = await startNode(); });
after(async () => { await node?.stop(); });

/** A worker connection: sends WorkerMessages, queues ServerMessages. */
async function worker(agentName) {
  const t = new AccessToken('devkey', 'secret');
  t.addGrant({ agent: true });
  const ws = new WebSocket(`${node.url}/agent`, { headers: { Authorization: `Bearer ${await t.toJwt()}` } });
  const inbox = [];
  const waiters = [];
  ws.on('message', (data) => {
    const msg = ServerMessage.fromBinary(new Uint8Array(data));
    const w = waiters.find((x) => x.kind === msg.message.case);
    if (w) { waiters.splice(waiters.indexOf(w), 1); w.resolve(msg.message.value); } else inbox.push(msg);
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const send = (message) => ws.send(new WorkerMessage({ message }).toBinary());
  const next = (kind, ms = 10000) => {
    const i = inbox.findIndex((m) => m.message.case === kind);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0].message.value);
    return new Promise((resolve, reject) => {
      const w = { kind, resolve };
      waiters.push(w);
      setTimeout(() => reject(new Error(`no ${kind} within ${ms} ms`)), ms);
    });
  };
  send({ case: 'register', value: { agentName, version: 'js-test' } });
  const registered = await next('register');
  return { ws, send, next, id: registered.workerId, serverInfo: registered.serverInfo };
}

test('dispatches over JSON reach a protocol worker, list its job and delete it', async () => {
  const rooms = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  const dispatch = new AgentDispatchClient(node.httpUrl, 'devkey', 'secret');
  await rooms.createRoom({ name: 'js-agents' });
  assert.deepEqual(await dispatch.listDispatch('js-agents'), []);
  await assert.rejects(dispatch.createDispatch('js-agents', 'ghost'), /failed_precondition|no agent worker/);

  const w = await worker('js-helper');
  assert.match(w.id, /^AW_/);
  assert.equal(w.serverInfo.protocol, 16);
  const d = await dispatch.createDispatch('js-agents', 'js-helper', { metadata: '{"lang":"es"}' });
  assert.match(d.id, /^AD_/);
  assert.equal(d.agentName, 'js-helper');
  assert.equal(d.room, 'js-agents');

  const offer = await w.next('availability');
  assert.equal(offer.job.room.name, 'js-agents');
  assert.equal(offer.job.metadata, '{"lang":"es"}');
  assert.equal(offer.job.dispatchId, d.id);
  w.send({ case: 'availability', value: { jobId: offer.job.id, available: true, participantIdentity: 'js-bot', participantName: 'Bot' } });
  const assignment = await w.next('assignment');
  assert.equal(assignment.job.id, offer.job.id);
  const claims = JSON.parse(Buffer.from(assignment.token.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, 'js-bot');
  assert.equal(claims.kind, 'agent');
  assert.equal(claims.video.room, 'js-agents');
  assert.equal(claims.video.agent, true);
  w.send({ case: 'updateJob', value: { jobId: offer.job.id, status: JobStatus.JS_RUNNING } });

  const listed = await dispatch.listDispatch('js-agents');
  assert.equal(listed.length, 1);
  assert.equal(listed[0].state.jobs.length, 1);
  assert.equal(listed[0].state.jobs[0].state.status, JobStatus.JS_RUNNING);
  assert.equal(listed[0].state.jobs[0].state.participantIdentity, 'js-bot');
  assert.equal(listed[0].state.jobs[0].state.workerId, w.id);
  const one = await dispatch.getDispatch(d.id, 'js-agents');
  assert.equal(one.id, d.id);

  await dispatch.deleteDispatch(d.id, 'js-agents');
  const stop = await w.next('termination');
  assert.equal(stop.jobId, offer.job.id);
  assert.deepEqual(await dispatch.listDispatch('js-agents'), []);
  await assert.rejects(dispatch.deleteDispatch(d.id, 'js-agents'), /not_found|not found/);

  // Pings are answered with the server's time.
  w.send({ case: 'ping', value: { timestamp: 1234n } });
  const pong = await w.next('pong');
  assert.equal(pong.lastTimestamp, 1234n);
  assert.ok(pong.timestamp > 1234n);
  w.ws.close();
});
