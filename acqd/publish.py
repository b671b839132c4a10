"""Orchestration of the facility catalog: the journal's outbox (on the journal's thread) feeding the
catalog publisher (acqd.catalog), and the `acqd catalog` commands. The daemon wires it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

from acqd import catalog
from acqd.config import CatalogConfig, Config, read_credential
from acqd.errors import CatalogError, ConfigError
from acqd.journal import (
    Journal,
    apply_hub_actions,
    begin_resync,
    end_resync,
    hub_seen,
    journal_path,
    outbox_done,
    outbox_floor,
    outbox_next,
    outbox_state,
    recorded_tiers,
    set_catalog_status,
    snapshot,
)
from acqd.values import HubAction, OutboxRecord


def catalog_password(c: CatalogConfig) -> str | None:
    """The password from `catalog.password_file` (relative: in $CREDENTIALS_DIRECTORY); ConfigError if unreadable."""
    return read_credential(c.password_file, "catalog.password_file") if c.password_file is not None else None


def prepare(config: Config) -> str | None:
    """What `run` and `check` validate of `catalog:` before anything starts: the client, the password."""
    if config.catalog is None:
        return None
    catalog.require_psycopg()
    return catalog_password(config.catalog)


class JournalOutbox:
    """The journal's outbox as an `acqd.catalog.OutboxSource`: every call on the journal's thread
    (`jexec`), the snapshot's reads on `io` (its own read transaction, beside the writer)."""

    def __init__(self, journal: Journal, jexec: Executor, io: Executor) -> None:
        self.journal, self.jexec, self.io = journal, jexec, io

    async def _j(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.jexec, fn, self.journal, *args)

    async def next(self, limit: int) -> list[OutboxRecord]:
        out: list[OutboxRecord] = await self._j(outbox_next, limit)
        return out

    async def done(self, upto: int, status: dict[str, Any]) -> None:
        await self._j(outbox_done, upto, status)

    async def state(self) -> dict[str, Any]:
        out: dict[str, Any] = await self._j(outbox_state)
        return out

    async def set_status(self, status: dict[str, Any]) -> None:
        await self._j(set_catalog_status, status)

    async def floor(self, published: int) -> bool:
        out: bool = await self._j(outbox_floor, published)
        return out

    async def begin_resync(self) -> None:
        await self._j(begin_resync)

    async def end_resync(self) -> None:
        await self._j(end_resync)

    async def snapshot(self) -> Iterator[list[OutboxRecord]]:
        it = snapshot(self.journal.path)
        return it

    async def next_batch(self, it: Iterator[list[OutboxRecord]]) -> list[OutboxRecord] | None:
        out: list[OutboxRecord] | None = await asyncio.get_running_loop().run_in_executor(self.io, next, it, None)
        return out

    async def hub_seen(self) -> int:
        out: int = await self._j(hub_seen)
        return out

    async def apply_hub(self, actions: list[HubAction], seen: int) -> int:
        out: int = await self._j(apply_hub_actions, actions, seen)
        return out


def target(config: Config, journal: Journal) -> catalog.Target:
    tiers = {name: url for name, (url, _) in recorded_tiers(journal).items()}
    return catalog.Target(config.instrument, journal.journal_id, tiers, retention_owner=config.retention.owner)


def build_publisher(
    config: Config,
    password: str | None,
    journal: Journal,
    jexec: Executor,
    io: Executor,
    on_metric: Callable[[str, float], None],
) -> catalog.Publisher:
    c = config.catalog
    assert c is not None
    return catalog.Publisher(
        c.url,
        password,
        target(config, journal),
        JournalOutbox(journal, jexec, io),
        batch=c.batch,
        connect_timeout=c.connect_timeout,
        retry_max=c.retry_max,
        readback=c.readback,
        on_metric=on_metric,
    )


def _catalog_of(config: Config) -> CatalogConfig:
    if config.catalog is None:
        raise ConfigError("this configuration has no `catalog:` section (catalog: {url: postgresql://...})")
    return config.catalog


def check(config: Config, timeout: float = 10.0, probe: bool = True) -> tuple[list[str], list[str]]:
    """`acqd check`: notes and warnings about the catalog (a server down is a warning: `run` ships
    regardless and publishes when it is back); ConfigError for what `run` refuses. `probe`: connect."""
    if config.catalog is None:
        return [], []
    password = prepare(config)
    if not probe:
        return [f"catalog {config.catalog.url}: not probed"], []
    url = config.catalog.url
    try:
        note = asyncio.run(catalog.probe(url, password, min(timeout, config.catalog.connect_timeout)))
    except CatalogError as exc:
        return [], [f"catalog {url}: {exc}"]
    return [f"catalog {url}: {note}"], []


def migrate_command(config: Config) -> list[str]:
    """`acqd catalog migrate`: the migrations applied ([]: the schema was up to date)."""
    c = _catalog_of(config)
    password = prepare(config)

    async def go() -> list[str]:
        conn = await catalog.connect(c.url, password, c.connect_timeout)
        try:
            return await catalog.migrate(conn)
        except Exception as exc:
            raise CatalogError(catalog.one_line(exc)) from None
        finally:
            await conn.close()

    return asyncio.run(go())


def import_command(config: Config) -> int:
    """`acqd catalog import`: publish every row of this configuration's journal (works beside a
    running daemon: one consistent read snapshot; what the daemon publishes later supersedes it)."""
    c = _catalog_of(config)
    password = prepare(config)
    path = journal_path(config.state_dir)
    journal = Journal(path, readonly=True)
    try:
        tgt = target(config, journal)
    finally:
        journal.close()
    if not tgt.journal_id:
        raise CatalogError(f"the journal {path} has no id yet: start acqd once with it")

    async def go() -> int:
        conn = await catalog.connect(c.url, password, c.connect_timeout)
        try:
            await catalog.require_schema(conn)
            return await catalog.import_snapshot(conn, tgt, snapshot(path))
        except CatalogError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__module__.startswith("psycopg"):
                raise CatalogError(catalog.one_line(exc)) from None
            raise
        finally:
            await conn.close()

    return asyncio.run(go())
