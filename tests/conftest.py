"""Shared test settings."""

import os

import pytest
import torch

# the processes tests start (the CLI, servers, workers) run on one thread as the tests do: with
# torch's default of one thread per core, two test workers each waiting on a two-thread CLI
# process oversubscribe a 2-core machine, and OpenMP's spinning threads then slow every one
# of them several-fold. A user's own setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny test models run faster, and reproducibly so, on one thread (on 2 cores torch's
    default of 2 threads oversubscribes as soon as anything else runs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


from unlearnkit.testing import TINY_LM  # noqa: E402,F401  (tests import it from here)


def tiny_lm_task(seed: int = 0, **kw):
    """:func:`unlearnkit.testing.tiny_lm_task`, skipping the test without transformers."""
    pytest.importorskip("transformers")
    from unlearnkit.testing import tiny_lm_task as build

    return build(seed, **kw)


@pytest.fixture(scope="session")
def lm_task():
    """The shared tiny causal-LM task (forget10 = 1 person), the contract suite's own
    (:func:`unlearnkit.testing.tiny_task`); do not modify it."""
    pytest.importorskip("transformers")
    from unlearnkit.testing import tiny_task

    return tiny_task("causal_lm")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A workspace with one trained digits model: ``(home, train run id)``. Never write to
    it: use ``home``, a private copy."""
    from service_support import train_home

    return train_home(tmp_path_factory.mktemp("trained") / "home")


@pytest.fixture
def home(trained, tmp_path):
    """A private copy of the ``trained`` workspace: ``(home, train run id)``."""
    import shutil

    src, run = trained
    dst = tmp_path / "home"
    shutil.copytree(src, dst)
    return dst, run
