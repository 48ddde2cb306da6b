-- Sign-up: every new user gets a profile and a personal organization they own and work in.
-- The organization is inserted first (its owner key is deferred to the end of the transaction),
-- then the profile pointing at it, then the owner's membership.
create or replace function public.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
declare
    org uuid := gen_random_uuid();
begin
    insert into organizations (id, name, slug, owner_id, personal)
    values (org, coalesce(new.raw_user_meta_data ->> 'full_name', split_part(new.email, '@', 1), 'Personal'),
            'personal-' || replace(new.id::text, '-', ''), new.id, true);
    insert into profiles (id, email, full_name, current_organization_id)
    values (new.id, coalesce(new.email, new.id::text || '@users.invalid'),
            new.raw_user_meta_data ->> 'full_name', org);
    insert into memberships (organization_id, profile_id, role) values (org, new.id, 'owner');
    return new;
end;
$$;

create trigger on_auth_user_created after insert on auth.users
    for each row execute function public.handle_new_user();
