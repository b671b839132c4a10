-- acqd facility catalog, version 6: who runs retention for each journal's copies, as its daemon's
-- `retention.owner` says ('daemon' or 'hub'). The hub takes in only the copies of journals that
-- hand retention to it: a daemon that keeps retention itself (the default) also keeps its holds in
-- its own journal, which the hub never sees, so the hub purging its copies made those holds void.
-- Until a daemon says otherwise (it does at each connection) its journal is its own.
ALTER TABLE acqd.journals ADD COLUMN retention_owner text NOT NULL DEFAULT 'daemon'
    CHECK (retention_owner IN ('daemon', 'hub'));
