-- Profiles and organizations reference each other: an organization has an owner (a profile), a
-- profile has the organization it works in now. The owner key is deferred so that the sign-up
-- hook can create a user's personal organization before the profile it belongs to; the current
-- organization has no key yet (a stale one is harmless to the app, and nobody added it).
create table public.profiles (
    id                      uuid primary key references auth.users (id) on delete cascade,
    email                   extensions.citext not null,
    full_name               text,
    avatar_url              text check (avatar_url is null or avatar_url ~ '^https://'),
    current_organization_id uuid,
    onboarded               boolean not null default false,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now()
);

create table public.organizations (
    id            uuid primary key default gen_random_uuid(),
    name          text not null check (length(btrim(name)) between 1 and 120),
    slug          text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{2,47}$'),
    owner_id      uuid not null
                  constraint organizations_owner_id_fkey references public.profiles (id)
                  deferrable initially deferred,
    parent_id     uuid references public.organizations (id) on delete cascade,
    personal      boolean not null default false,
    seats         integer not null default 1 check (seats > 0),
    seats_used    integer not null default 1,
    trial_ends_at timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    -- a personal organization is never nested, and never uses more seats than it has
    constraint organizations_personal_not_nested check (not personal or parent_id is null),
    constraint organizations_seats_within_plan check (seats_used <= seats)
);
create index organizations_owner_id_idx on public.organizations (owner_id);
create index organizations_parent_id_idx on public.organizations (parent_id) where parent_id is not null;

create trigger profiles_updated_at before update on public.profiles
    for each row execute function public.set_updated_at();
create trigger organizations_updated_at before update on public.organizations
    for each row execute function public.set_updated_at();

-- Slugs are in URLs and in the billing provider: they never change.
create or replace function public.organizations_keep_slug()
returns trigger
language plpgsql
as $$
begin
    if new.slug is distinct from old.slug then
        raise exception 'organization slug cannot change (% -> %)', old.slug, new.slug
            using errcode = 'check_violation', hint = 'create a new organization instead';
    end if;
    return new;
end;
$$;

create trigger organizations_keep_slug before update of slug on public.organizations
    for each row execute function public.organizations_keep_slug();
