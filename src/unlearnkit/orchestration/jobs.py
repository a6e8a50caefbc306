"""Where a bench grid's and a sweep's jobs run: in this process, or as Ray tasks.

One job is one call ``fn(*args)`` of a module-level function that returns plain data
(record dicts); the parent process collects the results as jobs finish and is the only
one that writes the store. :func:`executor` gives the runner:

* ``workers == 1`` and no ``address``: :class:`InProcess`, the jobs run here one after
  another (no Ray imported, so the core install stays light);
* otherwise :class:`OnRay`: a local Ray instance with ``num_cpus=workers`` started for
  the duration (``address="local"``, so it never joins another instance by accident, e.g.
  one of a second test process), or the cluster at ``address`` (``auto``, ``host:port``,
  ``ray://host:port``); an instance this process had started already is used as it is.

Ray is imported only by :class:`OnRay`; without it, a clear one-line error says which
extra to install. Everything here is checked before any job starts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections import deque
from typing import Any, Callable, Iterator

from ..errors import ConfigError, UnlearnkitError

#: ``host:port`` or ``ray://host:port`` (host: a name, an IPv4 address, or ``[IPv6]``)
_ADDRESS = re.compile(r"^(?:ray://)?(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


def check_address(address: str | None) -> str | None:
    """``address`` if it is a Ray address this module accepts (``None``: a local instance)."""
    if address is None:
        return None
    text = str(address).strip()
    if text == "auto":
        return text
    m = _ADDRESS.match(text)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise ConfigError(
            f"--address {address!r} is not a Ray address: give auto, HOST:PORT or ray://HOST:PORT "
            "(e.g. ray://10.0.0.5:10001)"
        )
    return text


def check_workers(workers: Any, option: str = "--workers") -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{option} must be an integer >= 1, not {workers!r}")
    return workers


def uses_ray(workers: int, address: str | None) -> bool:
    """Whether jobs run on Ray: more than one worker, or a cluster named."""
    return workers > 1 or address is not None


def require_ray(why: str):
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{why} runs on Ray, which is not installed: pip install 'unlearnkit[sweep]'") from None
    return ray


class InProcess:
    """Jobs run in this process, one after another, in the order they were submitted."""

    def __init__(self) -> None:
        self._queue: deque = deque()

    def submit(self, fn: Callable, *args: Any) -> object:
        handle = object()
        self._queue.append((handle, fn, args))
        return handle

    def pending(self) -> int:
        return len(self._queue)

    def next_done(self) -> tuple[object, Any]:
        """Run the oldest job; ``(its handle, its result)``."""
        handle, fn, args = self._queue.popleft()
        return handle, fn(*args)


class OnRay:
    """Jobs run as Ray tasks (one CPU each); results come back as they finish."""

    def __init__(self, ray) -> None:
        self.ray = ray
        self._refs: dict = {}
        self._remote: dict = {}

    def submit(self, fn: Callable, *args: Any) -> object:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(num_cpus=1, max_retries=0)(fn)
        ref = remote.remote(*args)
        self._refs[ref] = True
        return ref

    def pending(self) -> int:
        return len(self._refs)

    def next_done(self) -> tuple[object, Any]:
        """Wait for any job to finish; ``(its handle, its result)``. A job's error is raised
        as the job raised it (an unlearnkit error stays one line), not as Ray's wrapper."""
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        ref = ready[0]
        del self._refs[ref]
        try:
            return ref, self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except self.ray.exceptions.RayError as e:  # a worker died, the cluster went away
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnlearnkitError(f"a job failed on Ray: {first}") from None


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None, temp_dir: str | None = None) -> Iterator:
    """Ray, initialised for the block: the instance already running in this process, else a
    new local one with ``workers`` CPUs (``temp_dir``: its session folder, default Ray's),
    else the cluster at ``address``; shut down afterwards if this call started it."""
    ray = require_ray(f"{workers} workers" if address is None else f"--address {address}")
    if ray.is_initialized():
        yield ray
        return
    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kw.update(address="local", num_cpus=workers, include_dashboard=False)
        if temp_dir is not None:
            kw["_temp_dir"] = str(temp_dir)
    else:
        kw["address"] = address
    try:
        with warnings.catch_warnings():
            # Ray's notes (accelerator env vars, a client time-out) would add lines to the
            # one error line a failed start gives
            warnings.simplefilter("ignore")
            ray.init(**kw)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnlearnkitError(f"cannot start or reach {where}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def executor(workers: int, address: str | None = None, temp_dir: str | None = None) -> Iterator:
    """:class:`InProcess` for one worker and no cluster, else :class:`OnRay` in a
    :func:`ray_session`."""
    if not uses_ray(workers, address):
        yield InProcess()
        return
    with ray_session(workers, address, temp_dir) as ray:
        yield OnRay(ray)
