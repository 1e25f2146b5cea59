"""The cache: every model call's result, keyed by everything that can change it. The only persistence module.

SQLite in WAL mode, one row per successful call. Failures go to their own table: they are reported, and retried on
the next run, never served as results. A provider's answer is also kept as a receipt the moment its last byte
arrives, before it is parsed, so that a process killed in between leaves the answer behind for the next run instead
of having it paid for again. A completion whose receipt is kept is committed with others in one transaction (a group
commit: one write of the cache per group of answers, not per call); one without a receipt is committed at once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from judge_arena.config import CandidateConfig, ModelConfig
from judge_arena.records import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL,
    served_model TEXT,
    system_fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_key ON failures (key);
CREATE TABLE IF NOT EXISTS receipts (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    latency_s REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL
);
"""

_ADDED_COLUMNS = (("served_model", "TEXT"), ("system_fingerprint", "TEXT"))
"""Columns of `completions` added after caches were first written (what the server said it served)."""

Claim = Literal["claimed", "done", "busy"]
"""Outcome of claiming a call: ours to make, already answered, or being made by another live process."""

_GROUP_ROWS = 64
"""Completions held for a group commit: committed together once this many wait (or at `Store.flush` and `close`)."""

_STALE_CLAIM_S = 3600.0
"""A claim is presumed dead after this long; before that, a process on this host is checked directly."""


