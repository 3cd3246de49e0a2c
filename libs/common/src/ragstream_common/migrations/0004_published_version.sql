-- The highest version of a document whose event Kafka acknowledged, as the gateway saw it. A version still
-- `received` above it may never have been published (the gateway died between registering and publishing):
-- an identical re-upload then publishes it again instead of answering "unchanged".
ALTER TABLE documents ADD COLUMN published_version integer NOT NULL DEFAULT 0;
