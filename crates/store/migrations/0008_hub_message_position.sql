-- A global delivery order for hub messages, so a hub node whose Redis subscription is down
-- can follow `hub_messages` by position. Only the relay inserts here, while it holds its
-- hub advisory lock, so one relay transaction at a time takes positions, and each commits
-- before the next one starts. Positions therefore increase in commit order. A rolled-back
-- transaction leaves unused numbers, so positions can have gaps.
alter table hub_messages add column position bigint generated always as identity;
create unique index hub_messages_position_idx on hub_messages (position);
