"""One async SQL engine per process on PostgreSQL (asyncpg), MySQL/MariaDB (aiomysql) or SQLite (aiosqlite).

`Database.transaction()` is a write transaction; `Database.run(fn)` runs `fn(conn)` in one and
retries it when the engine reports a transient conflict (deadlock, serialization failure, a
busy SQLite file). The rule for "transient" is written once, in `is_transient`.

Given the service's `Metrics`, both pools (`read`, `write`) are measured: connections in use,
the pool's size, requests waiting for a connection, and connections that could not be had or
were found broken (`wharf_<service>_db_*`).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiosqlite
from sqlalchemy import Table, event, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from wharf_shared.config import mask_url
from wharf_shared.db.writer import SQLiteWriter

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge
    from sqlalchemy import Engine, Select

    from wharf_shared.metrics import Metrics

T = TypeVar("T")
Dialect = Literal["postgresql", "mysql", "sqlite"]

_DRIVERS: dict[str, tuple[Dialect, str]] = {
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
    "mysql": ("mysql", "mysql+aiomysql"),
    "mariadb": ("mysql", "mysql+aiomysql"),
    "mysql+aiomysql": ("mysql", "mysql+aiomysql"),
    "mariadb+aiomysql": ("mysql", "mysql+aiomysql"),
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
}

# PostgreSQL SQLSTATEs and MySQL error numbers worth a retry.
_PG_TRANSIENT = {"40001", "40P01", "55P03"}
_MYSQL_TRANSIENT = {1205, 1213, 2006, 2013}

# WAL: readers never wait for the writer, and a commit appends to the log instead of rewriting
# pages. synchronous=NORMAL: a commit is not fsynced, the log is at checkpoints. A crash of the
# process loses nothing (the log is written before the commit returns); a crash of the machine
# (power, kernel) may lose the commits made since the last checkpoint, never the database's
# integrity. Image bytes are fsynced before their rows commit, so a lost commit leaves
# unreferenced bytes (garbage collection's), never a row without its bytes.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL", "foreign_keys=ON")


class DatabaseURLError(ValueError):
    pass


def normalize_url(url: str) -> tuple[Dialect, str]:
    """Map the user's URL (`postgresql://…`, `mysql://…`, `sqlite:///…`) to its async driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with an unhelpful message
        shown = mask_url(url)
        if shown == url and "@" in url:  # too malformed to find the password in: hide all before @
            shown = "********@" + url.rsplit("@", 1)[1]
        raise DatabaseURLError(f"not a database URL: {shown!r}") from exc
    entry = _DRIVERS.get(parsed.drivername)
    if entry is None:
        raise DatabaseURLError(
            f"unsupported database {parsed.drivername!r}: use postgresql://, mysql:// (or mariadb://) or sqlite:///"
        )
    dialect, driver = entry
    return dialect, parsed.set(drivername=driver).render_as_string(hide_password=False)


# PostgreSQL: too_many_connections, cannot_connect_now; MySQL: ER_CON_COUNT_ERROR.
_PG_UNAVAILABLE = frozenset({"53300", "57P03"})
_MYSQL_UNAVAILABLE = frozenset({1040})


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or would not take another connection: a 503 with
    Retry-After for the client, not a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    code = args[0] if args else None
    return (
        sqlstate in _PG_UNAVAILABLE
        or (isinstance(code, int) and code in _MYSQL_UNAVAILABLE)
        or "too many clients" in str(orig)
        or "too many connections" in str(orig).lower()
    )


def is_transient(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # the server restarted or dropped us; a new connection will do
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _PG_TRANSIENT:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)


