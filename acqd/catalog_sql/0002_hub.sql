-- Placeholder for the hub's migration 0002 (branch `hub`: lease, holds, warnings). When the branches
-- merge, the hub's 0002 file replaces this one (acqd.catalog.migrations needs versions 1..n).
SELECT 1;
