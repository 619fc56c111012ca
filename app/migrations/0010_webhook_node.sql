-- Which node queued a webhook delivery: with a database shared by several
-- nodes, each node delivers its own queue (the one that produced the events,
-- in order), so no delivery is made twice. One node alone uses ''.
ALTER TABLE webhook_queue ADD COLUMN node TEXT NOT NULL DEFAULT '';
DROP INDEX webhook_queue_url;
CREATE INDEX webhook_queue_url ON webhook_queue(node, url, seq);
