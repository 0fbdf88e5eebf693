"""Fusing linear chains of a graph into single tasks.

A chain link u -> v qualifies when v depends on u alone and u has no other dependent and is not
requested: nobody can observe u's result except v, so running both in one task changes nothing but
the cost. A 1M-step chain is otherwise 1M scheduler round trips (~0.5 ms each, latency-bound); fused
it is 100 tasks of 10,000 steps. Failure, cancel and the tail's result are those of the unfused chain.

On the worker, `run_chain` evaluates the steps in a loop (never recursion): the head with its own
arguments, then each step with its argument blob unpickled against the previous step's value.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from scaler_core.serialization import loads_with_references

MAX_CHAIN_STEPS = 10_000
PREVIOUS = b"previous-step"  # the placeholder id a step's blob uses for the previous step's value


def find_chains(indptr: Sequence[int], indices: Sequence[int], order: Sequence[int], dependent_counts: Sequence[int],
                requested: Callable[[int], bool], step_blob: Callable[[int], Optional[bytes]]
                ) -> Tuple[Dict[int, List[int]], Dict[int, bytes]]:
    """({tail node: [head, ..., tail]} for every maximal chain of two or more nodes, {step: its blob}).

    `order` is a dependency order; `step_blob(v)` pickles v's arguments for use as a chain step, or
    returns None when v cannot be one (say, it also refers to a stored object). Runs in linear time."""
    open_chain: Dict[int, List[int]] = {}  # tail -> its chain, while it may still grow
    blobs: Dict[int, bytes] = {}
    for node in order:
        if indptr[node + 1] - indptr[node] == 1:
            previous = indices[indptr[node]]
            chain = open_chain.get(previous)
            if (chain is not None and dependent_counts[previous] == 1 and not requested(previous)
                    and len(chain) < MAX_CHAIN_STEPS):
                blob = step_blob(node)
                if blob is not None:
                    del open_chain[previous]
                    chain.append(node)
                    open_chain[node] = chain
                    blobs[node] = blob
                    continue
        open_chain[node] = [node]
    return {tail: chain for tail, chain in open_chain.items() if len(chain) > 1}, blobs


def run_chain(functions: list, head_args: tuple, head_kwargs: dict, step_blobs: List[bytes]):
    """Evaluate a fused chain: functions[0] on the head's arguments, then each step in turn."""
    value = functions[0](*head_args, **head_kwargs)
    for function, blob in zip(functions[1:], step_blobs):
        args, kwargs = loads_with_references([blob], lambda _object_id: value)
        value = function(*args, **kwargs)
    return value
