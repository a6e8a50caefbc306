"""Federated defaults for the layers above: the deletion-request service's policy for a
federated model line (see :mod:`unlearnkit.service.policy` for every field, and
:mod:`.service` for how a line's requests are answered).

``exact`` (exact federated retraining from the stored round before any deleted example first
contributed; it equals federated retraining bit for bit) answers by default, and a failed gate
escalates to ``retrain`` (federated retraining itself, the gate's reference). The checks bound
the global model's accuracy gaps to the reference (``fed_gap_acc_*``) and the loss-threshold
membership attack on the forgotten data; the canary (never-trained test examples of the
server) bounds how far the candidate's predictions are from the reference's (excess) and how
far the deletion itself moves them (reference: retrained with and without the data; above it
the batch is held for a person). A whole client leaving is one request naming its subjects,
so ``limits.max_fraction_per_request`` allows half of the training data (a client of a
3-client federation holds about a third).

Calibration (``python benchmarks/service_federated.py``: digits, 5 clients by subject, FedAvg,
10 rounds, client-04 joining at round 6, 200 canary examples; one run, so these are single
values): over the default line's five batches (people, a whole client of 217 examples leaving,
5 examples, a batch of four people) the deletion's own reference flip rate was 0.020-0.030 and
exact's excess flip rate and accuracy gaps 0 (it is federated retraining); ``gradient_ascent``
inside the client gave excess flip rates 0.040-0.055 and test gaps 0.011-0.033 (two of three
people escalated); FedEraser (``delta_t`` 2) 0.175-0.185 and test gaps 0.13-0.14 (both
escalated). On an undertrained federation (3 clients, 2 rounds, test accuracy 0.79, the
tests') a client leaving moved 0.105 of the canary's predictions: above 0.1 it is held for a
person. Few requests: the bounds leave room, and the exact path answers what fails.
"""

METHOD_DEFAULTS: dict[str, dict] = {}

SERVICE_POLICY: dict = {
    "method": {"name": "exact", "params": {}},
    "gate": {
        "checks": [
            {"metric": "fed_gap_acc_test", "max": 0.03},
            {"metric": "fed_gap_acc_retain", "max": 0.03},
            {"metric": "fed_gap_acc_forget", "max": 0.15},
        ],
        "canary": {"size": 200, "max_reference_flip_rate": 0.1, "max_excess_flip_rate": 0.05},
    },
    "limits": {"max_fraction_per_request": 0.5},
}

#: the policy of a line of an LM federation (``spec["local_task"] == "lm"``: the profiles
#: people dealt to clients, LoRA adapters on a frozen base; :mod:`.lm`), chosen by
#: :func:`.service.service_policy_for`. Its metrics are the causal-LM modality's (see
#: :func:`.metrics.evaluate_lm_federated`), so the checks are TOFU forget quality (the KS
#: p-value of the forgotten rows' truth ratios against the reference's) and the gaps to
#: federated retraining of model utility, ROUGE-L on the forgotten rows and the LOSS
#: membership AUC of those rows against never-trained holdout people; the canary is
#: never-trained holdout people's rows (the causal-LM line's canary), measured by the mean
#: absolute change of per-row loss (nats; a language model has no one predicted class).
#: ``exact`` answers, ``retrain`` is the escalation, as for classifier federations.
#: Calibration (one run each, so single values; the tests' federation: 12 people, 3 clients
#: of 4 people, FedAvg, 2 rounds, the CLI's defaults, an undertrained model: model utility
#: 0.07, forget ROUGE-L 0.06-0.10; canary: all 16 holdout rows): one person of each client deleted from
#: version 0 and a second person with history. ``exact`` (= federated retraining, every
#: client from round 1): forget quality 1.0, every gap 0, excess loss shift 0; the deletion's
#: own reference loss shift 0.033-0.065 (0.053 for the second person). Inside the client,
#: from version 0: ``npo`` forget quality 0.72-0.95, utility gap 0.0006-0.008, ROUGE gap
#: 0-0.009, MIA gap 0.016-0.051, excess loss shift 0.18-0.24; ``gradient_ascent`` 0.43-0.72,
#: 0.005-0.010, 0, 0.020-0.137, 0.15-0.21; ``federaser`` 0.95, 0.015-0.023, 0.001-0.066,
#: 0.020-0.102, 0.34-0.40. Every approximate answer fails the 0.1 excess loss-shift bound
#: (federaser two of three on the utility and ROUGE gaps too) and escalates to ``retrain``;
#: exact passes with room. Few requests on an undertrained federation: the gap bounds leave
#: room, the canary's excess bound is what separates exact from approximate answers here,
#: and 0.5 nats for the deletion's own effect is ~8x what one person moved.
LM_SERVICE_POLICY: dict = {
    "method": {"name": "exact", "params": {}},
    "gate": {
        "checks": [
            {"metric": "forget_quality", "min": 0.05},
            {"metric": "fed_gap_model_utility", "max": 0.02},
            {"metric": "fed_gap_rouge_forget", "max": 0.05},
            {"metric": "fed_gap_mia_loss_auc", "max": 0.15},
        ],
        "canary": {"size": 40, "max_reference_loss_shift": 0.5, "max_excess_loss_shift": 0.1},
    },
    "limits": {"max_fraction_per_request": 0.5},
}
