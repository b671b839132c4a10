-- acqd facility catalog, version 4: a stored object the hub acted on, found by its name. What the
-- hub did (a copy purged or moved, a transition's new copy) is in hub_copies; the daemons' rows
-- for the same object (instrument, tier, name) are matched to it by this index: the usage views
-- count what is live after the hub's actions, and the hub never takes a daemon's row for an
-- object it already manages (a transition's new copy recorded by its daemon) as a second item.
CREATE INDEX hub_copies_object ON acqd.hub_copies (instrument, tier, dest);
