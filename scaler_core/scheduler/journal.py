"""The scheduler's journal: the little a restarted scheduler must know that its peers cannot tell it.

Everything about tasks is rebuilt from the peers when they reconnect (a client re-sends its
unfinished tasks and graphs, a worker keeps its running task and says hello again; see
PROTOCOL.md §7.18), so the hot path writes nothing here. The journal keeps which clients were
connected, so that a restarted scheduler tells a returning client to carry on (and one it had
dropped to start over), and frees the objects of clients that never come back; and how many
times the scheduler started on it (its epoch).

Format: one JSON object per line, appended and fsynced in batches; a start rewrites the file
compacted (written aside, fsynced, renamed). A line torn by a crash is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Set, Tuple

logger = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What the journal held when the scheduler started."""
    epoch: int  # this start's number: 1 on a new journal
    clients: Set[bytes] = field(default_factory=set)  # connected when the previous scheduler ended


def replay(lines: Iterable[str]) -> Recovered:
    """The journal's contents as of its last complete line (pure: tests feed it lines)."""
    epoch = 0
    clients: Set[bytes] = set()
    for line in lines:
        try:
            record = json.loads(line)
            if "epoch" in record:
                epoch = int(record["epoch"])
            elif "client" in record:
                client_id = bytes.fromhex(record["client"])
                if record.get("live"):
                    clients.add(client_id)
                else:
                    clients.discard(client_id)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # torn by a crash mid-write, or not ours
    return Recovered(epoch + 1, clients)


def client_record(client_id: bytes, live: bool) -> str:
    return json.dumps({"client": client_id.hex(), "live": live})


class Journal:
    COMPACT_AFTER_LINES = 10_000  # appended lines that make the file worth rewriting from the live state

    def __init__(self, path: str):
        self.path = path
        self._descriptor = -1
        self.appended = 0

    @classmethod
    def open(cls, path: str) -> Tuple["Journal", Recovered]:
        """Read the journal at `path` (a missing file is a first start), rewrite it compacted with
        this start's epoch, and keep it open for appending."""
        try:
            with open(path, encoding="utf-8", errors="replace") as existing:
                recovered = replay(existing)
        except FileNotFoundError:
            recovered = replay(())
        journal = cls(path)
        journal.rewrite(recovered.epoch, recovered.clients)
        logger.info("scheduler: journal %s, start %d, %d client(s) expected back", path, recovered.epoch,
                    len(recovered.clients))
        return journal, recovered

    def rewrite(self, epoch: int, clients: Iterable[bytes]) -> None:
        """Replace the file by just the live state (written aside, fsynced, renamed over it)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        lines = [json.dumps({"epoch": epoch})] + [client_record(client, True) for client in sorted(clients)]
        aside = f"{self.path}.{os.getpid()}.new"
        with open(aside, "w", encoding="utf-8") as compacted:
            compacted.write("\n".join(lines) + "\n")
            compacted.flush()
            os.fsync(compacted.fileno())
        os.replace(aside, self.path)
        _fsync_directory(directory)
        self.close()
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.appended = 0

    def append(self, lines: Iterable[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        if data:
            os.write(self._descriptor, data)
            os.fsync(self._descriptor)
            self.appended += data.count(b"\n")

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
