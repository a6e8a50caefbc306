"""The causal-language-model modality: question-answer pairs (TOFU-style) or verbatim text
(MUSE-style) on Hugging Face causal LMs. Parts: ``adapter`` (:class:`CausalLMAdapter`,
``encode_qa``, ``with_lora``), ``tiny_lm`` (tiny Llama and offline tokenizers), ``task``
(:func:`make_lm_task`, :class:`LMTask`), ``scores``, ``metrics``, ``formulas`` (the anchors'
formulas on arrays) and ``defaults`` (method hyperparameters for language models)."""
