-- acqd facility catalog, version 1: what each instrument's journal knows, keyed by
-- (instrument, journal_id, journal row id). `seq` is the journal outbox's sequence number of the
-- state a row holds: a row is only ever replaced by a state with a sequence number at least as new.

CREATE TABLE acqd.journals (
    instrument    text        NOT NULL,
    journal_id    text        NOT NULL,
    host          text        NOT NULL DEFAULT '',
    first_contact timestamptz NOT NULL DEFAULT now(),
    last_contact  timestamptz NOT NULL DEFAULT now(),
    published_seq bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (instrument, journal_id)
);

CREATE TABLE acqd.tiers (
    instrument text NOT NULL,
    journal_id text NOT NULL,
    tier       text NOT NULL,
    url        text NOT NULL,
    PRIMARY KEY (instrument, journal_id, tier)
);

CREATE TABLE acqd.files (
    instrument text        NOT NULL,
    journal_id text        NOT NULL,
    file_id    bigint      NOT NULL,
    root       text        NOT NULL,
    relpath    text        NOT NULL,
    version    integer     NOT NULL,
    current    boolean     NOT NULL,
    state      text        NOT NULL,
    reason     text,
    size       bigint      NOT NULL,
    mtime_ns   bigint      NOT NULL,
    checksum   text,
    detector   text        NOT NULL,
    session    text        NOT NULL,
    first_seen timestamptz NOT NULL,
    updated    timestamptz NOT NULL,
    seq        bigint      NOT NULL,
    published  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, journal_id, file_id)
);
CREATE INDEX files_path ON acqd.files (instrument, root, relpath, version);
CREATE INDEX files_state ON acqd.files (state);

CREATE TABLE acqd.copies (
    instrument      text        NOT NULL,
    journal_id      text        NOT NULL,
    copy_id         bigint      NOT NULL,
    file_id         bigint      NOT NULL,
    tier            text        NOT NULL,
    url             text        NOT NULL,
    dest            text        NOT NULL,
    layout          text        NOT NULL,
    codec           text        NOT NULL,
    source_bytes    bigint      NOT NULL,
    stored_bytes    bigint      NOT NULL,
    checksum        text        NOT NULL,
    stored_checksum text,
    state           text        NOT NULL,
    stored_at       timestamptz NOT NULL,
    verified_at     timestamptz,
    seq             bigint      NOT NULL,
    published       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, journal_id, copy_id)
);
CREATE INDEX copies_file ON acqd.copies (instrument, journal_id, file_id);
CREATE INDEX copies_tier_state ON acqd.copies (tier, state);
