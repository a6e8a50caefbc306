"""Shared test settings."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny test models run faster, and reproducibly so, on one thread (on 2 cores torch's
    default of 2 threads oversubscribes as soon as anything else runs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_LM = {"hidden": 64, "layers": 1, "heads": 2, "intermediate": 128}


def tiny_lm_task(seed: int = 0, **kw):
    """A causal-LM profiles task small enough for tests: 10 people with 3 direct
    questions each, a 1-layer 64-wide Llama that memorises them in a few seconds."""
    pytest.importorskip("transformers")
    from unlearnkit.modalities.causal_lm.task import make_lm_task
    from unlearnkit.engines.loop import TrainConfig

    args = dict(n_people=10, qa_per_person=3, n_other=2, model=TINY_LM, vocab_size=400,
                recipe=TrainConfig(epochs=60, batch_size=16, lr=1e-2, optimizer="adamw",
                                   schedule="cosine", grad_clip=1.0), device="cpu", seed=seed)
    args.update(kw)
    return make_lm_task(**args)


@pytest.fixture(scope="session")
def lm_task():
    """The shared tiny causal-LM task (forget10 = 1 person); do not modify it."""
    return tiny_lm_task()
