-- Which protocol an event came in by: `spillway` (POST /v1/events), `segment` (Segment's
-- tracking API) or `posthog` (PostHog's capture API). Rows stored before collectors existed
-- all came by /v1/events, which the default says.
ALTER TABLE events ADD COLUMN source text NOT NULL DEFAULT 'spillway';