class _PoolWatch:
    """One pool's figures: in use and broken from the pool's events, waiting and failed
    checkouts from `Database._connect`."""

    def __init__(self, engine: AsyncEngine, name: str, metrics: Metrics) -> None:
        pool = engine.sync_engine.pool
        size = getattr(pool, "size", None)
        metrics.db_pool_size.labels(name).set(size() if callable(size) else 1)  # else one static
        in_use: Gauge = metrics.db_connections_in_use.labels(name)
        in_use.set(0)  # exported from the start, not from the first checkout
        self.waiting: Gauge = metrics.db_waiting.labels(name)
        self.waiting.set(0)
        self.errors: Counter = metrics.db_errors.labels(name)
        event.listen(pool, "checkout", lambda *_: in_use.inc())
        event.listen(pool, "checkin", lambda *_: in_use.dec())
        event.listen(pool, "invalidate", lambda *_: self.errors.inc())


class Database:
    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, metrics: Metrics | None = None
    ) -> None:
        self.dialect, self.url = normalize_url(url)
        # No pre-ping (a round trip per checkout): a connection found dead is invalidated with its
        # pool, and `run` retries the transaction on a fresh one.
        # A statement's parameters stay out of error messages (and so out of tracebacks in the
        # log): they can be password hashes, refresh-token fingerprints or stored credentials.
        # No overflow: connections beyond the pool would be opened and closed per request under
        # load (a new server session each time; on SQLite a new thread, file handle and PRAGMAs);
        # requests queue for one instead.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        database = make_url(self.url).database
        if self.dialect != "sqlite" or (database and database != ":memory:"):  # memory: one static connection
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=60)
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_recycle"] = 1800
        if self.dialect == "mysql":
            # Fewer gap locks and deadlocks than REPEATABLE READ; every write is idempotent anyway.
            kwargs["isolation_level"] = "READ COMMITTED"
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # Reads get their own pool whose connections stay in autocommit: no BEGIN/ROLLBACK round
        # trips, and no isolation-level switch on every checkout and checkin.
        # Nothing to roll back on checkin either.
        read_kwargs = {**kwargs, "isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
        if self.dialect == "sqlite":
            # _ReadCursor opens its cursors on the event loop's thread.
            read_kwargs["connect_args"] = {**kwargs["connect_args"], "check_same_thread": False}
        self.read_engine: AsyncEngine = create_async_engine(self.url, **read_kwargs)
        self._watches: dict[AsyncEngine, _PoolWatch] = {}
        if metrics is not None:
            self._watches = {
                self.engine: _PoolWatch(self.engine, "write", metrics),
                self.read_engine: _PoolWatch(self.read_engine, "read", metrics),
            }
        self._write_lock: asyncio.Lock | None = None
        self._write_lock_file: Path | None = None
        self._writer: SQLiteWriter | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
            _configure_sqlite(self.read_engine, transactions=False)
            self._write_lock = asyncio.Lock()
            if database and database != ":memory:":
                self._write_lock_file = Path(database + ".write.lock")
                # `run` goes through one writer that commits queued writes together (writer.py);
                # `transaction()` still takes the same locks, so both keep to one writer at a time.
                self._writer = SQLiteWriter(
                    self.url,
                    self._write_lock,
                    self._write_lock_file,
                    configure=_configure_sqlite_writer,
                    is_transient=is_transient,
                    echo=echo,
                )

    @property
    def write_engines(self) -> tuple[Engine, ...]:
        """The sync engines that write (for event hooks: the SQLite writer's has its own)."""
        engines = [self.engine.sync_engine]
        if self._writer is not None:
            engines.append(self._writer.engine)
        return tuple(engines)

    @asynccontextmanager
    async def _connect(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A connection of `engine`'s pool, the wait for it measured when metrics are on."""
        watch = self._watches.get(engine)
        if watch is None:
            async with engine.connect() as conn:
                yield conn
            return
        watch.waiting.inc()
        connected = False
        try:
            async with engine.connect() as conn:
                connected = True
                watch.waiting.dec()
                yield conn
        except Exception:
            if not connected:
                watch.errors.inc()
            raise
        finally:
            if not connected:
                watch.waiting.dec()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads outside a transaction."""
        async with self._connect(self.read_engine) as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed at the end of the block (rolled back on an exception)."""
        if self._write_lock is None:
            async with self._connect(self.engine) as conn, conn.begin():
                yield conn
            return
        # SQLite has one writer at a time. Waiters on its own lock poll with growing sleeps, which
        # under load adds hundreds of milliseconds; queue writers on locks that wake them at once
        # instead: an asyncio lock within the process, an flock across processes.
        async with self._write_lock, _file_lock(self._write_lock_file), self._connect(self.engine) as conn:
            conn = await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            async with conn.begin():
                yield conn

    async def run(
        self,
        fn: Callable[[AsyncConnection], Awaitable[T]],
        *,
        attempts: int = 6,
        retry_on: tuple[type[Exception], ...] = (),
    ) -> T:
        """Run `fn(conn)` in one transaction, again on transient conflicts (and on `retry_on`).

        `fn` may await nothing but statements on `conn`: on SQLite it runs in the writer's thread,
        committed with the other writes queued meanwhile."""
        if self._writer is not None:
            return await self._writer.run(fn, attempts=attempts, retry_on=retry_on)
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as conn:
                    return await fn(conn)
            except Exception as exc:
                if attempt == attempts or not (is_transient(exc) or isinstance(exc, retry_on)):
                    raise
                await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()
        await self.read_engine.dispose()


# Dialect-specific statements, kept here so that query modules stay portable. Each takes the
# connection it runs on: the dialect comes with it.


def _dialect(conn: AsyncConnection) -> Dialect:
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name == "postgresql":
        return "postgresql"
    return "sqlite"


async def insert_ignore(
    conn: AsyncConnection, table: Table, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> None:
    """INSERT that leaves an existing row (same unique key) alone."""
    dialect = _dialect(conn)
    stmt: Insert
    if dialect == "mysql":
        # `SET id = id`: a no-op that MySQL still counts as handling the duplicate.
        key = next(iter(table.primary_key.columns))
        stmt = mysql.insert(table).values(rows).on_duplicate_key_update({key.name: key})
    else:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).values(rows).on_conflict_do_nothing()
    await conn.execute(stmt)


async def insert_or_get_id(
    conn: AsyncConnection, table: Table, row: Mapping[str, Any], unique: Sequence[str]
) -> int:
    """The `id` of the row whose `unique` columns match `row`: inserted now or already there.

    One statement on MySQL/MariaDB (`LAST_INSERT_ID(id)` on the duplicate) and for a new row
    elsewhere (`RETURNING`); a second, a SELECT, only when the row already existed.
    """
    id_column = table.c.id
    dialect = _dialect(conn)
    if dialect == "mysql":
        stmt = mysql.insert(table).values(row)
        result = await conn.execute(stmt.on_duplicate_key_update({"id": func.last_insert_id(id_column)}))
        return int(result.lastrowid)
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await conn.execute(
        dialect_insert(table).values(row).on_conflict_do_nothing().returning(id_column)
    )
    new_id = result.scalar()
    if new_id is not None:
        return int(new_id)
    query = select(id_column).where(*(table.c[name] == row[name] for name in unique))
    return int((await conn.execute(query)).scalar_one())


async def insert_ignore_select(
    conn: AsyncConnection, table: Table, columns: Sequence[str], query: Select[Any]
) -> int:
    """`INSERT INTO table (columns) SELECT …` leaving existing rows (same unique key) alone.

    Returns the row count the driver reports: 0 when the SELECT found nothing; a positive
    count means the rows are there (PostgreSQL and SQLite count the rows inserted, MySQL with
    FOUND_ROWS those inserted or found), so 0 may also mean "all there already".
    """
    dialect = _dialect(conn)
    stmt: Insert
    if dialect == "mysql":
        key = next(iter(table.primary_key.columns))
        stmt = mysql.insert(table).from_select(columns, query).on_duplicate_key_update({key.name: key})
    else:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # The SELECT always has a WHERE: SQLite's parser needs one before ON CONFLICT.
        stmt = dialect_insert(table).from_select(columns, query).on_conflict_do_nothing()
    return int((await conn.execute(stmt)).rowcount)


async def upsert_returning_id(
    conn: AsyncConnection, table: Table, row: Mapping[str, Any], keys: Sequence[str], update: Sequence[str]
) -> int:
    """INSERT, or UPDATE the `update` columns of the row with the same `keys`; its `id` either way,
    in one statement."""
    id_column = table.c.id
    if _dialect(conn) == "mysql":
        stmt = mysql.insert(table).values(row)
        assignments = {"id": func.last_insert_id(id_column), **{c: stmt.inserted[c] for c in update}}
        return int((await conn.execute(stmt.on_duplicate_key_update(assignments))).lastrowid)
    dialect_insert = postgresql.insert if _dialect(conn) == "postgresql" else sqlite.insert
    stmt2 = dialect_insert(table).values(row)
    stmt2 = stmt2.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt2.excluded[c] for c in update}
    )
    return int((await conn.execute(stmt2.returning(id_column))).scalar_one())


