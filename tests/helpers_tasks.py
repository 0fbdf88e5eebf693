"""Functions the tests run on workers (importable, so workers load them by reference)."""

import os
import time


class CustomError(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)
        self.a = a
        self.b = b


def square(value):
    return value * value


def add(a, b):
    return a + b


def combine(a, b=10, *rest, c, d=4, **extra):
    return (a, b, rest, c, d, sorted(extra.items()))


def keyword_only(*, x, y=2):
    return x * y


def fail(message):
    raise CustomError(message, 2)


def identity(value):
    return value


def pid(_=None):
    return os.getpid()


def sleep_and_return(seconds, value=None):
    time.sleep(seconds)
    return value


def noisy(text):
    print(text)
    return len(text)


def kill_own_process(_=None):
    os.kill(os.getpid(), 9)


def write_marker_then_sleep(path, seconds):
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def total(values):
    return sum(values)


def unpicklable_result():
    import threading

    return threading.Lock()


class UnpicklableError(Exception):
    def __init__(self):
        super().__init__("cannot travel")
        import threading

        self.lock = threading.Lock()


def raise_unpicklable_error():
    raise UnpicklableError()


def fibonacci(client, n):
    if n < 2:
        return n
    a = client.submit(fibonacci, client, n - 1)
    b = client.submit(fibonacci, client, n - 2)
    return a.result() + b.result()


def tree(depth, width):
    from scaler_core import Client

    if depth == 0:
        return 1
    with Client() as client:
        futures = [client.submit(tree, depth - 1, width) for _ in range(width)]
        return sum(f.result() for f in futures)


def allocate_and_sleep(size, seconds):
    block = b"\x01" * size  # written, so every page is resident and RSS really grows
    time.sleep(seconds)
    return len(block)


class CustomWarning(UserWarning):
    pass


def warn_then_return(message, value, category=UserWarning):
    import warnings

    warnings.warn(message, category)
    return value


class TaggingSerializer:
    """A user's serializer: pickle, with a tag the tests can see on the wire."""

    @staticmethod
    def serialize(obj):
        import pickle

        return b"TAG" + pickle.dumps(obj)

    @staticmethod
    def deserialize(payload):
        import pickle

        assert payload.startswith(b"TAG"), payload[:10]
        return pickle.loads(payload[3:])


def payload_type(value):
    return type(value).__name__


PRELOADED = "default"


def set_preloaded(value="default"):
    global PRELOADED
    PRELOADED = value


def preloaded(_=None):
    return PRELOADED


def touch_then_sleep(path, seconds, value=None):
    """Mark that the task started (a file the test waits for), then work for `seconds`."""
    with open(path, "a"):
        pass
    time.sleep(seconds)
    return value


_hoard = []


def memory_after_sum(array):
    """(RSS, own memory, sum) of this worker after reading every page of `array`."""
    import psutil

    from scaler_core.memory import private_memory_bytes

    total = float(array.sum())
    process = psutil.Process()
    return process.memory_info().rss, private_memory_bytes(process), total


def hoard(size):
    """Keep `size` bytes in the worker process after the task (as a leaking library would); returns its pid."""
    _hoard.append(b"\x01" * size)
    return os.getpid()
