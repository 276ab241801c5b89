"""The training loop: it learns, clips, stops on NaN without losing work, survives Ctrl-C, resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import (
    CheckpointError,
    NonFiniteLossError,
    accuracy,
    evaluate,
    fit,
    load_checkpoint,
    warmup_cosine,
)
from karpa_lab.train import _to_floats, default_loss, grad_norms


def regression_data(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
    return x, y


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def loader(seed: int = 0) -> DataLoader:
    x, y = regression_data()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))


def test_loss_falls_on_toy_regression():
    model = make_model()
    x, y = regression_data()
    history = fit(model, loader(), steps=300, lr=1e-2, val_data=DataLoader(TensorDataset(x, y), batch_size=128))
    assert len(history) == 300 and len(history.val) == 10
    assert history.val_loss[-1] < 0.05 * history.val_loss[0]
    assert history.val_loss[-1] < 0.05
    assert all(math.isfinite(v) for v in history.grad_norm) and history.steps_per_sec > 0


def test_epochs_and_metrics():
    x = torch.randn(200, 2)
    y = (x[:, 0] > 0).long()
    data = DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    history = fit(model, data, epochs=5, lr=0.05, val_data=data, metrics={"accuracy": accuracy})
    assert len(history) == 50
    assert history.metric("accuracy")[-1] > 0.9
    assert evaluate(model, data, metrics={"accuracy": accuracy})["accuracy"] > 0.9


def test_clipping_bounds_the_update():
    """With plain SGD at lr=1 the update is the clipped gradient: its norm must not exceed clip_grad."""
    model = make_model()
    x, y = regression_data()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    history = fit(model, lambda: (x * 100, y * 100), steps=1, optimizer=opt, clip_grad=0.5)
    update = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert history.grad_norm[0] > 10  # the raw gradient was large...
    assert update.item() <= 0.5 + 1e-5  # ...and the applied step was clipped


def test_nan_raises_clear_error_and_keeps_last_good_weights():
    x, y = regression_data()
    calls = {"n": 0}

    def data():
        calls["n"] += 1
        return (x[:32] * float("nan"), y[:32]) if calls["n"] == 6 else (x[:32], y[:32])

    reference = make_model()
    fit(reference, lambda: (x[:32], y[:32]), steps=5, lr=1e-2)
    model = make_model()
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, data, steps=20, lr=1e-2)
    message = str(err.value)
    assert "step 5" in message and "last finite loss" in message and "learning rate" in message
    assert len(err.value.history) == 5
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_nan_with_deferred_sync_restores_snapshot():
    x, y = regression_data()
    calls = {"n": 0}

    def data():
        calls["n"] += 1
        return (x[:32] + (float("inf") if calls["n"] >= 7 else 0.0), y[:32])

    model = make_model()
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, data, steps=20, lr=1e-2, sync_every=4)
    assert "step 6" in str(err.value) and "start of step 3" in str(err.value)
    assert len(err.value.history) == 6  # every finite step is kept in the history
    reference = make_model()
    fit(reference, lambda: (x[:32], y[:32]), steps=3, lr=1e-2)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)  # weights of the last check, before any unchecked update


def test_keyboard_interrupt_returns_history_so_far(tmp_path):
    x, y = regression_data()
    calls = {"n": 0}

    def data():
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return x[:32], y[:32]

    model = make_model()
    ckpt = tmp_path / "run.ckpt"
    history = fit(model, data, steps=50, lr=1e-2, checkpoint=ckpt)
    assert history.interrupted and len(history) == 7
    state = load_checkpoint(ckpt, make_model(1))
    assert state["step"] == 7  # nothing learned is lost: the interrupt wrote a checkpoint


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, dropout):
    torch.manual_seed(123)
    straight = make_model(dropout=dropout)
    fit(straight, loader(), steps=25, lr=1e-2, schedule=warmup_cosine(5, 25))

    torch.manual_seed(123)
    first = make_model(dropout=dropout)
    ckpt = tmp_path / "half.ckpt"
    fit(first, loader(), steps=25, lr=1e-2, schedule=warmup_cosine(5, 25), checkpoint=ckpt, save_every=11)
    # the last checkpoint is the final one (step 25); write one at 11 explicitly by a shorter run:
    torch.manual_seed(123)
    part = make_model(dropout=dropout)
    fit(part, loader(), steps=11, lr=1e-2, schedule=warmup_cosine(5, 25), checkpoint=ckpt)

    resumed = make_model(seed=99, dropout=dropout)  # different init: everything must come from the checkpoint
    history = fit(resumed, loader(), steps=25, lr=1e-2, schedule=warmup_cosine(5, 25), resume_from=ckpt)
    assert len(history) == 25
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_resume_with_callable_data(tmp_path):
    x, y = regression_data()
    batch = lambda: (x[torch.randint(0, 256, (16,))], y[torch.randint(0, 256, (16,))])
    torch.manual_seed(5)
    straight = make_model()
    fit(straight, batch, steps=20, lr=1e-2)
    torch.manual_seed(5)
    part = make_model()
    fit(part, batch, steps=8, lr=1e-2, checkpoint=tmp_path / "c.ckpt")
    resumed = make_model(seed=3)
    fit(resumed, batch, steps=20, lr=1e-2, resume_from=tmp_path / "c.ckpt")
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tmp_path):
    ckpt = tmp_path / "good.ckpt"
    fit(make_model(), loader(), steps=3, checkpoint=ckpt)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:200])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            fit(make_model(), loader(), steps=5, resume_from=bad)
    other = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a karpa_lab checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="different model") as err:
        fit(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)), loader(), steps=5, resume_from=ckpt)
    assert "0.weight" in str(err.value)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    fit(make_model(), loader(), steps=2, checkpoint=ckpt)
    good = ckpt.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        fit(make_model(), loader(), steps=2, checkpoint=ckpt)
    assert ckpt.read_bytes() == good  # the old checkpoint survived the failed write
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no temporary file left behind


def test_update_fn_records_all_values():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = regression_data()

    def update(m, batch):
        xb, yb = batch
        loss = nn.functional.mse_loss(m(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss, "half": loss.detach() / 2}

    history = fit(model, lambda: (x, y), steps=30, update_fn=update)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.extra["half"][0] == pytest.approx(history.train_loss[0] / 2)


def test_text_lines_show_the_rate_of_the_optimizer_an_update_fn_steps(capsys):
    """With an update_fn fit sees its optimizer step: the log line gives that optimizer's rate, and
    leaves the rate out (rather than 'lr nan') when the update stepped no optimizer."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = regression_data()

    def update(m, batch):
        loss = nn.functional.mse_loss(m(batch[0]), batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss}

    def look_only(m, batch):
        return {"loss": nn.functional.mse_loss(m(batch[0]), batch[1])}

    fit(model, lambda: (x, y), steps=10, update_fn=update, progress=False, log_every=5)
    with_update_fn = capsys.readouterr().out
    fit(model, lambda: (x, y), steps=10, update_fn=look_only, progress=False, log_every=5)
    no_optimizer = capsys.readouterr().out
    assert "step     10/10 | loss" in with_update_fn and "lr 1.00e-02" in with_update_fn
    assert "step     10/10 | loss" in no_optimizer and "lr" not in no_optimizer


