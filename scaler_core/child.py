"""How the engine starts its processes: ``python -m scaler_core.child_entry NAME``.

The parent writes a pickled ``(function, args)`` to the child's stdin and keeps the pipe open; the
child runs ``function(*args)``. A watchdog thread waits for the pipe to close: when the parent dies,
even by SIGKILL, the child exits too, so no process is left behind.

Children are plain subprocesses rather than multiprocessing ones, so a user's script is never
re-imported in them (no ``if __name__ == "__main__"`` guard needed) and test harnesses that reap
multiprocessing children leave them alone. They inherit the parent's ``sys.path`` through
PYTHONPATH, so functions defined in the user's modules import the same way as in the parent.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

HEADER = struct.Struct("!Q")
DETACHED_VARIABLE = "SCALER_CHILD_DETACHED"


def spawn(function: Callable, args: Sequence[Any], name: str, extra_env: Optional[Dict[str, str]] = None,
          detached: bool = False) -> subprocess.Popen:
    """`detached`: the child outlives this process (its own session, no watchdog); it must end by itself."""
    paths = [os.getcwd() if entry == "" else entry for entry in sys.path]
    inherited = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, **(extra_env or {}), PYTHONPATH=os.pathsep.join(paths + ([inherited] if inherited else [])))
    if detached:
        env[DETACHED_VARIABLE] = "1"
    # a detached child keeps none of our output pipes open: whoever reads them sees their end when we exit
    output = subprocess.DEVNULL if detached else None
    process = subprocess.Popen([sys.executable, "-m", "scaler_core.child_entry", name], stdin=subprocess.PIPE, env=env,
                               close_fds=True, start_new_session=detached, stdout=output, stderr=output)
    payload = pickle.dumps((function, tuple(args)))
    try:
        process.stdin.write(HEADER.pack(len(payload)) + payload)
        process.stdin.flush()
    except BrokenPipeError:
        pass  # the child died at birth; the caller sees it exit like any other
    return process


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _watch_parent(fd: int) -> None:
    # raw os.read: a buffered reader's lock would upset interpreter shutdown
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os._exit(1)


def _raise_file_limit() -> None:
    """Servers hold a descriptor per peer: allow as many as the hard limit permits."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass


def main() -> None:
    _raise_file_limit()
    header = _read_exactly(0, HEADER.size)
    if len(header) != HEADER.size:
        sys.exit("scaler_core.child_entry: no start-up payload on stdin")
    function, args = pickle.loads(_read_exactly(0, HEADER.unpack(header)[0]))
    if os.environ.pop(DETACHED_VARIABLE, "") != "1":
        threading.Thread(target=_watch_parent, args=(0,), name="scaler-parent-watch", daemon=True).start()
    code = 0
    try:
        function(*args)
    except SystemExit as exit_request:
        code = exit_request.code if isinstance(exit_request.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
