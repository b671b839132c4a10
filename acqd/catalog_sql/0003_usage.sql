-- acqd facility catalog, version 3: what the facility views (usage, fleet, the planner's stream)
-- and the supersede rule for a journal that adopted another's copies need. Each index is justified
-- by EXPLAIN (ANALYZE) output at 10^6 files in BENCHMARKS.md "Facility views".

-- One stored object, one row: a copy is found by its name on its tier (a new journal that adopted
-- an older journal's copies supersedes the older rows; see acqd.catalog.upsert).
CREATE INDEX copies_object ON acqd.copies (instrument, tier, dest);

-- The retention planner's stream: live copies oldest first, without sorting the whole catalog.
CREATE INDEX copies_live_age ON acqd.copies (verified_at, instrument, journal_id, copy_id)
    WHERE state = 'verified';

-- Fleet health: the files still waiting on each instrument and the oldest of them.
CREATE INDEX files_pending ON acqd.files (instrument, journal_id, first_seen)
    WHERE state IN ('seen', 'complete', 'stored') AND current;
