-- Which node queued a webhook delivery (see ../migrations/0010_webhook_node.sql).
ALTER TABLE webhook_queue ADD COLUMN node TEXT NOT NULL DEFAULT '';
DROP INDEX webhook_queue_url;
CREATE INDEX webhook_queue_url ON webhook_queue(node, url, seq);
