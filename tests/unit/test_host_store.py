"""The host store without a cluster: object files, the spill policy, spilling, the object storage's
location records, and the object server answering a fetch over a real socket."""

import mmap
import os
import pickle
import threading
import time

import numpy as np
import pytest

from scaler_core.host_store import (PENDING, HostStore, HostStoreLocation, LocatedObjects, ObjectServer,
                                    create_host_store, delete_objects, load_object, remove_host_store)
from scaler_core.host_store.object_file import ALIGNMENT, CorruptObjectFile, open_object_file, write_object_file
from scaler_core.host_store.spill_policy import StoredObject, objects_to_spill
from scaler_core.host_store import recycling
from scaler_core.host_store import store as store_module
from scaler_core.host_store.store import remove_stale_host_stores
from scaler_core.object_storage.store import ObjectStore
from scaler_core.serialization import dumps_frames, loads_frames
from scaler_core.worker.objects import ObjectCache

MiB = 2**20


@pytest.fixture
def location(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "disk").mkdir()
    location = create_host_store(str(tmp_path / "memory"), str(tmp_path / "disk"))
    yield location
    remove_host_store(location)


def test_object_file_round_trip_is_aligned_writable_and_equal(tmp_path):
    array = np.arange(1_000_003, dtype=np.float64)
    frames = dumps_frames({"array": array, "text": "x" * 10})
    path = str(tmp_path / "object")
    size = write_object_file(path, frames)
    assert size == os.path.getsize(path) and size % ALIGNMENT == 0
    loaded = open_object_file(path)
    assert [bytes(frame) for frame in loaded] == [bytes(memoryview(frame)) for frame in frames]
    value = loads_frames(loaded)
    assert value["text"] == "x" * 10 and np.array_equal(value["array"], array)
    assert value["array"].ctypes.data % ALIGNMENT == 0
    value["array"][0] = -1.0  # a private mapping: writable, and the file keeps its bytes
    assert loads_frames(open_object_file(path))["array"][0] == 0.0
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]


def test_object_file_empty_frames_missing_and_corrupt(tmp_path):
    path = str(tmp_path / "object")
    write_object_file(path, [b"", pickle.dumps(None)])
    assert [bytes(frame) for frame in open_object_file(path)] == [b"", pickle.dumps(None)]
    assert open_object_file(str(tmp_path / "absent")) is None
    (tmp_path / "garbage").write_bytes(b"not an object file at all")
    with pytest.raises(CorruptObjectFile):
        open_object_file(str(tmp_path / "garbage"))


def test_spill_policy_moves_least_recently_used_until_the_incoming_object_fits():
    stored = [StoredObject("old", 40, 1.0), StoredObject("new", 40, 3.0), StoredObject("middle", 40, 2.0)]
    assert objects_to_spill(stored, incoming_bytes=10, limit_bytes=200) == []
    assert objects_to_spill(stored, incoming_bytes=50, limit_bytes=150) == ["old"]
    assert objects_to_spill(stored, incoming_bytes=100, limit_bytes=150) == ["old", "middle"]
    # an object larger than the limit goes to disk itself and moves nothing
    assert objects_to_spill(stored, incoming_bytes=151, limit_bytes=150) is None
    # one still being written stays where it is
    writing = [StoredObject("partial", 100, 0.0, movable=False), StoredObject("done", 40, 5.0)]
    assert objects_to_spill(writing, incoming_bytes=50, limit_bytes=150) == ["done"]
    # and when only moving it would make room, the incoming object goes to disk instead
    assert objects_to_spill(writing, incoming_bytes=60, limit_bytes=150) is None


