-- acqd facility catalog, version 2: the facility hub's retention (`acqd hub`). The daemons' rows
-- (files, copies) stay as they publish them; what the hub does to the stored copies is its own:
-- hub_copies (each stored copy the hub manages, and the copies its transitions made), warnings,
-- holds, the lease that lets one hub replica act at a time, and each action begun and finished.
-- Times the planner compares are seconds since the epoch (double precision, as in the journals);
-- the lease uses the server's clock only.

CREATE TABLE acqd.hub_copies (
    id           bigserial PRIMARY KEY,   -- the planner's item id; warnings point at it
    instrument   text             NOT NULL,
    journal_id   text             NOT NULL,
    copy_id      bigint           NOT NULL, -- the daemon's copy this one is or descends from
    file_id      bigint           NOT NULL,
    tier         text             NOT NULL,
    dest         text             NOT NULL,
    layout       text             NOT NULL,
    codec        text             NOT NULL,
    source_bytes bigint           NOT NULL,
    stored_bytes bigint           NOT NULL,
    checksum     text             NOT NULL,
    verified_at  double precision NOT NULL, -- the first copy's: a transition keeps the age
    state        text             NOT NULL, -- verified, moved, purged, missing
    origin       boolean          NOT NULL, -- the daemon's own copy (false: made by a hub transition)
    added        double precision NOT NULL,
    UNIQUE (instrument, journal_id, copy_id, tier)
);
CREATE INDEX hub_copies_live ON acqd.hub_copies (id) WHERE state = 'verified';

CREATE TABLE acqd.hub_warnings (
    id        bigserial PRIMARY KEY,
    copy      bigint           NOT NULL REFERENCES acqd.hub_copies (id),
    recipient text             NOT NULL,
    purge_at  double precision NOT NULL,
    sent_at   double precision NOT NULL,
    voided    double precision
);
CREATE INDEX hub_warnings_copy ON acqd.hub_warnings (copy) WHERE voided IS NULL;

CREATE TABLE acqd.holds (
    id         bigserial PRIMARY KEY,
    instrument text             NOT NULL DEFAULT '', -- '' = any instrument
    root       text             NOT NULL DEFAULT '', -- a watch root; '' = any
    target     text             NOT NULL,            -- a session, folder or file relative to the root
    until      double precision NOT NULL,
    reason     text             NOT NULL,
    created    double precision NOT NULL,
    released   double precision,
    placed_by  text             NOT NULL DEFAULT ''
);

CREATE TABLE acqd.hub_lease (
    name     text        PRIMARY KEY,
    holder   text        NOT NULL,
    token    bigint      NOT NULL,   -- the fencing token: +1 each time another holder takes it
    acquired timestamptz NOT NULL,
    expires  timestamptz NOT NULL
);

-- every step that changes storage, recorded before (begun) and after (done): a hub killed in
-- between finds it at its next sweep and finishes the record instead of acting again
CREATE TABLE acqd.hub_actions (
    id     bigserial PRIMARY KEY,
    copy   bigint           NOT NULL REFERENCES acqd.hub_copies (id),
    kind   text             NOT NULL,
    token  bigint           NOT NULL,
    holder text             NOT NULL,
    begun  double precision NOT NULL,
    done   double precision
);
CREATE UNIQUE INDEX hub_actions_open ON acqd.hub_actions (copy, kind) WHERE done IS NULL;

CREATE TABLE acqd.hub_state (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE acqd.hub_clock_acks (
    id       bigserial PRIMARY KEY,
    wall     double precision NOT NULL,
    boot_id  text             NOT NULL,
    boottime double precision NOT NULL,
    reason   text             NOT NULL,
    who      text             NOT NULL,
    applied  double precision
);

CREATE TABLE acqd.hub_audit (
    id     bigserial PRIMARY KEY,
    ts     double precision NOT NULL,
    copy   bigint,
    action text             NOT NULL,
    holder text             NOT NULL,
    detail jsonb            NOT NULL
);
CREATE INDEX hub_audit_action ON acqd.hub_audit (action);
