"""Warm invocations: microseconds per call of a Lambda handler in-process, after its cold start, with the
app's logging on and written to /dev/null."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Send everything written to stdout to /dev/null, at the file-descriptor level.

    Swapping `sys.stdout` alone is not enough: logging handlers (Powertools among them) keep the stream
    object they were created with, and would still write to the terminal.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with open(os.devnull, "w") as sink:
            original, sys.stdout = sys.stdout, sink
            try:
                yield
            finally:
                sys.stdout = original
                original.flush()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def microseconds_per_invocation(
    handlers: Mapping[str, LambdaHandler],
    event: dict[str, Any],
    context: Any,
    *,
    calls: int = 1000,
    batches: int = 7,
    warmup_calls: int = 200,
) -> dict[str, float]:
    """For each handler, the median over `batches` of the mean time per call in a batch of `calls` (µs).

    Batches of the handlers alternate, so that machine noise falls on all of them alike."""
    per_call: dict[str, list[float]] = {name: [] for name in handlers}
    with stdout_to_devnull():
        for name, handler in handlers.items():
            for _ in range(warmup_calls):
                response = handler(event, context)
            if response["statusCode"] != 200:
                raise RuntimeError(f"{name}: GET /health answered {response['statusCode']}")
        for _ in range(batches):
            for name, handler in handlers.items():
                started = time.perf_counter()
                for _ in range(calls):
                    handler(event, context)
                per_call[name].append((time.perf_counter() - started) / calls)
    return {name: statistics.median(samples) * 1_000_000 for name, samples in per_call.items()}


def added_microseconds(
    handler: LambdaHandler,
    switch: Callable[[bool], None],
    event: dict[str, Any],
    context: Any,
    *,
    rounds: int = 200,
    calls: int = 50,
) -> tuple[float, float, float]:
    """What a feature adds per call of `handler` (µs): `switch(True)` turns it on, `switch(False)` off, in the
    same app, so that the two sides differ in that feature alone (two app instances differ by a few µs in
    their memory layout as well). The median over many short rounds of on and off alternating, each timed
    in this process's CPU time, so that other processes sharing the machine (and a busy moment) fall on
    both sides of each difference alike. Returns (added, on, off); the feature is left on."""
    added, timed_on, timed_off = [], [], []
    with stdout_to_devnull():
        for on in (True, False):
            switch(on)
            for _ in range(200):
                handler(event, context)
        for round_number in range(rounds):
            spent = {}
            for on in (True, False) if round_number % 2 == 0 else (False, True):
                switch(on)
                started = time.process_time()
                for _ in range(calls):
                    handler(event, context)
                spent[on] = (time.process_time() - started) / calls * 1_000_000
            added.append(spent[True] - spent[False])
            timed_on.append(spent[True])
            timed_off.append(spent[False])
    switch(True)
    return statistics.median(added), statistics.median(timed_on), statistics.median(timed_off)
