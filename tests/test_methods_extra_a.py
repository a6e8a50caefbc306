"""Behaviour of bad_teacher, l1_sparse, fisher, influence, imu and ssd, and of the shared
curvature tools (methods/curvature.py) they stand on, against values computed by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data.dataset import ExampleSet
from unlearnkit.data.scenarios import ClassForget, RandomForget
from unlearnkit.engines.loop import TrainConfig
from unlearnkit.errors import ConfigError
from unlearnkit.methods import curvature as C
from unlearnkit.methods import get_method
from unlearnkit.methods.bad_teacher import unlearning_data
from unlearnkit.methods.fisher import forgotten_classes
from unlearnkit.methods.imu import influence_weights
from unlearnkit.methods.l1_sparse import l1_weight
from unlearnkit.modalities.classifier.adapter import ClassifierAdapter
from unlearnkit.modalities.classifier.task import make_task
from unlearnkit.task import Task

RECIPE = TrainConfig(epochs=10, batch_size=64, lr=1e-3)


@pytest.fixture(scope="module")
def class_task():
    return make_task("digits", "mlp", ClassForget(3), seed=0, device="cpu", recipe=RECIPE)


@pytest.fixture(scope="module")
def random_task():
    return make_task("digits", "mlp", RandomForget(0.1), seed=0, device="cpu", recipe=RECIPE)


def blobs(n=120, d=5, k=3, seed=0) -> ExampleSet:
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    x = g.normal(size=(n, d)).astype(np.float32) + 2.0 * np.eye(k, d, dtype=np.float32)[y]
    return ExampleSet.from_tensors(x, y, [f"b-{i}" for i in range(n)], num_classes=k, name="blobs")


def tiny_mlp(d=5, k=3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 4), nn.Tanh(), nn.Linear(4, k))


def manual_grads(model, adapter, x, y) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(len(y)):
        model.zero_grad()
        adapter.per_example_loss(model, {"x": x[i : i + 1], "y": y[i : i + 1]}).sum().backward()
        out.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    return out


# --------------------------------------------------------------------------- curvature tools
def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    m[1].running_mean.normal_()
    m[1].running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.mark.parametrize(
    "model_fn,shape",
    [
        (tiny_mlp, (5,)),  # linear layers
        (small_convnet, (1, 4, 4)),  # conv + batch norm
        (lambda: nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3)), (5,)),  # vmap only
    ],
)
def test_per_example_grads_and_diagonal_fisher_match_gradients_by_hand(model_fn, shape, monkeypatch):
    base = blobs(30, d=int(np.prod(shape)))
    data, adapter = base.with_labels(base.labels), ClassifierAdapter(3)
    data.inputs = data.inputs.reshape(30, *shape)
    model = model_fn()
    grads = manual_grads(model, adapter, data.inputs, data.labels)
    with torch.no_grad():
        probs = torch.softmax(model(data.inputs), -1)
    by_class = [manual_grads(model, adapter, data.inputs, torch.full_like(data.labels, c)) for c in range(3)]
    for path in ("closed form", "vmap"):
        if path == "vmap":  # the general path, taken by models with other parameterised layers
            monkeypatch.setattr(C, "_layers", lambda *a: None)
        per_example = C.per_example_grads(model, adapter, next(data.batches(30)))
        for n in per_example:
            assert torch.allclose(per_example[n], torch.stack([g[n] for g in grads]), atol=1e-6), (path, n)
        emp = C.diagonal_fisher(model, adapter, data, batch_size=8, kind="empirical")
        true = C.diagonal_fisher(model, adapter, data, batch_size=8, kind="true")
        for n in emp:
            want = torch.stack([g[n] ** 2 for g in grads]).mean(0)
            assert torch.allclose(emp[n], want, atol=1e-6), (path, n)
            want_true = sum(probs[i, c] * by_class[c][i][n] ** 2 for c in range(3) for i in range(30)) / 30
            assert torch.allclose(true[n], want_true, atol=1e-6), (path, n)


def test_batch_fisher_is_the_mean_squared_minibatch_gradient():
    data, adapter, model = blobs(20), ClassifierAdapter(3), tiny_mlp()
    fisher = C.diagonal_fisher(model, adapter, data, batch_size=8, kind="batch")
    want = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in data.batches(8):  # batches of 8, 8 and 4
        model.zero_grad()
        adapter.per_example_loss(model, batch).mean().backward()
        for n, p in model.named_parameters():
            want[n] += p.grad**2 / 3
    assert all(torch.allclose(fisher[n], want[n], atol=1e-7) for n in want)
    with pytest.raises(ConfigError, match="fisher kind"):
        C.diagonal_fisher(model, adapter, data, kind="diagonal")


def test_hessian_vector_product_matches_the_explicit_hessian():
    data, adapter, model = blobs(16), ClassifierAdapter(3), tiny_mlp()
    batch = next(data.batches(16))
    params = C.trainable(model)
    flat0 = C.flatten({n: p.detach() for n, p in params.items()})

    def loss_of(flat):
        ps = C.unflatten(flat, params)
        out = torch.func.functional_call(model, ps, (batch["x"],))
        return adapter.per_example_loss(None, batch, logits=out).mean()

    hessian = torch.autograd.functional.hessian(loss_of, flat0)
    v = torch.randn_like(flat0)
    hv = C.flatten(C.hessian_vector_product(model, adapter, batch, C.unflatten(v, params)))
    assert torch.allclose(hv, hessian @ v, atol=1e-5)


def test_gauss_newton_products_match_the_explicit_matrix():
    data, adapter = blobs(12), ClassifierAdapter(3)
    model = tiny_mlp().double()
    x, y = data.inputs.double(), data.labels
    params = C.trainable(model)
    flat0 = C.flatten({n: p.detach() for n, p in params.items()})
    jac = torch.autograd.functional.jacobian(
        lambda f: torch.func.functional_call(model, C.unflatten(f, params), (x,)), flat0
    )  # (12, 3, P)
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    ggn = sum(jac[i].T @ (torch.diag(p[i]) - torch.outer(p[i], p[i])) @ jac[i] for i in range(12)) / 12
    product = C.GaussNewton(model, adapter, [{"x": x[:7], "y": y[:7]}, {"x": x[7:], "y": y[7:]}])
    for _ in range(2):  # the cached graphs serve every product
        v = torch.randn_like(flat0)
        assert torch.allclose(C.flatten(product(C.unflatten(v, params))), ggn @ v, atol=1e-10)


def test_conjugate_gradient_solves_spd_systems_and_stops_at_negative_curvature():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64)
    spd = a @ a.T + torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    x, iters = C.conjugate_gradient(lambda v: spd @ v, b, max_iter=50, tol=1e-10)
    assert torch.allclose(spd @ x, b, atol=1e-8) and iters <= 9
    # the cap on iterations is respected
    assert C.conjugate_gradient(lambda v: spd @ v, b, max_iter=2)[1] == 2
    # an indefinite matrix: -I gives non-positive curvature at once; b itself is returned
    x, iters = C.conjugate_gradient(lambda v: -v, b, max_iter=5)
    assert torch.equal(x, b) and iters == 1


def test_head_parameters_is_the_output_layer():
    assert list(C.head_parameters(tiny_mlp(), 3)) == ["2.weight", "2.bias"]
    with pytest.raises(ConfigError, match="output layer"):
        C.head_parameters(nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 4)), 3)


# --------------------------------------------------------------------------- ssd
def test_ssd_dampens_exactly_the_selected_weights_by_beta(class_task):
    task = class_task
    adapter = task.adapter
    forget = C.diagonal_fisher(task.original, adapter, task.forget, 64, "batch")
    full = C.diagonal_fisher(task.original, adapter, task.train, 64, "batch")
    result = get_method("ssd", alpha=10.0, lam=1.0).unlearn(task, seed=0)
    after = dict(result.model.named_parameters())
    dampened = 0
    for n, w in task.original.named_parameters():
        selected = forget[n] > 10.0 * full[n]
        beta = torch.where(selected, torch.clamp(full[n] / forget[n], max=1.0), torch.ones_like(w))
        assert torch.allclose(after[n], w * beta, atol=1e-7), n
        dampened += int(selected.sum())
    assert dampened > 0
    assert result.cost.examples_backward == len(task.forget) + len(task.train)
    # a larger selection threshold dampens fewer weights (none here at alpha = 1e9)
    untouched = get_method("ssd", alpha=1e9).unlearn(task, seed=0).model
    assert all(torch.equal(a, b) for a, b in zip(untouched.parameters(), task.original.parameters()))


# --------------------------------------------------------------------------- fisher
def test_forgotten_classes(class_task, random_task):
    assert forgotten_classes(class_task) == [3]
    assert forgotten_classes(random_task) == []


def test_fisher_noise_has_the_official_variance(random_task):
    task = random_task
    fisher = C.diagonal_fisher(task.original, task.adapter, task.retain, 256, "true")
    alpha = 1e-6
    result = get_method("fisher", alpha=alpha).unlearn(task, seed=0)
    ratios = []
    head = C.head_parameters(task.original, task.num_classes)
    for (n, w0), w1 in zip(task.original.named_parameters(), result.model.parameters()):
        inv = (1 / (fisher[n] + 1e-8)).clamp(max=1e3 / (10 if n in head else 1))
        var = alpha * inv
        if var.ndim > 1:
            var = var.mean(1, keepdim=True).expand_as(var)
        if n in head or w0.ndim == 1:
            var = var * 10
        ratios.append(((w1 - w0).detach() ** 2 / var).flatten())
    # (w_u - w_o)^2 / var is chi-square with one degree of freedom: mean 1 over ~50k weights
    assert torch.cat(ratios).mean().item() == pytest.approx(1.0, abs=0.03)
    other = get_method("fisher", alpha=alpha).unlearn(task, seed=1).model
    assert not torch.equal(next(other.parameters()), next(result.model.parameters()))
    assert result.cost.examples_backward == task.num_classes * len(task.retain)


def test_fisher_zeroes_the_output_row_of_a_removed_class(class_task):
    task = class_task
    model = get_method("fisher", alpha=1e-12).unlearn(task, seed=0).model
    head = C.head_parameters(model, task.num_classes)
    orig = C.head_parameters(task.original, task.num_classes)
    weight = next(n for n in head if head[n].ndim == 2)
    # the removed class's row: mean 0, variance 1e-4 * 10, whatever alpha
    row = head[weight][3].detach()
    assert abs(row.mean().item()) < 0.01 and row.std().item() == pytest.approx(1e-3**0.5, rel=0.25)
    # with a negligible alpha everything else is (almost) untouched
    others = torch.ones(task.num_classes, dtype=torch.bool)
    others[3] = False
    assert (head[weight][others] - orig[weight][others]).abs().max() < 1e-3
    assert (next(model.parameters()) - next(task.original.parameters())).abs().max() < 1e-3


# --------------------------------------------------------------------------- influence
def _fit(model, data, reg, steps=200):
    """Minimise sum CE + (reg / 2) ||theta||^2 to high precision (L-BFGS, float64)."""
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1,
        max_iter=steps,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.inputs.double()), data.labels, reduction="sum")
        loss = loss + 0.5 * reg * sum((p**2).sum() for p in model.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return model


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_influence_newton_step_nearly_matches_retraining_a_convex_model(curvature):
    data = blobs(150)
    forget_ids = list(data.example_ids[:10])
    retain = data.without(forget_ids)
    lam = 0.1  # the damping plays the role of the L2 term of the retain objective
    torch.manual_seed(0)
    original = _fit(nn.Linear(5, 3).double(), data, reg=lam * len(retain))
    retrained = _fit(copy.deepcopy(original), retain, reg=lam * len(retain))

    class Float64(nn.Module):  # the package feeds float32 inputs
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x.double())

    task = Task.from_model(Float64(original), data, forget_ids, blobs(30, seed=1), device="cpu")
    result = get_method("influence", damping=lam, hessian_samples=0, cg_iters=100, curvature=curvature).unlearn(
        task, seed=0
    )
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])
    before = (flat(original) - flat(retrained)).norm()
    after = (flat(result.model) - flat(retrained)).norm()
    assert after < 0.05 * before, (after.item(), before.item())


def test_influence_scale_multiplies_the_step(random_task):
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])
    o = flat(random_task.original)
    one = flat(get_method("influence").unlearn(random_task, seed=0).model) - o
    two = flat(get_method("influence", scale=2.0).unlearn(random_task, seed=0).model) - o
    assert one.norm() > 0 and torch.allclose(two, 2 * one, atol=1e-5)


# --------------------------------------------------------------------------- bad teacher
def test_bad_teacher_mixes_the_forget_set_with_a_seeded_retain_subset(class_task):
    data, n_forget = unlearning_data(class_task, seed=0, retain_fraction=0.3)
    assert n_forget == len(class_task.forget)
    assert len(data) == n_forget + round(0.3 * len(class_task.retain))
    assert list(data.example_ids[:n_forget]) == list(class_task.forget.example_ids)
    assert set(data.example_ids[n_forget:]) <= set(class_task.retain.example_ids)
    again, _ = unlearning_data(class_task, seed=0, retain_fraction=0.3)
    other, _ = unlearning_data(class_task, seed=1, retain_fraction=0.3)
    assert list(again.example_ids) == list(data.example_ids) != list(other.example_ids)


def test_bad_teacher_moves_forget_outputs_to_the_incompetent_teacher(class_task):
    task = class_task
    result = get_method("bad_teacher").unlearn(task, seed=0)
    from unlearnkit.utils import derive_seed

    bad = task.model_factory(derive_seed(0, "bad_teacher", "incompetent") % (2**31)).eval()

    def kl(teacher, student, data):
        with torch.no_grad():
            t, s = torch.log_softmax(teacher(data.inputs), -1), torch.log_softmax(student(data.inputs), -1)
        return (t.exp() * (t - s)).sum(1).mean().item()

    assert kl(bad, result.model, task.forget) < 0.5 * kl(bad, task.original, task.forget)
    assert kl(task.original, result.model, task.retain) < 0.1
    # the student's pass is the backward-counted one; each of the two teachers adds a forward
    assert result.cost.examples_forward == 3 * result.cost.examples_backward


# --------------------------------------------------------------------------- l1 sparse
def test_l1_weight_decays_linearly_to_zero():
    assert [l1_weight(2.0, t) for t in (0.0, 0.25, 1.0, 1.5)] == [2.0, 1.5, 0.0, 0.0]


def test_l1_sparse_shrinks_the_weights_compared_with_plain_finetuning(class_task):
    l1 = lambda m: sum(p.detach().abs().sum().item() for p in m.parameters())
    plain = get_method("l1_sparse", gamma=0.0, max_steps=20).unlearn(class_task, seed=0).model
    sparse = get_method("l1_sparse", gamma=1e-3, max_steps=20).unlearn(class_task, seed=0).model
    assert l1(sparse) < 0.97 * l1(plain)


# --------------------------------------------------------------------------- imu
def test_imu_weights_follow_the_classifier_level_influence(random_task):
    task = random_task
    model, adapter = task.original, task.adapter
    head = C.head_parameters(model, task.num_classes)
    G = []
    for g in manual_grads(model, adapter, task.forget.inputs, task.forget.labels):
        G.append(torch.cat([g[n].flatten() for n in head]))
    G = torch.stack(G)
    infl = -(G / ((G**2).mean(0) + 0.01)) @ G.mean(0)
    positions, weights = influence_weights(model, task, damping=0.01, top_fraction=1.0, clip_quantile=0.93)
    assert positions.tolist() == torch.nonzero(infl < 0).flatten().tolist()
    raw = infl[positions].abs().sqrt()
    cap = torch.quantile(raw, 0.93)
    assert torch.allclose(weights, raw.clamp(max=cap), rtol=1e-4)
    half, _ = influence_weights(model, task, 0.01, top_fraction=0.5, clip_quantile=1.0)
    most = torch.argsort(infl[positions].abs(), descending=True)[: len(positions) // 2]
    assert sorted(half.tolist()) == sorted(positions[most].tolist())


def test_imu_changes_only_the_output_layer_and_raises_the_forget_loss(class_task):
    task = class_task
    result = get_method("imu").unlearn(task, seed=0)
    head = C.head_parameters(task.original, task.num_classes)
    for (n, w0), w1 in zip(task.original.named_parameters(), result.model.parameters()):
        assert torch.equal(w0, w1) != (n in head), n
        assert w1.requires_grad
    loss = lambda m: task.adapter.per_example_loss(m, {"x": task.forget.inputs, "y": task.forget.labels}).mean()
    with torch.no_grad():
        assert loss(result.model) > loss(task.original) + 1.0
