"""The reference README's "Submitting Python tasks". Usage: python readme_submit.py ADDRESS"""

import sys

from scaler_core import Client


def square(value: int):
    return value * value


with Client(address=sys.argv[1]) as client:
    future = client.submit(square, 4)  # submits a single task
    print(future.result())  # 16
