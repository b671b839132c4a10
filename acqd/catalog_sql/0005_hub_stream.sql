-- acqd facility catalog, version 5: the hub's retention sweep streams the copies it manages from a
-- server-side cursor, oldest first (the planner's order, (verified_at, id)); this index yields them
-- in that order without sorting the whole catalog first. It replaces hub_copies_live, whose only
-- query (every managed copy in id order, loaded at once) is gone. EXPLAIN at 10^6 and 10^7 files:
-- BENCHMARKS.md "Facility views".
CREATE INDEX hub_copies_live_age ON acqd.hub_copies (verified_at, id) WHERE state = 'verified';
DROP INDEX acqd.hub_copies_live;
