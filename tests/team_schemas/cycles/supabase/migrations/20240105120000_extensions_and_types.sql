-- A multi-tenant SaaS: organizations (nested, each with an owner), profiles that remember the
-- organization the user last worked in, memberships, invitations, documents, integrations and
-- an audit log. This file: the extensions, the enums and the helpers every table uses.
create extension if not exists pgcrypto with schema extensions;
create extension if not exists citext with schema extensions;

create type public.member_role as enum ('owner', 'admin', 'member', 'viewer');
create type public.document_status as enum ('draft', 'in_review', 'published', 'archived');

-- BEFORE UPDATE on every table with an updated_at column.
create or replace function public.set_updated_at()
returns trigger
language plpgsql
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;
