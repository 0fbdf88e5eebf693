"""The reference README's "Nested computations". Usage: python readme_nested.py ADDRESS"""

import sys

from scaler_core import Client


def fibonacci(client: Client, n: int):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        a = client.submit(fibonacci, client, n - 1)
        b = client.submit(fibonacci, client, n - 2)
        return a.result() + b.result()


with Client(address=sys.argv[1]) as client:
    future = client.submit(fibonacci, client, 8)
    print(future.result())  # 21