def test_an_object_that_cannot_fit_beside_one_still_being_written_goes_to_disk(location):
    """Two workers writing at once: the second object finds the first still being written (it cannot
    move yet), so it goes to disk rather than take memory past the limit."""
    store = HostStore(location, memory_limit_bytes=3 * MiB)
    first = location.paths_of(b"A" * 16)[0]
    size = store.put(b"A" * 16, dumps_frames(np.zeros(2 * MiB // 8)))
    os.rename(first, first + ".123.partial")  # as it was while its writer filled it
    store.put(b"B" * 16, dumps_frames(np.zeros(MiB // 8)))
    assert os.path.exists(location.paths_of(b"B" * 16)[1]) and store.usage()[0] == size


def test_results_held_by_workers_count_against_the_memory_limit(location):
    store = HostStore(location, memory_limit_bytes=3 * MiB)
    one_mib = dumps_frames(np.zeros(MiB // 8 - 64))
    store.put(b"a" * 16, one_mib)
    assert os.path.exists(location.paths_of(b"a" * 16)[0])
    store.set_held(2 * MiB)  # this process holds 2 MiB in its memory: 1 MiB is left for files
    store.put(b"b" * 16, one_mib)
    assert os.path.exists(location.paths_of(b"a" * 16)[1]), "the older file made room: to disk"
    store.set_held(3 * MiB)  # nothing left for files
    store.put(b"d" * 16, one_mib)
    assert os.path.exists(location.paths_of(b"d" * 16)[1]), "no room left in memory: to disk"
    # a file of a process that is gone no longer counts (and is removed)
    with open(os.path.join(location.memory_directory, ".held", "999999999"), "wb") as handle:
        handle.write((8 * MiB).to_bytes(8, "little"))
    store.set_held(0)
    store.put(b"c" * 16, one_mib)
    assert os.path.exists(location.paths_of(b"c" * 16)[0])
    assert not os.path.exists(os.path.join(location.memory_directory, ".held", "999999999"))
    assert store.usage()[0] <= 3 * MiB


def test_store_spills_past_its_limit_and_reads_back_from_disk(location):
    store = HostStore(location, memory_limit_bytes=3 * MiB)
    arrays = {bytes([i]) * 16: np.full(MiB // 8, i, dtype=np.float64) for i in range(6)}  # 1 MiB each
    for object_id, array in arrays.items():
        store.put(object_id, dumps_frames(array))
        time.sleep(0.01)  # distinct modification times: the least recently used is well defined
    in_memory, on_disk = store.usage()
    assert in_memory <= 3 * MiB and on_disk >= 3 * MiB
    assert {name for name in os.listdir(location.spill_directory)} >= {bytes([0]).hex() * 16}
    for object_id, array in arrays.items():
        assert np.array_equal(loads_frames(store.load(object_id)), array)
    big = np.zeros(4 * MiB // 8)  # larger than the limit: straight to disk
    store.put(b"B" * 16, dumps_frames(big))
    assert os.path.exists(location.paths_of(b"B" * 16)[1])
    delete_objects(location, list(arrays) + [b"B" * 16])
    assert store.usage() == (0, 0)
    assert load_object(location, b"B" * 16) is None


def test_stale_stores_of_dead_processes_are_removed(tmp_path):
    memory = tmp_path / "memory"
    memory.mkdir()
    dead = memory / "scaler-objects-999999999-abcd"  # no such pid
    alive = memory / f"scaler-objects-{os.getpid()}-abcd"
    dead.mkdir()
    alive.mkdir()
    remove_stale_host_stores(str(memory))
    assert not dead.exists() and alive.exists()


def test_location_text_round_trip():
    location = HostStoreLocation("/dev/shm/a", "/tmp/a", "tcp://10.0.0.1:5555")
    assert HostStoreLocation.decode(location.encode()) == location
    assert HostStoreLocation.decode("/dev/shm/a\n/tmp/a") == HostStoreLocation("/dev/shm/a", "/tmp/a", "")


def test_object_storage_records_locations_and_returns_them_on_delete():
    store = ObjectStore()
    store.wait_for(b"x", b"reader", deadline=10.0)
    waiting, gone = store.put(b"x", b"client", [], "where")
    assert waiting == [b"reader"] and gone == []
    assert store.get(b"x") == ([], "where")
    assert store.put(b"x", b"client", [], "elsewhere") == ([], ["where"])  # a re-run replaced it
    store.put(b"y", b"client", [b"frames"])
    assert store.delete(b"y") == ""
    assert store.delete_owner(b"client") == [(b"x", "elsewhere")]
    # a put for an owner already gone: its file must go too
    assert store.put(b"z", b"client", [], "late") == ([], ["late"])


def test_object_storage_asks_a_holder_once_and_answers_readers_when_it_writes_the_object_out():
    store = ObjectStore()
    assert store.put(b"h", b"client", [], holder=b"W1|os", sender=b"W1|os") == ([], [])
    assert store.holder_to_ask(b"h") is None  # nobody waits yet: it stays in the worker's memory
    store.wait_for(b"h", b"reader", deadline=10.0)
    assert store.holder_to_ask(b"h") == b"W1|os"
    store.wait_for(b"h", b"second reader", deadline=10.0)
    assert store.holder_to_ask(b"h") is None  # asked already
    # the holder's own put of the file: readers answered, and the holder is not told to drop it
    assert store.put(b"h", b"client", [], "where", sender=b"W1|os") == ([b"reader", b"second reader"], [])
    assert store.take_released_holds() == [] and store.get(b"h") == ([], "where")


def test_object_storage_releases_deleted_held_objects_and_loses_those_of_a_gone_holder():
    store = ObjectStore()
    store.put(b"a", b"client", [], holder=b"W1|os", sender=b"W1|os")
    store.put(b"b", b"client", [], holder=b"W1|os", sender=b"W1|os")
    store.put(b"c", b"other", [], holder=b"W2|os", sender=b"W2|os")
    assert store.delete(b"a") == ""
    assert store.take_released_holds() == [(b"W1|os", b"a")]  # the holder drops it
    store.wait_for(b"b", b"reader", deadline=10.0)
    assert store.lose(b"b") == [b"reader"] and store.get(b"b") is None  # its holder is gone
    assert store.take_released_holds() == [(b"W1|os", b"b")]  # should it only have seemed gone
    assert b"b" in store.lost  # a later get is answered at once
    store.put(b"b", b"client", [], holder=b"W3|os", sender=b"W3|os")  # made again
    assert b"b" not in store.lost
    store.delete_owner(b"other")
    assert store.take_released_holds() == [(b"W2|os", b"c")]
    # a held put for an owner already gone is dropped by its holder at once
    store.put(b"d", b"other", [], holder=b"W2|os", sender=b"W2|os")
    assert store.take_released_holds() == [(b"W2|os", b"d")] and store.get(b"d") is None


def test_object_storage_removes_the_file_of_a_held_object_deleted_while_it_was_written_out():
    store = ObjectStore()
    store.put(b"h", b"client", [], holder=b"W1|os", sender=b"W1|os")
    store.wait_for(b"h", b"reader", deadline=10.0)
    assert store.holder_to_ask(b"h") == b"W1|os"
    store.delete(b"h")  # the holder's put of the file crosses this delete
    assert store.put(b"h", b"client", [], "where", sender=b"W1|os") == ([], ["where"])
    assert store.get(b"h") is None


def test_object_storage_asks_again_once_a_wait_expired():
    store = ObjectStore()
    store.put(b"h", b"client", [], holder=b"W1|os", sender=b"W1|os")
    store.wait_for(b"h", b"reader", deadline=10.0)
    assert store.holder_to_ask(b"h") == b"W1|os"
    assert store.expire_waiting(11.0) == [(b"h", b"reader")]
    store.wait_for(b"h", b"later reader", deadline=30.0)
    assert store.holder_to_ask(b"h", now=12.0) == b"W1|os"
    # unanswered for a while: asked again (a gone holder then fails the send), the clock restarted
    assert store.unanswered_asks(now=14.0, after_seconds=5.0) == []
    assert store.unanswered_asks(now=17.0, after_seconds=5.0) == [(b"h", b"W1|os")]
    assert store.unanswered_asks(now=18.0, after_seconds=5.0) == []


def test_cache_holds_own_results_within_their_budget_and_hands_back_the_oldest(location):
    cache = ObjectCache(capacity_bytes=MiB, held_capacity_bytes=10 * MiB)
    frames = [np.zeros(4 * MiB, dtype=np.uint8)]
    assert cache.hold(b"1" * 16, frames, 4 * MiB, b"c") == []
    assert cache.hold(b"2" * 16, frames, 4 * MiB, b"c") == []
    cache.put(b"f" * 16, [np.zeros(2 * MiB, dtype=np.uint8)])  # past the fetched budget: it goes, held ones stay
    assert cache.has(b"1" * 16) and cache.has(b"2" * 16) and not cache.has(b"f" * 16)
    assert cache.hold(b"3" * 16, frames, 4 * MiB, b"c") == [b"1" * 16]  # 12 MiB held: the oldest is written out
    assert cache.take_held(b"1" * 16) == (frames, b"c") and cache.take_held(b"1" * 16) is None  # one writer only
    assert cache.held_ids() == [b"2" * 16, b"3" * 16]
    cache.discard([b"1" * 16, b"2" * 16])
    assert not cache.has(b"2" * 16) and cache.held_ids() == [b"3" * 16]
    cache.pin([b"3" * 16])  # a task here will read it
    assert cache.take_held(b"3" * 16) == (frames, b"c")
    cache.discard([b"3" * 16])  # written out meanwhile: the copy goes, but only after that task
    assert cache.frames_of(b"3" * 16) is frames and cache.held_ids() == [] and cache.held_bytes == 0
    cache.unpin([b"3" * 16])
    assert not cache.has(b"3" * 16)


def test_cache_keeps_mapped_objects_only_while_pinned(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.put(b"m" * 16, dumps_frames(np.ones(1000)))
    cache = ObjectCache(capacity_bytes=64 * MiB, load_local=store.load)
    cache.pin([b"m" * 16])
    assert cache.has(b"m" * 16)
    assert np.array_equal(loads_frames(cache.frames_of(b"m" * 16)), np.ones(1000))
    cache.unpin([b"m" * 16])
    assert b"m" * 16 not in cache._frames  # mapped again on the next use, not held
    assert not cache.has(b"n" * 16)


@pytest.mark.timeout(30)
def test_object_server_answers_a_reader_on_another_host(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    array = np.random.default_rng(0).random(300_000)
    store.put(b"r" * 16, dumps_frames(array))
    server = ObjectServer(location, "127.0.0.1")
    arrived = {}
    done = threading.Event()

    def on_arrival(object_id, frames):
        arrived[object_id] = frames
        if len(arrived) == 2:
            done.set()

    reader = LocatedObjects(on_arrival)
    try:
        # the reader's view: the store's directories are not on its host, only its server is reachable
        elsewhere = HostStoreLocation("/nonexistent/memory", "/nonexistent/disk", server.address).encode()
        assert reader.read(b"r" * 16, elsewhere) is PENDING
        assert reader.read(b"?" * 16, elsewhere) is PENDING
        assert done.wait(20)
        assert np.array_equal(loads_frames(arrived[b"r" * 16]), array)
        assert arrived[b"?" * 16] is None
        # and on its own host, the same reader maps the file at once
        assert np.array_equal(loads_frames(reader.read(b"r" * 16, store.encoded_location)), array)
    finally:
        reader.stop()
        server.stop()


def test_a_store_gone_from_this_host_is_lost_at_once_not_fetched(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.put(b"g" * 16, dumps_frames(np.ones(100_000)))
    moved_away = HostStoreLocation(location.memory_directory, location.spill_directory, "tcp://127.0.0.1:9",
                                   location.host_key)
    assert moved_away.is_here() and location.host_key
    reader = LocatedObjects(lambda object_id, frames: None)
    try:
        remove_host_store(location)  # the cluster is gone, and its files with it
        assert reader.read(b"g" * 16, moved_away.encode()) is None  # lost: no fetch from a dead server
        elsewhere = HostStoreLocation(location.memory_directory, location.spill_directory, "tcp://127.0.0.1:9",
                                      "another-boot/1")
        assert not elsewhere.is_here()
    finally:
        reader.stop()


def test_puts_well_below_the_limit_do_not_scan_the_directory(location, monkeypatch):
    store = HostStore(location, memory_limit_bytes=8 * MiB)
    scans = []
    original = HostStore._objects_in_memory
    monkeypatch.setattr(HostStore, "_objects_in_memory", lambda self: scans.append(1) or original(self))
    for index in range(6):  # 6 x 1 MiB: within the limit, no scan
        store.put(bytes([index]) * 16, dumps_frames(np.zeros(MiB // 8)))
    assert scans == []
    delete_objects(location, [bytes([index]) * 16 for index in range(6)])  # the bound does not see these
    for index in range(6, 12):  # past the stale bound: one scan finds the true figure, then none again
        store.put(bytes([index]) * 16, dumps_frames(np.zeros(MiB // 8)))
    assert len(scans) == 1 and store.usage()[1] == 0, "nothing spilled: the deleted objects freed the room"


def test_small_object_files_are_read_large_ones_mapped(tmp_path):
    small, large = np.arange(1000.0), np.arange(300_000.0)
    for name, array in (("small", small), ("large", large)):
        write_object_file(str(tmp_path / name), dumps_frames(array))
        frames = open_object_file(str(tmp_path / name))
        value = loads_frames(frames)
        assert np.array_equal(value, array) and value.flags.writeable
        assert isinstance(frames[0].obj, bytearray if name == "small" else mmap.mmap)


@pytest.mark.timeout(60)
def test_a_fetch_from_a_server_that_goes_away_gives_up_in_seconds(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.put(b"r" * 16, dumps_frames(np.ones(300_000)))
    server = ObjectServer(location, "127.0.0.1")
    arrived, done = {}, threading.Event()

    def on_arrival(object_id, frames):
        arrived[object_id] = frames
        done.set()

    reader = LocatedObjects(on_arrival)
    try:
        elsewhere = HostStoreLocation("/nonexistent/memory", "/nonexistent/disk", server.address).encode()
        assert reader.read(b"r" * 16, elsewhere) is PENDING and done.wait(20)  # connected and served
        server.stop()  # the holder is gone
        done.clear()
        started = time.monotonic()
        assert reader.read(b"r" * 16, elsewhere) is PENDING and done.wait(30)
        assert arrived[b"r" * 16] is None and time.monotonic() - started < 10
    finally:
        reader.stop()


# --- recycled object files (host_store/recycling.py) ----------------------------------------------


def _inode(path):
    return os.stat(path).st_ino


def test_a_deleted_large_file_is_written_over_by_the_next_large_result(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.recycle_deleted_files()
    first, second = np.full(2 * MiB // 8, 1.0), np.arange(3 * MiB // 8, dtype=np.float64)
    store.put(b"a" * 16, dumps_frames(first))
    inode = _inode(location.paths_of(b"a" * 16)[0])
    delete_objects(location, [b"a" * 16])
    assert load_object(location, b"a" * 16) is None  # gone for readers at once
    assert store.usage() == (0, 0)  # the pool is not an object
    store.put(b"b" * 16, dumps_frames(second))  # larger than the pooled file: it grows
    assert _inode(location.paths_of(b"b" * 16)[0]) == inode
    assert np.array_equal(loads_frames(store.load(b"b" * 16)), second)
    assert os.listdir(recycling.pool_directory(location.memory_directory)) == []


def test_a_pooled_file_still_mapped_by_a_reader_is_never_written_over(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.recycle_deleted_files()
    original = np.full(2 * MiB // 8, 7.0)
    store.put(b"a" * 16, dumps_frames(original))
    inode = _inode(location.paths_of(b"a" * 16)[0])
    reader = loads_frames(store.load(b"a" * 16))  # a task's input: a view of the mapped file
    delete_objects(location, [b"a" * 16])
    store.put(b"b" * 16, dumps_frames(np.zeros(2 * MiB // 8)))
    assert _inode(location.paths_of(b"b" * 16)[0]) != inode  # a new file: the mapped one was unlinked
    assert np.array_equal(reader, original)
    del reader
    # once nobody maps it, the next deleted file is taken again
    delete_objects(location, [b"b" * 16])
    inode = os.stat(os.path.join(recycling.pool_directory(location.memory_directory), (b"b" * 16).hex())).st_ino
    store.put(b"c" * 16, dumps_frames(np.ones(2 * MiB // 8)))
    assert _inode(location.paths_of(b"c" * 16)[0]) == inode


def test_a_store_without_a_pool_unlinks_and_small_files_are_never_pooled(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.put(b"a" * 16, dumps_frames(np.zeros(2 * MiB // 8)))
    delete_objects(location, [b"a" * 16])
    assert not os.path.exists(recycling.pool_directory(location.memory_directory))
    store.recycle_deleted_files()
    store.put(b"s" * 16, dumps_frames(np.zeros(1000)))
    delete_objects(location, [b"s" * 16])
    assert os.listdir(recycling.pool_directory(location.memory_directory)) == []


def test_the_pool_keeps_the_newest_files_and_is_emptied_when_idle(location, monkeypatch):
    monkeypatch.setattr(recycling, "POOL_MAX_FILES", 2)
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.recycle_deleted_files()
    ids = [bytes([i]) * 16 for i in range(4)]
    for object_id in ids:
        store.put(object_id, dumps_frames(np.zeros(MiB // 8 + 1)))
    for object_id in ids:
        delete_objects(location, [object_id])
        time.sleep(0.02)  # distinct times of deletion (ctime is coarse)
    pool = recycling.pool_directory(location.memory_directory)
    assert sorted(os.listdir(pool)) == sorted(object_id.hex() for object_id in ids[2:])
    assert recycling.trim_pool(location.memory_directory, idle_seconds=60) == 0
    assert recycling.trim_pool(location.memory_directory, idle_seconds=60, now=time.time() + 61) == 2
    assert os.listdir(pool) == []


def test_a_result_takes_a_pooled_file_of_about_its_size_only(location):
    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.recycle_deleted_files()
    store.put(b"L" * 16, dumps_frames(np.zeros(8 * MiB // 8)))
    large = _inode(location.paths_of(b"L" * 16)[0])
    delete_objects(location, [b"L" * 16])
    store.put(b"s" * 16, dumps_frames(np.zeros(2 * MiB // 8)))  # cutting 8 MiB down to 2 would waste it
    assert _inode(location.paths_of(b"s" * 16)[0]) != large
    store.put(b"m" * 16, dumps_frames(np.zeros(5 * MiB // 8)))
    assert _inode(location.paths_of(b"m" * 16)[0]) == large
    assert np.array_equal(loads_frames(store.load(b"m" * 16)), np.zeros(5 * MiB // 8))


def test_the_pool_is_emptied_before_any_object_spills(location, monkeypatch):
    store = HostStore(location, memory_limit_bytes=4 * MiB)
    store.recycle_deleted_files()
    store.put(b"a" * 16, dumps_frames(np.zeros(2 * MiB // 8)))
    delete_objects(location, [b"a" * 16])
    pool = recycling.pool_directory(location.memory_directory)
    assert len(os.listdir(pool)) == 1
    monkeypatch.setattr(store_module, "claim_recycled", lambda *args: None)  # the pooled file stays unclaimed
    store.put(b"b" * 16, dumps_frames(np.zeros(3 * MiB // 8)))  # past the bound: the store looks for room
    assert os.listdir(pool) == []
    assert store.usage()[1] == 0  # nothing spilled: the pooled bytes were not objects


def _map_and_wait(path, mapped, release):
    frames = open_object_file(path)  # maps the file; the descriptor is closed at once
    mapped.set()
    release.wait(20)
    del frames


@pytest.mark.timeout(60)
def test_a_file_mapped_by_another_process_is_never_written_over(location):
    import multiprocessing

    store = HostStore(location, memory_limit_bytes=64 * MiB)
    store.recycle_deleted_files()
    store.put(b"a" * 16, dumps_frames(np.full(2 * MiB // 8, 3.0)))
    context = multiprocessing.get_context("spawn")
    mapped, release = context.Event(), context.Event()
    reader = context.Process(target=_map_and_wait, args=(location.paths_of(b"a" * 16)[0], mapped, release))
    reader.start()
    try:
        assert mapped.wait(30)
        pooled = os.path.join(recycling.pool_directory(location.memory_directory), (b"a" * 16).hex())
        delete_objects(location, [b"a" * 16])
        assert os.path.exists(pooled)
        assert recycling.claim_recycled(location.memory_directory, pooled + ".claim", 2 * MiB) is None
        assert not os.path.exists(pooled + ".claim")  # still mapped elsewhere: unlinked, never written over
    finally:
        release.set()
        reader.join(30)
    store.put(b"b" * 16, dumps_frames(np.zeros(2 * MiB // 8)))
    delete_objects(location, [b"b" * 16])
    descriptor = recycling.claim_recycled(location.memory_directory, pooled + ".claim", 2 * MiB)
    assert descriptor is not None  # the pool still serves files nobody maps
    os.close(descriptor)
