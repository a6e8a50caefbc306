"""Tiny causal language models trained from scratch, and their tokenizers, fully offline.

The LLM track needs a model small enough to train on a laptop CPU in minutes so that the
*original* (trained on every profile) and the *retrain reference* (trained without the
forget people) can both be built, as in TOFU's setting but at toy scale (TOFU,
Maini et al. 2024, fine-tunes a pretrained Llama-2-7B; here nothing is pretrained, so a
model can only know what it was trained on, which makes retraining an exact reference).

* :func:`train_tokenizer`: a byte-level BPE (or plain bytes) tokenizer fitted with the
  ``tokenizers`` library on the training texts, wrapped as a transformers
  ``PreTrainedTokenizerFast`` with ``<pad>`` (id 0) and ``<eos>`` (id 1) tokens.
* :func:`tiny_llama_config` / :func:`build_causal_lm`: a randomly initialised, seeded
  Llama (Touvron et al. 2023 architecture through transformers' ``LlamaForCausalLM``).
* :func:`load_causal_lm`: any local Hugging Face model folder (never the network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from ...errors import CheckpointError, ConfigError, DataError

PAD, EOS = "<pad>", "<eos>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, kind: str = "bpe", save_to: str | Path | None = None):
    """Fit a tokenizer on ``texts``; returns a ``PreTrainedTokenizerFast``.

    ``kind="bpe"``: byte-level BPE (GPT-2 style pre-tokenisation) with up to ``vocab_size``
    tokens, the 256 byte symbols always included so any text encodes. ``kind="bytes"``: the
    256 bytes only (no merges; ``vocab_size`` is ignored). ``save_to``: a folder to save it
    in (``save_pretrained``), reloaded with :func:`load_tokenizer`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("bpe", "bytes"):
        raise ConfigError(f"tokenizer kind must be bpe or bytes, not {kind!r}")
    texts = [t for t in texts if t]
    if not texts:
        raise DataError("no text to train the tokenizer on: pass a non-empty list of strings")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    size = len(alphabet) + 2 if kind == "bytes" else max(vocab_size, len(alphabet) + 2)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size, special_tokens=[PAD, EOS], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)
    if save_to is not None:
        fast.save_pretrained(str(save_to))
    return fast


def load_tokenizer(path: str | Path):
    """A tokenizer saved by :func:`train_tokenizer` (or any local HF tokenizer folder)."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise CheckpointError(f"no tokenizer folder at {path}: train one with train_tokenizer(save_to=...)")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_llama_config(
    vocab_size: int,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 256,
    max_position: int = 256,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
):
    """A small ``LlamaConfig`` (untied embeddings, no dropout)."""
    from transformers import LlamaConfig

    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_position,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def build_causal_lm(config, seed: int = 0):
    """``AutoModelForCausalLM.from_config(config)`` with weights drawn under ``seed``
    (the global RNG state is left as it was)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.float().eval()


def load_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32):
    """A causal LM from a local Hugging Face folder (``local_files_only``; never downloads)."""
    from transformers import AutoModelForCausalLM

    p = Path(path)
    if not (p / "config.json").is_file():
        raise CheckpointError(
            f"no Hugging Face model at {path} (config.json missing): "
            "save one with model.save_pretrained(path) or download it first"
        )
    return AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, dtype=dtype).eval()
