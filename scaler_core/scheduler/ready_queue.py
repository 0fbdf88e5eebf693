"""Ready work ordered by priority, first come first served within a priority.

One deque per priority level and a heap of the levels in use: a queued task costs one deque slot
(8 bytes) instead of a heap tuple (~100 bytes with its sequence number; see W7), and push/pop are
O(1) within a level. Items are task ids (bytes) or graph entries; the queue does not look inside.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional


class ReadyQueue:
    def __init__(self):
        self._levels: Dict[int, Deque[Any]] = {}  # -priority -> items in arrival order
        self._keys: List[int] = []  # heap of the -priority of each non-empty level
        self._count = 0

    def push(self, priority: int, item: Any, front: bool = False) -> None:
        """Queue `item`; `front` puts it ahead of its level (work handed back keeps its turn)."""
        key = -priority
        level = self._levels.get(key)
        if level is None:
            level = self._levels[key] = deque()
            heapq.heappush(self._keys, key)
        if front:
            level.appendleft(item)
        else:
            level.append(item)
        self._count += 1

    def peek(self) -> Optional[Any]:
        if not self._count:
            return None
        return self._levels[self._keys[0]][0]

    def pop(self) -> Any:
        key = self._keys[0]
        level = self._levels[key]
        item = level.popleft()
        self._count -= 1
        if not level:
            del self._levels[key]
            heapq.heappop(self._keys)
        return item

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        for key in sorted(self._levels):
            yield from self._levels[key]
