"""Owners keep their data: signed links in the warning digest, the owner page and the facility view.

`links` and `view` are pure; `access` is the data-access interface the web app sits on; `local`
implements it over one daemon's journal, retention planner and holds (a single-PC facility);
`app` is the Starlette application; `serve` runs it (a task in `acqd run`, or `acqd owner-page`).
"""
