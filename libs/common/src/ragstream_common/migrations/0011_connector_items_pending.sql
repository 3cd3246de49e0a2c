-- A connector item's new version is written as `pending` before its event is published and confirmed after
-- Kafka acknowledged it (services/connectors sync.py). A worker that dies in between finds the pending row on the
-- replay: the same content is published again under the same version (idempotent downstream), other content
-- under the next one, so one (document, version) never stands for two contents.
ALTER TABLE connector_items ADD COLUMN pending boolean NOT NULL DEFAULT false;
