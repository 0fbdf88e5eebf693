"""Large results kept on the host that made them: files in shared memory, spilled to disk past a limit,
served to other hosts by the cluster's object server."""

from scaler_core.host_store.process_store import close_process_store, open_process_store
from scaler_core.host_store.remote import PENDING, LocatedObjects, ObjectServer, address_towards, delete_remote
from scaler_core.host_store.store import (HostStore, HostStoreLocation, create_host_store, default_memory_limit,
                                          default_memory_parent, delete_objects, load_object, remove_host_store)

__all__ = ["close_process_store", "open_process_store", "PENDING", "LocatedObjects", "ObjectServer", "address_towards", "delete_remote", "HostStore",
           "HostStoreLocation", "create_host_store", "default_memory_limit", "default_memory_parent",
           "delete_objects", "load_object", "remove_host_store"]
