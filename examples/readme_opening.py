"""The reference README's opening example. Usage: python readme_opening.py tcp://127.0.0.1:2345"""

import math
import sys

from scaler_core import Client

with Client(address=sys.argv[1]) as client:
    # Compute a single task using `.submit()`
    future = client.submit(math.sqrt, 16)
    print(future.result())  # 4

    # Submit multiple tasks with `.map()` - works like Python's built-in map()
    results = client.map(math.sqrt, range(100))
    print(sum(results))  # 661.46

    # For functions with multiple arguments, use multiple iterables or `.starmap()`
    def add(x, y):
        return x + y

    print(client.map(add, [1, 2, 3], [10, 20, 30]))  # [11, 22, 33]
    print(client.starmap(add, [(1, 10), (2, 20), (3, 30)]))  # [11, 22, 33]
