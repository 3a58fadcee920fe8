-- The events table of the contract (shared/CONTRACT.md): one row per accepted event, however
-- often SQS delivers it. The primary key is the idempotency key of the event.
CREATE TABLE events (
    id             uuid        PRIMARY KEY,
    type           text        NOT NULL,
    occurred_at    timestamptz,                       -- the client's clock, null when absent
    received_at    timestamptz NOT NULL,              -- the edge clock
    stored_at      timestamptz NOT NULL DEFAULT now(),
    data           jsonb       NOT NULL,
    key_id         text        NOT NULL,              -- which ingest key sent it, never the key
    edge_colo      text,                              -- Cloudflare data centre, when known
    edge_country   text,                              -- client country, when known
    sqs_message_id text                               -- the SQS message that first stored it
);

-- The usual questions are "what arrived lately" and "events of a type over time".
CREATE INDEX events_received_at_idx ON events (received_at);
CREATE INDEX events_type_received_at_idx ON events (type, received_at);
