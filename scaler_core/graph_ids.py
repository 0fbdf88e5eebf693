"""Task ids of declared-graph nodes: the graph id followed by the node's index (see GraphSubmit).

Client and scheduler both derive them, so the scheduler maps an id to its row without a dictionary.
"""

from __future__ import annotations

from typing import Optional, Tuple

GRAPH_ID_BYTES = 16
NODE_INDEX_BYTES = 4


def node_task_id(graph_id: bytes, index: int) -> bytes:
    return graph_id + index.to_bytes(NODE_INDEX_BYTES, "big")


def split_node_task_id(task_id: bytes) -> Optional[Tuple[bytes, int]]:
    """(graph id, node index) of a node's task id, or None for any other id."""
    if len(task_id) != GRAPH_ID_BYTES + NODE_INDEX_BYTES:
        return None
    return task_id[:GRAPH_ID_BYTES], int.from_bytes(task_id[GRAPH_ID_BYTES:], "big")