def test_bad_arguments_are_explained():
    model = make_model()
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        fit(model, loader())
    with pytest.raises(TypeError, match="DataLoader"):
        fit(model, 42, steps=1)
    with pytest.raises(ValueError, match="same shape"):
        default_loss(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(inputs, targets\)"):
        fit(model, lambda: torch.zeros(4, 3), steps=1)
    with pytest.raises(ValueError, match="epochs= needs data with a length"):
        fit(model, lambda: regression_data(), epochs=1)


def test_history_plot_and_schedule():
    history = fit(make_model(), loader(), steps=20, schedule=warmup_cosine(5, 20, min_ratio=0.1))
    fig = history.plot(log=True)
    assert len(fig.axes) == 3
    assert history.lr[0] == pytest.approx(1e-3 / 5) and history.lr[4] == pytest.approx(1e-3)
    assert history.lr[-1] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 14 / 15))))


def test_grad_norms_give_pytorchs_total_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Linear(3, 2))
    model[3].weight.requires_grad_(False)  # a frozen layer: no gradient, left out
    model(torch.randn(4, 5)).pow(2).sum().backward()
    params = list(model.parameters())
    expected = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    norms = grad_norms(params)
    assert len(norms) == 5  # the frozen weight has no gradient
    assert math.hypot(*map(float, norms)) == pytest.approx(float(expected), rel=1e-6)
    assert grad_norms([torch.zeros(3, requires_grad=True)]) == []  # no gradient yet


def test_history_records_the_global_gradient_norm_of_each_step():
    """Each step's recorded norm is clip_grad_norm_'s total norm of that step's gradients (several steps
    read together, so each record's norms are taken from the right place in the joint read)."""
    x, y = regression_data(64)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    replay = make_model()
    opt = torch.optim.AdamW(replay.parameters(), lr=1e-2)
    expected = []
    for xb, yb in batches:
        opt.zero_grad()
        nn.functional.mse_loss(replay(xb), yb).backward()
        expected.append(float(torch.nn.utils.get_total_norm([p.grad for p in replay.parameters()])))
        opt.step()
    source = iter(batches)
    history = fit(make_model(), lambda: next(source), steps=4, lr=1e-2, device="cpu", sync_every=4, verbose=False)
    assert history.grad_norm == pytest.approx(expected, rel=1e-5)


def test_evaluate_weights_each_batch_by_its_size():
    """A last batch of 1 example counts once, not as much as a batch of 32: the mean over all examples."""
    x, y = regression_data(65)
    model = make_model()
    with torch.no_grad():
        expected = float(nn.functional.mse_loss(model(x), y))
    values = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=32), device=torch.device("cpu"))
    assert values["loss"] == pytest.approx(expected, rel=1e-5)


def test_pending_values_are_read_one_by_one_or_at_once():
    """The CPU reads each value; a GPU reads them stacked in one go. Both give the same floats, NaN included."""
    values = [torch.tensor(1.5, dtype=torch.bfloat16), torch.tensor(2.25), torch.tensor(float("nan"))]
    for at_once in (False, True):
        floats = _to_floats(values, at_once)
        assert floats[:2] == [1.5, 2.25] and math.isnan(floats[2]) and all(type(f) is float for f in floats)
    assert _to_floats([], True) == [] and _to_floats([torch.tensor(3.0)], True) == [3.0]


@pytest.mark.filterwarnings("ignore:Creating legend:UserWarning")  # matplotlib times itself with the fake clock
def test_live_plot_is_one_png_updated_in_place(monkeypatch):
    """live_plot=True draws the history as a PNG into one display slot: shown once, then updated."""
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj))

    def display(obj, display_id=False):
        calls.append(("display", obj))
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    monkeypatch.setattr("karpa_lab.train.time.perf_counter", iter(range(0, 10**6, 10)).__next__)  # 10 s a call
    x, y = regression_data()
    fit(make_model(), lambda: (x, y), steps=5, lr=0.01, progress=False, live_plot=True)
    kinds = [kind for kind, _ in calls]
    assert kinds[0] == "display" and kinds.count("display") == 1 and "update" in kinds
    assert all(obj.format == "png" and obj.data[:4] == b"\x89PNG" for _, obj in calls)
