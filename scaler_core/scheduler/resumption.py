"""How a journaled scheduler picks up after a restart (SchedulerState's part; no I/O).

The scheduler rebuilds its tasks from its peers rather than from disk: a client it does not know
but the journal lists, and any worker it does not know during the recovery window, are told to
`Reintroduce` themselves. The client then says hello and re-sends its unfinished tasks and graphs
(each future still gets one result: the client ignores a second one); the worker says hello,
finishes its running task (whose result counts if the same task reaches it again, see
worker/state.py) and drops those it had not started. A client the journal lists that has not come
back when the window closes is gone: its objects are freed. The journal itself is written by the
server from the lines this part hands out (journal.py).
"""

from __future__ import annotations

import logging
from typing import List, Optional

from scaler_core import protocol
from scaler_core.scheduler.journal import Recovered, client_record
from scaler_core.scheduler.outbox import OBJECT_STORAGE

logger = logging.getLogger(__name__)


class Resumption:
    """Mixed into SchedulerState: uses its settings, clients and outbox."""

    def _init_resumption(self) -> None:
        self.journaling = bool(self.settings.journal)
        self.epoch = 0
        self.returning_clients = set()  # in the journal, not back yet
        self.recovery_deadline: Optional[float] = None  # until then, unknown workers are asked back
        self._journal_lines: List[str] = []

    def resume_from(self, recovered: Recovered, now: float) -> None:
        """This start follows others on the same journal: expect their clients and workers back
        for one client timeout."""
        self.epoch = recovered.epoch
        self.returning_clients = set(recovered.clients)
        self.recovery_deadline = now + self.settings.client_timeout_seconds

    def journaled_clients(self):
        """Who the journal says is live: connected clients, and those still expected back."""
        return set(self.clients) | self.returning_clients

    def take_journal_lines(self) -> List[str]:
        lines, self._journal_lines = self._journal_lines, []
        return lines

    def _journal_client(self, client_id: bytes, live: bool) -> None:
        if self.journaling:
            self._journal_lines.append(client_record(client_id, live))

    def _client_returned(self, client_id: bytes) -> None:
        self.returning_clients.discard(client_id)
        self._journal_client(client_id, True)

    def _ask_back_client(self, client_id: bytes) -> bool:
        """An unknown client the previous scheduler served: told to carry on here."""
        if client_id not in self.returning_clients:
            return False
        self.outbox.send(client_id, protocol.Reintroduce(epoch=self.epoch))
        return True

    def _ask_back_worker(self, worker_id: bytes, now: float) -> bool:
        """An unknown worker during the recovery window: it was the previous scheduler's."""
        if self.recovery_deadline is None or now >= self.recovery_deadline:
            return False
        self.outbox.send(worker_id, protocol.Reintroduce(epoch=self.epoch))
        return True

    def _end_recovery_if_due(self, now: float) -> None:
        if self.recovery_deadline is None or now < self.recovery_deadline:
            return
        self.recovery_deadline = None
        for client_id in sorted(self.returning_clients):
            logger.warning("scheduler: client %r did not come back after the restart; freeing its objects", client_id)
            self.outbox.send(OBJECT_STORAGE, protocol.ObjectDeleteOwner(owner_id=client_id))
            self._journal_client(client_id, False)
        self.returning_clients.clear()

    def _forget_all_clients_on_shutdown(self) -> None:
        """A shutdown (not a restart): the next start expects no one back."""
        for client_id in list(self.clients) + sorted(self.returning_clients):
            self._journal_client(client_id, False)
        self.returning_clients.clear()
        self.recovery_deadline = None
