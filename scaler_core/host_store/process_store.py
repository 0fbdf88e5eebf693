"""A process's own host store and object server: opened by a cluster supervisor (for its workers'
results) or by a client (for the large objects it sends), closed with it."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from typing import Optional, Tuple

import zmq

from scaler_core.host_store.remote import ObjectServer, address_towards
from scaler_core.host_store.store import (HostStore, create_host_store, default_memory_limit, default_memory_parent,
                                          remove_host_store)

logger = logging.getLogger(__name__)


def open_process_store(scheduler_address: str, keys, owner: str, memory_parent: str = "", spill_parent: str = "",
                       memory_limit_bytes: int = 0) -> Tuple[Optional[HostStore], Optional[ObjectServer]]:
    """(store, its object server), or (None, None) when this process keeps no store: with CurveZMQ
    keys (an object server would hand objects to anyone who reaches it; the encrypted object storage
    carries them instead) or when the directories cannot be made."""
    if keys.enabled:
        logger.info("%s: CurveZMQ keys set: large objects go through the object storage", owner)
        return None, None
    memory_parent = memory_parent or default_memory_parent()
    location = None
    try:
        location = create_host_store(memory_parent, spill_parent or tempfile.gettempdir())
        server = ObjectServer(location, address_towards(scheduler_address))
    except (OSError, zmq.ZMQError) as error:
        logger.warning("%s: no host store (%s): large objects go through the object storage", owner, error)
        if location is not None:
            remove_host_store(location)
        return None, None
    limit = memory_limit_bytes or default_memory_limit(memory_parent)
    logger.info("%s: large objects kept in %s up to %.0f MiB, then in %s", owner, location.memory_directory,
                limit / 2**20, location.spill_directory)
    return HostStore(dataclasses.replace(location, server_address=server.address), limit), server


def close_process_store(store: Optional[HostStore], server: Optional[ObjectServer]) -> None:
    if server is not None:
        server.stop()
    if store is not None:
        remove_host_store(store.location)