def _alive(pid: int) -> bool:
    """Whether a process of this host is running: a zombie (dead, not yet reaped by its parent) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        # Gone since kill() looked, where /proc exists; elsewhere (macOS) kill() is all there is to go by.
        return not Path("/proc/self").exists()
    # The state follows the command name, which is in parentheses and may itself contain ") ".
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass(frozen=True)
class CallKey:
    """What identifies a model call: any change to any part gives another cache key."""

    model: str
    """The litellm model string (provider and model id)."""
    api_base: str | None
    """The endpoint as configured (the symbolic 'simulator', not its port, so the cache survives restarts)."""
    params: tuple[tuple[str, Any], ...]
    messages: tuple[Message, ...]
    revision: str | None = None
    """The candidate's configured revision (what is behind `model` now); None for judges and unrevised models."""

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON in UTF-8 (computed once: every store operation looks it up)."""
        return hashlib.sha256(self._canonical_utf8()).hexdigest()

    @property
    def canonical_json(self) -> str:
        """The request as canonical JSON: `json.dumps` of its fields with sorted keys, no ASCII escaping and no
        spaces. This is what is hashed and stored beside the result.

        A revision is a key only when set, so that the keys of calls without one stay those of earlier versions.
        """
        return self._canonical_utf8().decode("utf-8", "surrogatepass")

    def _canonical_utf8(self) -> bytes:
        """`canonical_json` in UTF-8 (a lone surrogate, which UTF-8 cannot hold, as its three bytes).

        Written out as bytes, field by field in sorted order: the message texts (kilobytes per judge call) are
        escaped by orjson, which writes any string exactly as `json.dumps(..., ensure_ascii=False)` does, and the
        digest hashes its bytes without decoding and encoding them again.
        """
        messages = b",".join(
            b'{"content":%s,"role":%s}' % (_json_utf8(m.content), _json_utf8(m.role)) for m in self.messages
        )
        revision = b"" if self.revision is None else b',"revision":' + _json_utf8(self.revision)
        api_base = b"null" if self.api_base is None else _json_utf8(self.api_base)
        return b'{"api_base":%s,"messages":[%s],"model":%s,"params":%s%s}' % (
            api_base,
            messages,
            _json_utf8(self.model),
            _canonical_params(self.params),
            revision,
        )


def call_key(model: ModelConfig, messages: tuple[Message, ...]) -> CallKey:
    """The cache key of a request of `model` (as called: a judge's `as_called`) with these messages."""
    return CallKey(
        model=model.model,
        api_base=model.api_base,
        params=tuple(sorted(model.params.items())),
        messages=messages,
        revision=model.revision if isinstance(model, CandidateConfig) else None,
    )


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
"""`json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))`, without building an encoder per
call."""


def _canonical_utf8(value: object) -> bytes:
    return _CANONICAL.encode(value).encode("utf-8", "surrogatepass")


_PARAMS_JSON: dict[str, bytes] = {}
"""`_canonical_utf8` of params by their repr: a run's calls share a few sets of params. By repr, not by value: 0 and
0.0 (or 1 and True) are equal values written differently."""


def _canonical_params(params: tuple[tuple[str, Any], ...]) -> bytes:
    written = repr(params)
    canonical = _PARAMS_JSON.get(written)
    if canonical is None:
        canonical = _canonical_utf8(dict(params))
        if len(_PARAMS_JSON) < 1024:
            _PARAMS_JSON[written] = canonical
    return canonical


def _json_utf8(text: str) -> bytes:
    """`text` as a JSON string in UTF-8, as `_canonical_utf8` writes it."""
    try:
        return orjson.dumps(text)
    except TypeError:  # a lone surrogate, which orjson refuses: json.dumps writes it as it is
        return _canonical_utf8(text)


@dataclass(frozen=True)
class Served:
    """What a server said it served: its `model` and `system_fingerprint` (None for what it did not say)."""

    model: str | None
    fingerprint: str | None

    def __str__(self) -> str:
        return f"{self.model or '?'} ({self.fingerprint or 'no fingerprint'})"


@dataclass(frozen=True)
class Completion:
    """A successful model reply."""

    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    served_model: str | None = None
    """The model the server said it served (`model` of its answer); None when it did not say, or for a completion
    cached before this was recorded."""
    system_fingerprint: str | None = None
    """The server's `system_fingerprint` of its answer (OpenAI and compatible servers); None when it gave none."""

    @property
    def served(self) -> Served:
        """What the server said it served."""
        return Served(self.served_model, self.system_fingerprint)


_COMPLETION_COLUMNS = "text, finish_reason, input_tokens, output_tokens, latency_s"
_SERVED_COLUMNS = _COMPLETION_COLUMNS + "".join(f", {name}" for name, _ in _ADDED_COLUMNS)
_KEYS_AT_ONCE = 500
"""Keys looked up in one query (SQLite allows 999 parameters in its oldest builds)."""


def _completion(db: sqlite3.Connection, key: CallKey, *, served: bool = True) -> Completion | None:
    """The cached completion of `key`; without `served`, not what the server said it served (a cache opened read-only
    may predate `_ADDED_COLUMNS`)."""
    return _completions(db, [key.digest], served=served).get(key.digest)


def _completions(db: sqlite3.Connection, digests: Sequence[str], *, served: bool = True) -> dict[str, Completion]:
    """The cached completions of these keys' digests, by digest (those not cached are left out); see `_completion`."""
    columns = _SERVED_COLUMNS if served else _COMPLETION_COLUMNS
    return {digest: Completion(*row) for digest, *row in _rows(db, "completions", columns, digests)}


def _key_chunks(digests: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """The keys `_KEYS_AT_ONCE` at a time, each chunk with its placeholders (`?, ?, …`) for `key IN (…)`."""
    for start in range(0, len(digests), _KEYS_AT_ONCE):
        chunk = digests[start : start + _KEYS_AT_ONCE]
        yield chunk, ", ".join("?" * len(chunk))


def _rows(db: sqlite3.Connection, table: str, columns: str, digests: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The key and `columns` of the rows of `table` with these keys, in one query for every `_KEYS_AT_ONCE`."""
    for chunk, marks in _key_chunks(digests):
        yield from db.execute(f"SELECT key, {columns} FROM {table} WHERE key IN ({marks})", chunk)


_PARAMETERS_AT_ONCE = 999
"""The most parameters of one statement in SQLite's oldest builds."""


def _insert(db: sqlite3.Connection, into: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`INSERT OR REPLACE INTO {into} VALUES` each row, as many rows in one statement as the parameters allow: SQLite
    releases the GIL for each statement it runs, and the HTTP I/O thread takes it, so rows one by one (`executemany`)
    cost a hand-over each."""
    if not rows:
        return
    width = len(rows[0])
    at_once = _PARAMETERS_AT_ONCE // width
    for start in range(0, len(rows), at_once):
        chunk = rows[start : start + at_once]
        marks = ", ".join([f"({', '.join('?' * width)})"] * len(chunk))
        db.execute(f"INSERT OR REPLACE INTO {into} VALUES {marks}", [value for row in chunk for value in row])


def _delete(db: sqlite3.Connection, table: str, digests: Sequence[str], owner: str | None = None) -> None:
    """Delete the rows of `table` with these keys (of `owner` only, when given), in one statement for every
    `_KEYS_AT_ONCE` (see `_insert`)."""
    mine = "" if owner is None else " AND owner = ?"
    for chunk, marks in _key_chunks(digests):
        db.execute(f"DELETE FROM {table} WHERE key IN ({marks}){mine}", [*chunk, *([] if owner is None else [owner])])


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the cache file at `path` that leaves no file behind.

    A read-only connection to a WAL database creates -wal and -shm files it cannot remove, unless it opens the file
    as immutable, reading the main file only: which holds everything when there is no -wal file to read.
    """
    wal = path.with_name(f"{path.name}-wal")
    uri = f"{path.absolute().as_uri()}?mode=ro{'' if wal.exists() else '&immutable=1'}"
    return sqlite3.connect(uri, uri=True, timeout=30.0)


class CacheReader:
    """The cache opened read-only, to look at what it holds without a run: nothing is claimed, written or created."""

    def __init__(self, path: Path) -> None:
        self._db = read_only(path) if path.is_file() else None

    def get(self, key: CallKey) -> Completion | None:
        """The cached completion for this call, or None (always None when there is no cache yet)."""
        return None if self._db is None else _completion(self._db, key, served=False)

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            self._db.close()


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


@dataclass(frozen=True)
class Receipt:
    """A provider's successful HTTP answer as it arrived, not yet parsed: what a resumed run can still use."""

    content_type: str
    body: bytes
    latency_s: float
    """From sending the request to the answer's last byte."""


class Store:
    """The SQLite cache of completions, the log of failures, and the claims that keep processes from paying twice.

    Several processes may share one cache: before calling a model a process claims the call's key; another process
    that needs the same key waits for the answer instead of paying for it again. A claim whose process died (killed,
    crashed) is taken over.
    """

    def __init__(self, path: Path) -> None:
        self._owner = uuid.uuid4().hex
        self._host = socket.gethostname()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        # Switching a new file to WAL can fail with "locked" at once, without SQLite's busy wait, while another
        # process is creating the same cache; retrying the set-up is safe (every statement in it is idempotent).
        for attempt in Retrying(
            retry=retry_if_exception(_is_locked),
            stop=stop_after_delay(30.0),
            wait=wait_random_exponential(multiplier=0.01, max=0.5),
            reraise=True,
        ):
            with attempt:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                self._add_columns()
        # Receipts are written from the client's I/O thread, on a connection of their own.
        self._receipts_db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._receipts_db.execute("PRAGMA synchronous=NORMAL")
        self._receipts_lock = threading.Lock()
        self._receipted: set[str] = set()
        """Digests of the calls whose receipt this process has committed (guarded by `_receipts_lock`)."""
        self._grouped: dict[str, tuple[CallKey, Completion]] = {}
        """Completions whose receipt keeps them meanwhile, waiting for the group commit, by digest. Their claims are
        dropped in the same commit: another process must not make the call again before its answer is in the
        cache."""

    def _add_columns(self) -> None:
        """Give a cache written before `_ADDED_COLUMNS` existed those columns (empty), once, whoever opens it first."""
        with self._transaction():
            present = {row[1] for row in self._db.execute("PRAGMA table_info(completions)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in present:
                    self._db.execute(f"ALTER TABLE completions ADD COLUMN {name} {kind}")

    def close(self) -> None:
        """Commit the completions still grouped, and close the database."""
        self.flush()
        self._db.close()
        self._receipts_db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: CallKey) -> Completion | None:
        """The cached completion for this call (committed, or grouped for the next commit), or None."""
        return self.get_many([key.digest]).get(key.digest)

    def get_many(self, digests: Sequence[str]) -> dict[str, Completion]:
        """The cached completions of the calls with these key digests (`CallKey.digest`; committed, or grouped for
        the next commit) by digest, in one query for every few hundred; a call not cached is left out."""
        found = {digest: grouped[1] for digest in digests if (grouped := self._grouped.get(digest)) is not None}
        wanted = list(dict.fromkeys(digest for digest in digests if digest not in found))
        return found | _completions(self._db, wanted) if wanted else found

    @property
    def grouped(self) -> int:
        """Completions waiting for the group commit (`flush`)."""
        return len(self._grouped)

    def put(self, key: CallKey, completion: Completion) -> None:
        """Record a successful completion; its receipt is no longer needed.

        Committed at once, unless this process kept the call's receipt: then with the next group (`flush`, at most
        `_GROUP_ROWS` completions later), the receipt keeping the answer meanwhile for a process killed before.
        """
        with self._receipts_lock:
            kept = key.digest in self._receipted
        if not kept:
            with self._transaction():
                self._write([(key, completion)])
            return
        self._grouped[key.digest] = (key, completion)
        if len(self._grouped) >= _GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Commit the grouped completions, drop their receipts and the claims released on them, in one transaction."""
        if not self._grouped:
            return
        grouped = list(self._grouped.values())
        with self._transaction():
            self._write(grouped)
            _delete(self._db, "claims", list(self._grouped), owner=self._owner)
        self._grouped.clear()
        with self._receipts_lock:
            self._receipted.difference_update(key.digest for key, _ in grouped)

    def _write(self, completions: list[tuple[CallKey, Completion]]) -> None:
        """Insert completions and drop their receipts (within a transaction)."""
        now = time.time()
        _insert(
            self._db,
            "completions (key, model, request, text, finish_reason, input_tokens, output_tokens, latency_s, "
            "created_at, served_model, system_fingerprint)",
            [
                (
                    key.digest,
                    key.model,
                    key.canonical_json,
                    completion.text,
                    completion.finish_reason,
                    completion.input_tokens,
                    completion.output_tokens,
                    completion.latency_s,
                    now,
                    completion.served_model,
                    completion.system_fingerprint,
                )
                for key, completion in completions
            ],
        )
        _delete(self._db, "receipts", [key.digest for key, _ in completions])

    def put_receipt(self, key: CallKey, receipt: Receipt) -> None:
        """Keep an answer that has arrived but is not parsed yet (committed at once; callable from any thread)."""
        with self._receipts_lock:
            self._receipts_db.execute(
                "INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?, ?, ?)",
                (key.digest, key.canonical_json, receipt.content_type, receipt.body, receipt.latency_s, time.time()),
            )
            self._receipted.add(key.digest)

    def receipt(self, key: CallKey) -> Receipt | None:
        """The answer an earlier process received for this call and did not get to store, or None."""
        return self.receipts([key]).get(key.digest)

    def receipts(self, keys: Sequence[CallKey]) -> dict[str, Receipt]:
        """`receipt` of each of these calls that has one, by digest, in one query for every few hundred."""
        rows = _rows(self._db, "receipts", "content_type, body, latency_s", [key.digest for key in keys])
        return {digest: Receipt(content_type, bytes(body), latency_s) for digest, content_type, body, latency_s in rows}

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def claim(self, key: CallKey, *, again: bool = False) -> Claim:
        """Claim the call for this process, unless it is answered already (`again`: even so, to make it anew) or a
        live process has claimed it."""
        return self.claim_all([(key, again)])[0][0]

    def claim_all(self, calls: Sequence[tuple[CallKey, bool]]) -> list[tuple[Claim, Receipt | None]]:
        """`claim` each call (the flag: made `again`) in one transaction, in order, each claimed call not made again
        with the receipt a process that died left for it (`receipt`): a run that starts many calls at once claims
        them with one write of the cache, not one each."""
        digests = [key.digest for key, _ in calls]
        with self._transaction():
            done = {digest for digest, _ in _rows(self._db, "completions", "1", digests)}
            holders = {
                digest: holder for digest, *holder in _rows(self._db, "claims", "owner, host, pid, claimed_at", digests)
            }
            claims = [(key, again, self._claim(key, again, done, holders.get(key.digest))) for key, again in calls]
            now, pid = time.time(), os.getpid()
            mine = {key.digest for key, _, claim in claims if claim == "claimed"}
            _insert(self._db, "claims", [(digest, self._owner, self._host, pid, now) for digest in mine])
            kept = self.receipts([key for key, again, claim in claims if claim == "claimed" and not again])
        return [
            (claim, kept.get(key.digest) if claim == "claimed" and not again else None) for key, again, claim in claims
        ]

    def _claim(self, key: CallKey, again: bool, done: set[str], holder: list[Any] | None) -> Claim:
        """The claim of a call, given the keys answered already and the call's claim as it stands (owner, host, pid,
        time)."""
        if not again and key.digest in done:
            return "done"
        if holder is not None and holder[0] != self._owner and self._holds(*holder[1:]):
            return "busy"
        return "claimed"

    def _holds(self, host: str, pid: int, claimed_at: float) -> bool:
        # The age limit also covers a reused pid on this host.
        recent = time.time() - claimed_at < _STALE_CLAIM_S
        return recent and (_alive(pid) if host == self._host else True)

    def release(self, key: CallKey) -> None:
        """Drop this process's claim on the call (after its answer is stored, or after it failed); for a completion
        waiting for the group commit, that commit drops it."""
        if key.digest not in self._grouped:
            self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key.digest, self._owner))

    def record_failure(self, key: CallKey, kind: str, message: str, attempts: int) -> None:
        """Log a failed call; it stays uncached, so the next run tries it again (its receipt, unusable, goes)."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO failures (key, model, kind, message, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key.digest, key.model, kind, message, attempts, time.time()),
            )
            self._db.execute("DELETE FROM receipts WHERE key = ?", (key.digest,))
        with self._receipts_lock:
            self._receipted.discard(key.digest)

    def count_completions(self) -> int:
        """Number of cached completions (grouped ones committed first)."""
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def count_failures(self) -> int:
        """Number of failures logged over all runs."""
        return int(self._db.execute("SELECT COUNT(*) FROM failures").fetchone()[0])
