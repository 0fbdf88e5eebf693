"""Heap trimming after a busy spell (scaler_core.memory)."""

from scaler_core import memory


def test_trims_only_when_quiet_after_a_busy_spell(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "trim_heap", lambda: calls.append(1) or True)
    trimmer = memory.QuietTrimmer(threshold=1000, quiet_below=10)
    trimmer.handled(500)
    assert not trimmer.check() and not trimmer.check(), "not busy enough yet"
    trimmer.handled(5000)
    assert not trimmer.check(), "still busy: messages arrived since the last check"
    trimmer.handled(3)  # heartbeats only
    assert trimmer.check() and calls == [1]
    trimmer.handled(3)
    assert not trimmer.check(), "nothing to give back until the next busy spell"


def test_trim_heap_is_available_on_glibc():
    import platform

    assert memory.trim_heap() == (platform.libc_ver()[0] == "glibc")


def test_freeze_heap_thaws_its_own_freeze_and_leaves_anothers():
    import gc

    from scaler_core.memory import freeze_heap

    assert gc.get_freeze_count() == 0
    thaw = freeze_heap()
    assert gc.get_freeze_count() > 0
    thaw()
    assert gc.get_freeze_count() == 0

    gc.freeze()  # someone else's (a server about to fork, say)
    try:
        frozen_before = gc.get_freeze_count()
        freeze_heap()()
        assert gc.get_freeze_count() == frozen_before
    finally:
        gc.unfreeze()


def test_map_leaves_the_collector_as_it_found_it(client):
    import gc

    assert client.map(abs, range(-500, 500)) == [abs(n) for n in range(-500, 500)]
    assert gc.isenabled() and gc.get_freeze_count() == 0
