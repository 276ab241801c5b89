"""fit keeps its promises in every mode: update_fn gets the schedule and clipping, resume is exact after an
interrupt at any point of a step, checkpoints verify themselves, and every bad argument is explained."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import CheckpointError, NonFiniteLossError, fit, load_checkpoint, warmup_cosine
from karpa_lab.models.gan import GANUpdate, gan_optimizers, mlp_gan_2d

X = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3


def make_model(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def shuffled_loader() -> DataLoader:
    return DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))


def random_batch():
    idx = torch.randint(0, 256, (16,))  # the global generator: restored by resume
    return X[idx], Y[idx]


SOURCES = {"shuffled DataLoader": shuffled_loader, "callable": lambda: random_batch}
STEPS = 30


def train(data, steps=STEPS, **kw) -> nn.Module:
    torch.manual_seed(7)
    model = make_model()
    fit(model, data(), steps=steps, lr=1e-2, schedule=warmup_cosine(5, STEPS), verbose=False, **kw)
    return model


# ------------------------------------------------------------------------------ exact resume
class Interrupt:
    """Interrupts step ``at`` once, at one point of the step: a Ctrl-C (SIGINT, which fit defers to the
    end of the step) or a KeyboardInterrupt raised right there (a second Ctrl-C, or code raising it)."""

    def __init__(self, at: int, how: str):
        self.at, self.how, self.calls = at, how, 0

    def fire(self) -> None:
        self.calls += 1
        if self.calls == self.at + 1:
            if self.how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt


def interrupted_run(source: str, point: str, how: str, ckpt, monkeypatch) -> None:
    torch.manual_seed(7)
    model = make_model()
    hit = Interrupt(9, how)
    data = SOURCES[source]()
    if point == "data fetch":
        inner = data
        data = (lambda: (hit.fire(), inner())[1]) if callable(inner) and not hasattr(inner, "__len__") else inner
        if data is inner:  # a DataLoader: interrupt while its collate function builds the batch
            data = DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True,
                              generator=torch.Generator().manual_seed(1),
                              collate_fn=lambda b: (hit.fire(), torch.utils.data.default_collate(b))[1])
    elif point == "forward":
        model[0].register_forward_hook(lambda *a: hit.fire())
    elif point == "backward":
        model[0].weight.register_hook(lambda g: hit.fire())
    elif point == "optimizer step":
        orig = torch.optim.AdamW.step

        def step(self, *a, **k):
            out = orig(self, *a, **k)
            hit.fire()
            return out

        monkeypatch.setattr(torch.optim.AdamW, "step", step)
    elif point == "checkpoint write":
        import karpa_lab.checkpoint as ck

        orig_save = ck.save_checkpoint

        def save(path, state):
            hit.calls = hit.at  # the first periodic write is interrupted
            hit.fire()
            orig_save(path, state)

        monkeypatch.setattr(ck, "save_checkpoint", save)
        monkeypatch.setattr("karpa_lab.train.save_checkpoint", save)
    history = fit(model, data, steps=STEPS, lr=1e-2, schedule=warmup_cosine(5, STEPS), verbose=False,
                  checkpoint=ckpt, save_every=4 if point == "checkpoint write" else None)
    assert history.interrupted, "the interrupt did not happen"
    monkeypatch.undo()


POINTS = ["data fetch", "forward", "backward", "optimizer step", "checkpoint write"]


# Inside the optimizer step and the checkpoint write a Ctrl-C is always deferred, so only the signal applies there.
CASES = [(point, how) for point in POINTS for how in ("signal", "raise")
         if how == "signal" or point not in ("optimizer step", "checkpoint write")]


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("point, how", CASES)
def test_resume_after_an_interrupt_anywhere_equals_an_uninterrupted_run(tmp_path, monkeypatch, source, point, how):
    straight = train(SOURCES[source])
    ckpt = tmp_path / "run.ckpt"
    interrupted_run(source, point, how, ckpt, monkeypatch)
    torch.manual_seed(1234)  # whatever the generators hold now, the checkpoint's states must win
    resumed = make_model(seed=99)
    history = fit(resumed, SOURCES[source](), steps=STEPS, lr=1e-2, schedule=warmup_cosine(5, STEPS),
                  verbose=False, resume_from=ckpt)
    assert len(history) == STEPS and history.steps == list(range(STEPS))
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q), f"max difference {(p - q).abs().max():.3g}"


def test_second_ctrl_c_inside_the_optimizer_step_waits_for_its_end(tmp_path, monkeypatch):
    torch.manual_seed(7)
    model = make_model()
    orig = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # two Ctrl-C in the middle of the update
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    history = fit(model, random_batch, steps=STEPS, lr=1e-2, verbose=False, checkpoint=tmp_path / "c.ckpt")
    assert history.interrupted and len(history) == 5
    assert load_checkpoint(tmp_path / "c.ckpt")["step"] == 5


class SeededBatches:
    """A batch source with its own generator, which it lets fit checkpoint."""

    def __init__(self):
        self.gen = torch.Generator().manual_seed(3)

    def __call__(self):
        idx = torch.randint(0, 256, (16,), generator=self.gen)
        return X[idx], Y[idx]

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state["gen"])


def test_a_callable_with_its_own_generator_resumes_exactly(tmp_path):
    straight = train(SeededBatches)
    train(SeededBatches, steps=11, checkpoint=tmp_path / "c.ckpt")
    resumed = make_model(seed=5)
    fit(resumed, SeededBatches(), steps=STEPS, lr=1e-2, schedule=warmup_cosine(5, STEPS), verbose=False,
        resume_from=tmp_path / "c.ckpt")
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------ checkpoints
def test_flipped_bytes_and_truncation_are_caught(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    train(SOURCES["callable"], steps=3, checkpoint=ckpt)
    raw = bytearray(ckpt.read_bytes())
    weights = make_model().state_dict()["0.weight"].numpy().tobytes()[:8]
    # flip eight bytes in the middle of the file (inside the stored payload)
    mid = len(raw) // 2
    damaged = raw[:mid] + bytes(b ^ 0xFF for b in raw[mid:mid + 8]) + raw[mid + 8:]
    (tmp_path / "flipped.ckpt").write_bytes(damaged)
    with pytest.raises(CheckpointError, match=r"flipped.ckpt.*(damaged|corrupt)"):
        load_checkpoint(tmp_path / "flipped.ckpt", make_model())
    (tmp_path / "cut.ckpt").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CheckpointError, match=r"cut.ckpt.*truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.ckpt")
    assert weights  # the model itself is fine: only the copies were damaged


def test_a_flip_inside_a_weight_tensor_is_caught_by_the_digest(tmp_path):
    import hashlib
    import io

    ckpt = tmp_path / "run.ckpt"
    train(SOURCES["callable"], steps=3, checkpoint=ckpt)
    outer = torch.load(ckpt, weights_only=True)
    state = torch.load(io.BytesIO(outer["payload"]), weights_only=True)
    state["model"]["0.weight"][0, 0] += 1.0  # a valid file, one changed number
    buffer = io.BytesIO()
    torch.save(state, buffer)
    outer["payload"] = buffer.getvalue()
    torch.save(outer, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match=r"edited.ckpt is damaged.*SHA-256"):
        fit(make_model(), random_batch, steps=5, verbose=False, resume_from=tmp_path / "edited.ckpt")
    outer["sha256"] = hashlib.sha256(outer["payload"]).hexdigest()  # the digest is what makes the difference
    torch.save(outer, tmp_path / "edited.ckpt")
    load_checkpoint(tmp_path / "edited.ckpt", make_model())


def test_another_optimizer_or_model_is_named(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    train(SOURCES["callable"], steps=3, checkpoint=ckpt)
    model = make_model()
    with pytest.raises(CheckpointError, match=r"optimizer torch.optim.adamw.AdamW.*this run uses .*SGD"):
        fit(model, random_batch, steps=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            verbose=False, resume_from=ckpt)
    groups = torch.optim.AdamW([{"params": model[0].parameters()}, {"params": model[3].parameters()}])
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[4\].*\[2, 2\]"):
        fit(model, random_batch, steps=5, optimizer=groups, verbose=False, resume_from=ckpt)

    class Other(nn.Sequential):
        pass

    with pytest.raises(CheckpointError, match="holds a torch.nn.modules.container.Sequential, not a .*Other"):
        load_checkpoint(ckpt, Other(*make_model()))


# ------------------------------------------------------------------------------ update_fn mode
def test_update_fn_optimizers_get_the_schedule_and_the_clipping():
    model = make_model(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    other = nn.Linear(2, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.5)  # not the model's: left alone
    before = model[0].weight.detach().clone()

    def update(m, batch):
        loss = nn.functional.mse_loss(m(batch[0]), batch[1]) * 1e4  # a huge gradient
        opt.zero_grad()
        loss.backward()
        opt.step()
        other(torch.ones(1, 2)).sum().backward()
        other_opt.step()
        return {"loss": loss}

    history = fit(model, random_batch, steps=10, update_fn=update, schedule=warmup_cosine(4, 10), clip_grad=0.5,
                  verbose=False)
    assert history.lr[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert min(history.grad_norm) > 0.5  # measured before clipping, as in plain mode
    step_size = (model[0].weight - before).norm() / 10
    assert step_size <= 0.1 * 0.5 + 1e-6  # each update moved the weights by at most lr * clip
    assert other_opt.param_groups[0]["lr"] == 0.5


def test_gan_update_fn_checkpoints_both_optimizers_and_resumes_exactly(tmp_path):
    def run(steps, **kw):
        torch.manual_seed(0)
        gan = mlp_gan_2d(hidden=16)
        update = GANUpdate(*gan_optimizers(gan, 1e-3, 1e-3))
        real = lambda: torch.randn(32, 2) * 0.3 + 1.0
        fit(gan, real, steps=steps, update_fn=update, verbose=False, **kw)
        return gan

    straight = run(20)
    run(8, checkpoint=tmp_path / "gan.ckpt")
    torch.manual_seed(0)
    gan = mlp_gan_2d(hidden=16)
    update = GANUpdate(*gan_optimizers(gan, 1e-3, 1e-3))
    fit(gan, lambda: torch.randn(32, 2) * 0.3 + 1.0, steps=20, update_fn=update, verbose=False,
        resume_from=tmp_path / "gan.ckpt")
    for p, q in zip(gan.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_update_fn_with_a_checkpoint_needs_its_state():
    with pytest.raises(ValueError, match="state_dict"):
        fit(make_model(), random_batch, steps=2, update_fn=lambda m, b: {"loss": 0.0}, checkpoint="x.ckpt")


# ------------------------------------------------------------------------------ arguments, NaN, verbose
@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 5, "clip_grad": 0}, "clip_grad must be a positive.*got 0"),
    ({"steps": 5, "clip_grad": -1.0}, "clip_grad must be a positive.*got -1.0.*loss climbs"),
    ({"epochs": 0}, "epochs must be a positive whole number, got 0"),
    ({"steps": 0}, "steps must be a positive whole number, got 0"),
    ({"steps": 2.5}, "steps must be a positive whole number, got 2.5"),
    ({"steps": 5, "lr": -1e-3}, "lr must be a positive learning rate"),
    ({"steps": 5, "save_every": 2}, "save_every= needs checkpoint="),
    ({"steps": 5, "log_every": 0}, "log_every must be a positive whole number"),
])
def test_bad_arguments_name_the_value_and_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(make_model(), shuffled_loader(), verbose=False, **kwargs)


def test_empty_loader_and_update_fn_conflicts_are_explained():
    empty = DataLoader(TensorDataset(X[:0], Y[:0]), batch_size=4)
    with pytest.raises(ValueError, match="data has no batches"):
        fit(make_model(), empty, epochs=1, verbose=False)
    model = make_model()
    with pytest.raises(ValueError, match="leave out optimizer="):
        fit(model, random_batch, steps=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            update_fn=lambda m, b: {"loss": 0.0})


def test_nan_at_the_first_step_says_so():
    with pytest.raises(NonFiniteLossError, match="at step 0 .*very first step") as err:
        fit(make_model(), lambda: (X[:8] * float("nan"), Y[:8]), steps=5, verbose=False)
    assert "nan at step -1" not in str(err.value)


def test_verbose_false_prints_nothing_even_when_interrupted(capsys, tmp_path):
    calls = {"n": 0}

    def data():
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return random_batch()

    history = fit(make_model(), data, steps=20, verbose=False, checkpoint=tmp_path / "c.ckpt")
    assert history.interrupted and len(history) == 3
    fit(make_model(), random_batch, steps=20, verbose=False, resume_from=tmp_path / "c.ckpt")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
