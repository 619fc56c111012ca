-- Limits: attachment bytes per uploader and day are summed over this index.
CREATE INDEX IF NOT EXISTS attachments_uploader ON attachments(uploader_id, created_at);