async def upsert(
    conn: AsyncConnection,
    table: Table,
    row: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT, or UPDATE the `update` columns of the row that has the same `keys` (each row's,
    given several: no two of them may share their `keys`)."""
    dialect = _dialect(conn)
    if dialect == "mysql":
        stmt = mysql.insert(table).values(row)
        await conn.execute(stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update}))
        return
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt2 = dialect_insert(table).values(row)
    await conn.execute(
        stmt2.on_conflict_do_update(index_elements=list(keys), set_={c: stmt2.excluded[c] for c in update})
    )


@asynccontextmanager
async def _file_lock(path: Path | None) -> AsyncIterator[None]:
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _no_rollback(_dbapi_connection: Any) -> None:
    pass


class _ReadCursor(AsyncAdapt_aiosqlite_cursor):
    """A read in one hop to aiosqlite's thread: the statement runs, its rows are fetched and its
    cursor closed there at once (four hops otherwise: open, execute, fetch, close). The sqlite3
    cursor is made on the event loop's thread (`check_same_thread=False`): a connection is used
    by one request at a time, so nothing else touches it meanwhile."""

    __slots__ = ()

    def _make_new_cursor(self, connection: Any) -> Any:
        return aiosqlite.Cursor(connection, connection._conn.cursor())

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        cursor = self._cursor
        raw = cursor._cursor  # type: ignore[attr-defined]

        def run() -> list[Any] | None:
            try:
                raw.execute(operation, () if parameters is None else parameters)
                return raw.fetchall() if raw.description else None
            finally:
                raw.close()  # description, rowcount and lastrowid stay readable

        async with self._adapt_connection._execute_mutex:
            rows = await cursor._conn._execute(run)  # type: ignore[attr-defined]
        if rows is not None:
            self._rows = collections.deque(rows)
        return cursor

    async def _async_soft_close(self) -> None:
        pass  # closed in the thread already

    def close(self) -> None:
        self._rows.clear()


class _ReadConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _ReadCursor


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # We emit BEGIN ourselves; pysqlite's implicit transactions would defeat it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _configure_sqlite(engine: AsyncEngine, *, transactions: bool = True) -> None:
    event.listen(engine.sync_engine, "connect", _on_sqlite_connect)

    if not transactions:
        # The read engine: every statement on its own, no BEGIN at all. The ROLLBACK SQLAlchemy
        # sends when such a connection closes has nothing to undo, and costs a thread hop per read.
        engine.dialect.do_rollback = _no_rollback  # type: ignore[method-assign,assignment]

        @event.listens_for(engine.sync_engine, "connect")
        def fused_reads(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.__class__ = _ReadConnection  # same layout: only the cursor class differs

        return

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def _configure_sqlite_writer(engine: Engine) -> None:
    """The SQLite writer's own engine (sync, pysqlite): the same pragmas; it begins IMMEDIATE."""

    event.listen(engine, "connect", _on_sqlite_connect)

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
