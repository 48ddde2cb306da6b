-- Baseline schema of the core tables as they are BEFORE the change: the three organization
-- columns have no foreign key. Used by the local environment and the tests.
CREATE TABLE IF NOT EXISTS organizations_projection (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    slug            text NOT NULL UNIQUE,
    type            text NOT NULL CHECK (type IN ('platform_owner', 'provider', 'provider_partner')),
    is_active       boolean NOT NULL DEFAULT true,
    deleted_at      timestamptz,
    deletion_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    tags            text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS impersonation_sessions_projection (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id           text NOT NULL UNIQUE,
    super_admin_user_id  uuid NOT NULL,
    target_user_id       uuid NOT NULL,
    target_org_id        uuid NOT NULL,
    super_admin_email    text,
    target_email         text,
    justification_reason text,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'expired')),
    started_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    ended_at             timestamptz
);
CREATE INDEX IF NOT EXISTS idx_impersonation_sessions_target_org
    ON impersonation_sessions_projection (target_org_id);
CREATE INDEX IF NOT EXISTS idx_impersonation_sessions_target_org_started
    ON impersonation_sessions_projection (target_org_id, started_at DESC);

CREATE TABLE IF NOT EXISTS cross_tenant_access_grants_projection (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    consultant_org_id  uuid NOT NULL,
    consultant_user_id uuid,
    provider_org_id    uuid NOT NULL,
    scope              text NOT NULL CHECK (scope IN ('organization_unit', 'client_specific')),
    scope_id           uuid,
    authorization_type text NOT NULL,
    granted_by         uuid,
    granted_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,
    permissions        jsonb NOT NULL DEFAULT '[]'::jsonb,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'expired', 'suspended'))
);

CREATE TABLE IF NOT EXISTS domain_events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_number  bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    stream_id        uuid NOT NULL,
    stream_type      text NOT NULL,
    stream_version   integer NOT NULL,
    event_type       text NOT NULL,
    event_data       jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    processed_at     timestamptz,
    processing_error text,
    retry_count      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_type, stream_version)
);

CREATE TABLE IF NOT EXISTS workflow_queue_projection (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    event_data  jsonb NOT NULL DEFAULT '{}'::jsonb,
    stream_id   uuid NOT NULL,
    stream_type text NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz
);

CREATE OR REPLACE VIEW unprocessed_events AS
    SELECT * FROM domain_events WHERE processed_at IS NULL OR processing_error IS NOT NULL;
