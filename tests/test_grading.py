"""karpa_lab.grading: each check passes the reference and names the mistake in a broken version."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from karpa_lab import grading
from karpa_lab.models import attention as ref_attention
from karpa_lab.models import gan as ref_gan
from karpa_lab.models.lstm import lstm_step
from karpa_lab.nas.space import Genome, Space


def fails(check, *args, **kwargs) -> str:
    """The message of the AssertionError that ``check`` must raise."""
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- generic checks

def test_check_close_passes_and_returns_nothing(capsys):
    x = torch.randn(3, 4)
    assert grading.check_close("h", x + 1e-9, x) is None  # a returned number would be a partial score
    assert "✓ h matches" in capsys.readouterr().out


@pytest.mark.parametrize("actual, expected, words", [
    (torch.zeros(3, 4), torch.ones(4, 3), ["(3, 4)", "(4, 3)", "(batch, hidden)", "wrong order"]),
    (torch.zeros(12), torch.ones(3, 4), ["right number of entries"]),
    (None, torch.ones(2), ["torch.Tensor", "return"]),
    (torch.tensor([1.0, float("nan")]), torch.ones(2), ["NaN at index (1,)"]),
    (-torch.arange(1.0, 4.0), torch.arange(1.0, 4.0), ["off by up to 6", "sign flipped"]),
    (torch.tensor([[0.0, 0.5]]), torch.tensor([[0.0, 0.0]]), ["at index (0, 1) yours is 0.5, expected 0", "1 of 2"]),
])
def test_check_close_messages(actual, expected, words):
    message = fails(grading.check_close, "h", actual, expected, dims="(batch, hidden)")
    for word in words:
        assert word in message, message


def test_relative_tolerance_is_said():
    grading.check_close("c", torch.tensor([100.5]), torch.tensor([100.0]), atol=0.0, rtol=0.01)
    assert "0.01 × |expected|" in fails(grading.check_close, "c", torch.tensor([102.0]), torch.tensor([100.0]),
                                         atol=0.0, rtol=0.01)


def test_check_tensor_dtype():
    assert "x.new_zeros" in fails(grading.check_tensor, "h", torch.zeros(2), (2,), dtype=torch.float64)


def test_check_no_calls_sees_nested_functions():
    def outer(x):
        def inner(y):
            return torch.nn.LSTMCell(1, 1)
        return inner(x)

    assert "outer uses LSTMCell: write it" in fails(grading.check_no_calls, outer, ("LSTMCell",), "write it")
    grading.check_no_calls(outer, ("GRUCell",), "unused")


# ---------------------------------------------------------------- LSTM with a projection

def broken_cell(bug: str):
    def lstm_cell(x, h, c, w_ih, w_hh, w_hr, b_ih, b_hh):
        a = x @ w_ih.T + h @ w_hh.T + b_ih + (0 if bug == "bias" else b_hh)
        i, f, g, o = a.chunk(4, dim=1)
        if bug == "order":
            g, o = o, g
        i, f, o = i.sigmoid(), f.sigmoid(), o.sigmoid()
        g = g.sigmoid() if bug == "g" else g.tanh()
        f = torch.ones_like(f) if bug == "f" else f
        if bug == "inplace":
            c *= f
            c_next = c + i * g
        else:
            c_next = f * c + i * g
        shown = o * c_next if bug == "o" else o * c_next.tanh()
        if bug == "no_projection":
            return shown, c_next
        return (shown.tanh() if bug == "tanh_after" else shown) @ w_hr.T, c_next
    return lstm_cell


good_cell = broken_cell("")


def test_lstm_cell_reference_passes(capsys):
    grading.check_lstm_cell(good_cell)
    grading.check_lstm_cell(good_cell, input_size=1, hidden_size=2, proj_size=1, batch=1, seed=3)
    assert "matches nn.LSTM with proj_size" in capsys.readouterr().out
    x, h, c, w_ih, w_hh, b_ih, b_hh = (torch.randn(*shape) for shape in [(2, 3), (2, 4), (2, 4), (16, 3), (16, 4),
                                                                        (16,), (16,)])
    plain = lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh)[:2]
    for mine, course in zip(good_cell(x, h, c, w_ih, w_hh, torch.eye(4), b_ih, b_hh), plain):
        torch.testing.assert_close(mine, course)  # with the identity as projection, the test's cell is the course's


@pytest.mark.parametrize("bug, words", [
    ("g", ["✗ candidate g", "tanh, not σ", "✓ forget gate f", "✓ output gate o"]),
    ("o", ["✗ output gate o", "h_t = (o ⊙ tanh(c_t)) @ weight_hr.T", "✓ candidate g"]),
    ("f", ["✗ forget gate f", "fix f first"]),
    ("order", ["order of the four blocks"]),
    ("bias", ["with both biases at zero"]),
    ("inplace", ["in place"]),
    ("no_projection", ["before the projection", "(batch, proj_size) = (3, 2)"]),
    ("tanh_after", ["c_next matches, so the gates and the cell are right"]),
])
def test_lstm_cell_names_the_mistake(bug, words):
    message = fails(grading.check_lstm_cell, broken_cell(bug))
    for word in words:
        assert word in message, message


def test_lstm_cell_shape_and_return_errors():
    assert "weight_hr (2, 4)" in fails(grading.check_lstm_cell, lambda x, h, c, wi, wh, wr, bi, bh: (x @ wi, c))
    assert "pair (h_next, c_next)" in fails(grading.check_lstm_cell, lambda x, h, c, wi, wh, wr, bi, bh: h)
    message = fails(grading.check_lstm_cell, lambda x, h, c, wi, wh, wr, bi, bh: (h.T, c))
    assert "h_next has shape (2, 3)" in message and "(batch, proj_size)" in message and "wrong order" in message
    assert "uses LSTMCell" in fails(grading.check_lstm_cell, lambda x, h, c, *w: torch.nn.LSTMCell(5, 4)(x, (h, c)))


def sequence(bug: str = ""):
    def lstm_sequence(x, state, *weights):
        P, H = weights[2].shape
        if state is None or bug == "ignore_state":
            state = (x.new_zeros(x.shape[1], P), x.new_zeros(x.shape[1], P if bug == "shared_zeros" else H))
        h, c = state
        outputs = []
        for x_t in x:
            h_new, c_new = good_cell(x_t, h, c, *weights)
            if bug != "no_carry":
                h, c = h_new, c_new
            outputs.append(h_new)
        outputs = torch.stack(outputs)
        if bug == "reverse":
            outputs = outputs.flip(0)
        return outputs, ((h + 1 if bug == "final" else h), c)
    return lstm_sequence


def test_lstm_sequence_reference_passes(capsys):
    grading.check_lstm_sequence(sequence())
    grading.check_lstm_sequence(sequence(), steps=1, batch=1, input_size=1, hidden_size=2, proj_size=1)
    assert "matches nn.LSTM with proj_size" in capsys.readouterr().out


@pytest.mark.parametrize("bug, words", [
    ("no_carry", ["outputs[1]", "step 0 matches and step 1 does not"]),
    ("ignore_state", ["a given (h_0, c_0)", "start from the (h_0, c_0)"]),
    ("reverse", ["reverse time order"]),
    ("final", ["h_T is off", "outputs[-1]"]),
    ("shared_zeros", ["raised RuntimeError with state=None", "start from h_0 = zeros (B, P) and c_0 = zeros (B, H)"]),
])
def test_lstm_sequence_names_the_mistake(bug, words):
    message = fails(grading.check_lstm_sequence, sequence(bug))
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- attention with linear biases

def attention(bug: str = ""):
    def attn(q, k, v, bias=None, mask=None):
        scores = q @ k.transpose(-2, -1)
        if bias is not None and bug == "bias_scaled":
            scores = scores + bias
        scores = scores / {"scale": 1.0, "dk": q.shape[-1]}.get(bug, math.sqrt(q.shape[-1]))
        if bias is not None and bug not in ("bias_scaled", "no_bias"):
            scores = scores + (-bias if bug == "minus" else bias)
        if mask is not None and bug != "ignore":
            scores = scores.masked_fill(mask if bug == "invert" else ~mask, 0.0 if bug == "zero" else -math.inf)
        weights = scores.softmax(dim=-2 if bug == "dim" else -1)
        return (weights @ v + (1 if bug == "out" else 0)), weights
    return attn


def test_attention_reference_passes():
    grading.check_attention(attention())
    grading.check_attention(attention(), batch=(), L=1, S=1, d_k=1, d_v=1)


@pytest.mark.parametrize("bug, words", [
    ("scale", ["not scaled"]), ("dk", ["divided by d_k"]), ("dim", ["over the queries"]),
    ("invert", ["inverted"]), ("zero", ["exp(0) = 1"]), ("ignore", ["ignored"]), ("out", ["out = weights @ v"]),
    ("no_bias", ["the bias is left out"]), ("minus", ["subtracted"]), ("bias_scaled", ["the bias is divided"]),
])
def test_attention_names_the_mistake(bug, words):
    message = fails(grading.check_attention, attention(bug))
    for word in words:
        assert word in message, message


def test_attention_refuses_the_course_function():
    """The course's attention takes one mask: it cannot add a bias and block keys at once."""
    message = fails(grading.check_attention, lambda q, k, v, bias=None, mask=None:
                    ref_attention.scaled_dot_product_attention(q, k, v, mask))
    assert "the bias is left out" in message


def alibi(n_heads, T, dtype=torch.float32):  # the test's own biases; the package carries none
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, dtype=torch.float64) / n_heads)
    offset = torch.arange(T)[None, :] - torch.arange(T)[:, None]
    return (slopes[:, None, None] * offset).masked_fill(offset > 0, -math.inf).to(dtype)


def alibi_layer(reversed_slopes=False, **knobs):
    def layer(x, n_heads, w_in, b_in, w_out, b_out, padding_mask=None):
        bias = alibi(n_heads, x.shape[1], x.dtype)
        bias = bias.flip(0) if reversed_slopes else bias
        if padding_mask is not None:
            bias = grading._additive(bias, padding_mask[:, None, None, :])
        return grading._self_attention(x, n_heads, w_in, b_in, w_out, b_out, bias, **knobs)
    return layer


def via_module(x, n_heads, w_in, b_in, w_out, b_out, mask=None):
    mha = ref_attention.MultiHeadAttention.from_packed(n_heads, w_in, b_in, w_out, b_out).double()
    return mha(x, mask=mask)[0]


def test_alibi_self_attention_reference_passes(capsys):
    grading.check_alibi_self_attention(alibi_layer(), alibi)
    grading.check_alibi_self_attention(alibi_layer(), alibi, batch=1, T=1, d_model=4, n_heads=4)
    assert "matches nn.MultiheadAttention with your biases" in capsys.readouterr().out


@pytest.mark.parametrize("knobs, words", [
    ({"reversed_slopes": True}, ["each other's slopes"]), ({"split": "wrong"}, ["view(B, T, h, d_h)"]),
    ({"scale_by": 6}, ["sqrt(d_h)"]), ({"project": False}, ["no output projection"]),
])
def test_alibi_self_attention_names_the_mistake(knobs, words):
    message = fails(grading.check_alibi_self_attention, alibi_layer(**knobs), alibi)
    for word in words:
        assert word in message, message
    causal_only = fails(grading.check_alibi_self_attention, lambda x, h, *w: via_module(
        x, h, *w[:4], torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()), alibi)
    assert "the linear biases are left out" in causal_only  # the course's layer, which has no ALiBi
    scaled = fails(grading.check_alibi_self_attention,
                   lambda x, h, *w: grading._self_attention(x, h, *w[:4], alibi(h, x.shape[1], x.dtype) / 3 ** 0.5),
                   alibi)
    assert "divided by sqrt(d_h) with the scores" in scaled
    one_head = fails(grading.check_alibi_self_attention,
                     lambda x, h, *w: grading._self_attention(x, 1, *w[:4], alibi(1, x.shape[1], x.dtype)), alibi)
    assert "one head over all of d_model" in one_head


def causal(layer=via_module, future=True, padding_axis=-1):
    """A causal layer with a padding mask built on ``layer``; ``future=False`` forgets the causal mask."""
    def fn(x, n_heads, w_in, b_in, w_out, b_out, padding_mask=None):
        T = x.shape[1]
        mask = torch.ones(T, T, dtype=torch.bool).tril() if future else torch.ones(T, T, dtype=torch.bool)
        if padding_mask is not None:
            mask = mask & (padding_mask[:, None, None, :] if padding_axis == -1 else padding_mask[:, None, :, None])
        return layer(x, n_heads, w_in, b_in, w_out, b_out, mask)
    return fn


def scaled_by_d_model(x, n_heads, w_in, b_in, w_out, b_out, mask=None):
    return grading._self_attention(x, n_heads, w_in, b_in, w_out, b_out, grading._additive(None, mask), scale_by=6)


def test_behaviour_checks_pass_causal_layers():
    grading.check_causal(causal())
    grading.check_padding(causal())
    grading.check_causal(alibi_layer())  # the linear biases carry the causal mask
    grading.check_padding(alibi_layer())


def test_check_causal_catches_both_ways():
    assert "sees the future" in fails(grading.check_causal, causal(future=False))
    def only_when_unpadded(x, n_heads, w_in, b_in, w_out, b_out, padding_mask=None):  # causal mask dropped if padded
        return causal(future=padding_mask is None)(x, n_heads, w_in, b_in, w_out, b_out, padding_mask)

    assert "with a left-padding mask" in fails(grading.check_causal, only_when_unpadded)
    only_self = lambda x, h, w_in, b_in, w_out, b_out, p=None: (x @ w_in.T + b_in).chunk(3, -1)[2] @ w_out.T + b_out
    assert "did not change when token 0 changed" in fails(grading.check_causal, only_self)


def test_check_padding_catches_pads_that_are_seen():
    assert "moved" in fails(grading.check_padding, causal(padding_axis=-2))
    assert "moved" in fails(grading.check_padding, lambda x, h, *w: causal()(x, h, *w[:4]))
    grading.check_padding(causal(scaled_by_d_model))  # wrong values, right padding: not this check's business
    grading.check_causal(causal(scaled_by_d_model))


# ---------------------------------------------------------------- GAN (hinge losses)

def hinge_d(r, f):
    return torch.relu(1 - r).mean() + torch.relu(1 + f).mean()


def hinge_g(f):
    return -f.mean()


def test_gan_losses_reference_passes(capsys):
    grading.check_gan_losses(hinge_d, hinge_g)
    assert "far beyond it" in capsys.readouterr().out
    grading.check_gan_losses(None, hinge_g)  # one loss alone: the other is not called
    assert capsys.readouterr().out.startswith("✓ generator_loss matches the hinge GAN's")


def test_each_gan_loss_is_checked_alone():
    broken = lambda *logits: torch.tensor(float("nan"))  # noqa: E731
    grading.check_gan_losses(hinge_d, None)
    grading.check_gan_losses(None, hinge_g)
    assert "discriminator_loss is nan" in fails(grading.check_gan_losses, broken, None)
    assert "generator_loss is nan" in fails(grading.check_gan_losses, None, broken)


@pytest.mark.parametrize("d_loss, g_loss, words", [
    (ref_gan.discriminator_loss, hinge_g, ["cross-entropy loss of the standard GAN"]),
    (None, ref_gan.generator_loss, ["non-saturating cross-entropy loss"]),
    (lambda r, f: torch.relu(-r).mean() + torch.relu(f).mean(), hinge_g, ["the margin is missing"]),
    (lambda r, f: (1 - r).mean() + (1 + f).mean(), hinge_g, ["without the relu"]),
    (lambda r, f: f.mean() - r.mean(), hinge_g, ["Wasserstein critic"]),
    (lambda r, f: torch.relu(1 + r).mean() + torch.relu(1 - f).mean(), hinge_g, ["swapped"]),
    (lambda r, f: torch.relu(1 - r).sum() + torch.relu(1 + f).sum(), hinge_g, ["sums over the batch"]),
    (lambda r, f: torch.relu(1 - r) + torch.relu(1 + f).mean(), hinge_g, ["should be a scalar"]),
    (None, lambda f: torch.relu(1 - f).mean(), ["has no relu and no margin"]),
    (None, lambda f: f.mean(), ["the sign is flipped"]),
    (None, lambda f: torch.tensor(-f.mean().item()), ["carries no gradient"]),
    (None, lambda f: -f.mean() + (f - f.detach()).pow(2).sum() - f.mean() + f.detach().mean(),
     ["d generator_loss / d fake_logits"]),
])
def test_gan_losses_name_the_mistake(d_loss, g_loss, words):
    message = fails(grading.check_gan_losses, d_loss, g_loss)
    for word in words:
        assert word in message, message


def gan_step(bug: str = ""):
    def step(gan, real, opt_d, opt_g, noise):
        B = real.shape[0]
        z = gan.noise(B, noise)
        with torch.no_grad():
            fakes = gan.generator(z)
        d_loss = (ref_gan.discriminator_loss if bug == "bce" else hinge_d)(gan.discriminator(real),
                                                                          gan.discriminator(fakes))
        if bug != "no_zero_grad":
            opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        z_g = z if bug == "same_noise" else gan.noise(B, noise)
        g_loss = hinge_g(gan.discriminator(gan.generator(z_g)))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return {"loss": g_loss if bug == "returns" else d_loss, "g_loss": g_loss}
    return step


def test_gan_step_reference_passes():
    grading.check_gan_step(gan_step())
    grading.check_gan_step(gan_step(), steps=2, batch=1, seed=3)


@pytest.mark.parametrize("bug, words", [
    ("no_zero_grad", ["discriminator's weights differ", "Step 0 matched, step 1"]),
    ("same_noise", ["generator's weights differ", "fresh noise"]),
    ("returns", ["returned 'loss'"]),
    ("bce", ["discriminator's weights differ", "(the hinge loss)"]),
])
def test_gan_step_names_the_mistake(bug, words):
    message = fails(grading.check_gan_step, gan_step(bug))
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- NAS local search (lab 04)

SPACE = Space(depths=(1, 2, 3), widths=(16, 32, 64), kernels=(0,), activations=("relu", "tanh"), skips=False)


def _one_edit(a: Genome, b: Genome) -> bool:
    if a.depth == b.depth:
        return sum(x != y for x, y in zip(a.widths, b.widths)) + (a.activation != b.activation) == 1
    short, long_ = (a.widths, b.widths) if a.depth < b.depth else (b.widths, a.widths)
    return (a.activation == b.activation and len(long_) == len(short) + 1
            and any(long_[:i] + long_[i + 1:] == short for i in range(len(long_))))


def filtered_neighbours(genome: Genome, space: Space) -> list[Genome]:
    """The neighbourhood by brute force: every genome of the space one edit away."""
    return [g for g in space.all_genomes() if _one_edit(genome, g)]


def neighbours_with(bug: str):
    def neighbours(genome, space):
        out = filtered_neighbours(genome, space)
        if bug == "twice":
            out += out[:1]
        elif bug == "itself":
            out.append(genome)
        elif bug == "set":
            return set(out)
        elif bug == "too_deep":
            out.append(Genome.mlp(*genome.widths, 16, 16, 16, activation=genome.activation))
        elif bug == "no_activation":
            out = [g for g in out if g.widths != genome.widths]
        elif bug == "first_layer_only":
            out = [g for g in out if g.depth != genome.depth or g.widths[1:] == genome.widths[1:]]
        elif bug == "add_changes_activation":
            out = [g if g.depth == genome.depth else Genome.mlp(*g.widths, activation="tanh") for g in out]
        return out
    return neighbours


def test_neighbourhood_reference_passes():
    grading.check_neighbourhood(neighbours_with(""), SPACE, trials=30)


@pytest.mark.parametrize("bug, words", [
    ("twice", ["more than once"]), ("itself", ["itself"]), ("set", ["return a list"]),
    ("too_deep", ["outside the space"]), ("no_activation", ["changes the activation to []"]),
    ("first_layer_only", ["networks of its depth and activation", "each layer's width"]),
    ("add_changes_activation", ["and the activation changed too"]),
])
def test_neighbourhood_names_the_mistake(bug, words):
    message = fails(grading.check_neighbourhood, neighbours_with(bug), SPACE, trials=30)
    for word in words:
        assert word in message, message


def improve_with(bug: str = ""):
    def improve(genome, genome_score, space, score, rng, budget):
        order = filtered_neighbours(genome, space)
        if bug != "in_order":
            rng.shuffle(order)
        evaluated, best = [], None
        for neighbour in order if bug == "no_budget" else order[:budget]:
            value = score(neighbour)
            if bug != "unrecorded":
                evaluated.append((neighbour, value))
            if value > genome_score or (bug == "ties" and value == genome_score):
                if bug != "best":
                    return evaluated, (neighbour, value)
                best = max(best or (neighbour, value), (neighbour, value), key=lambda m: m[1])
            if bug == "one_try":
                break
        return evaluated, best
    return improve


def test_first_improvement_reference_passes():
    grading.check_first_improvement(improve_with(), SPACE, filtered_neighbours)
    firsts = [evaluated[0] for evaluated in grading.first_evaluated(improve_with(), SPACE, Genome.mlp(16, 32))]
    assert len(set(firsts)) == len(filtered_neighbours(Genome.mlp(16, 32), SPACE))  # 300 draws cover all 13


@pytest.mark.parametrize("bug, words", [
    ("ties", ["strictly higher (>)"]), ("best", ["First improvement"]), ("unrecorded", ["for every call of score"]),
    ("no_budget", ["budget of 3"]), ("one_try", ["a local optimum is declared"]),
])
def test_first_improvement_names_the_mistake(bug, words):
    message = fails(grading.check_first_improvement, improve_with(bug), SPACE, filtered_neighbours)
    for word in words:
        assert word in message, message


def test_first_evaluated_tells_a_fixed_order():
    pairs = grading.first_evaluated(improve_with("in_order"), SPACE, Genome.mlp(16, 32), trials=50)
    assert len({evaluated[0] for evaluated in pairs}) == 1


def search_with(bug: str = ""):
    import random

    from karpa_lab.nas.searchers import SearchTrace

    def search(space, score, budget, rng):
        trace = SearchTrace("local")
        while len(trace) < budget:
            genome = space.sample(rng)
            value = score(genome)
            trace.add(genome, value)
            while len(trace) < budget:
                if bug == "restart_early" and rng.random() < 0.3:
                    break
                evaluated, better = improve_with()(genome, value, space, score, rng, budget - len(trace))
                for pair in evaluated:
                    trace.add(*pair)
                if better is None:
                    break
                genome, value = better
        return trace

    rng = random.Random(0)
    return search(SPACE, lambda g: rng.gauss(0.0, 1.0), 80, random.Random(1))


def test_local_search_replay():
    moves, restarts = grading.check_local_search(search_with(), SPACE, filtered_neighbours)
    assert moves >= 1 and restarts >= 1
    message = fails(grading.check_local_search, search_with("restart_early"), SPACE, filtered_neighbours)
    assert "is not a neighbour of the current genome" in message, message


def test_local_search_replay_tells_a_repeat():
    from karpa_lab.nas.searchers import SearchTrace

    trace, genome = SearchTrace("repeat"), Genome.mlp(16)
    for g, value in ((genome, 1.0), (Genome.mlp(32), 0.0), (Genome.mlp(32), 0.5)):
        trace.add(g, value)
    message = fails(grading.check_local_search, trace, SPACE, filtered_neighbours)
    assert "a second time" in message, message


# ---------------------------------------------------------------- convolution (lab 05)

def _conv(x, weight, bias=None, stride=1, padding=0):
    from karpa_lab.models.conv import conv2d_im2col

    return conv2d_im2col(x, weight, bias, stride, padding)


def test_check_conv2d_passes_the_reference_and_names_mistakes(capsys):
    grading.check_conv2d(_conv, stride=(2, 1), padding=(1, 0))
    assert "✓ _conv matches F.conv2d" in capsys.readouterr().out

    def flipped(x, weight, bias=None, stride=1, padding=0):
        return _conv(x, weight.flip(2, 3), bias, stride, padding)

    def no_bias(x, weight, bias=None, stride=1, padding=0):
        return _conv(x, weight, None, stride, padding)

    def no_padding(x, weight, bias=None, stride=1, padding=0):
        return _conv(x, weight, bias, stride, 0)

    assert "the kernel is flipped" in fails(grading.check_conv2d, flipped)
    assert "the bias is missing" in fails(grading.check_conv2d, no_bias)
    assert "H_out = (H + 2 * padding_h - kH) // stride_h + 1 = (7 + 2 - 3) // 1 + 1" in \
        fails(grading.check_conv2d, no_padding, padding=1)


def test_check_conv2d_refuses_the_library_by_name():
    def library(x, weight, bias=None, stride=1, padding=0):
        return F.conv2d(x, weight, bias, stride, padding)

    assert "uses conv2d" in fails(grading.check_conv2d, library)


def test_check_conv2d_backward_passes_the_reference_and_names_mistakes(capsys):
    from karpa_lab.models.conv import conv2d_backward

    def mine(x, weight, grad_out, stride=1, padding=0):
        return conv2d_backward(x, weight, grad_out, stride, padding)

    grading.check_conv2d_backward(mine, stride=2, padding=1)
    assert "grad_x, grad_weight and grad_bias match autograd" in capsys.readouterr().out

    def mean_bias(x, weight, grad_out, stride=1, padding=0):
        gx, gw, _ = conv2d_backward(x, weight, grad_out, stride, padding)
        return gx, gw, grad_out.mean(dim=(0, 2, 3))

    def flipped_x(x, weight, grad_out, stride=1, padding=0):
        gx, gw, gb = conv2d_backward(x, weight.flip(2, 3), grad_out, stride, padding)
        return gx, conv2d_backward(x, weight, grad_out, stride, padding)[1], gb

    assert "the bias gradient is a mean" in fails(grading.check_conv2d_backward, mean_bias)
    grading.check_conv2d_backward(mean_bias, only="grad_x")  # only the part asked for is checked
    assert "the kernel is flipped" in fails(grading.check_conv2d_backward, flipped_x, only="grad_x")
    assert "should return (grad_x, grad_weight, grad_bias)" in \
        fails(grading.check_conv2d_backward, lambda x, weight, grad_out, stride=1, padding=0: x)


def _wrap(x, padding):
    """x padded circularly by index: the row (column) of x each padded row (column) copies."""
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    rows = (torch.arange(x.shape[2] + 2 * ph) - ph) % x.shape[2]
    cols = (torch.arange(x.shape[3] + 2 * pw) - pw) % x.shape[3]
    return x[:, :, rows][:, :, :, cols], rows, cols


def _circular(x, weight, bias=None, stride=1, padding=0):
    return _conv(_wrap(x, padding)[0], weight, bias, stride, 0)


def _circular_backward(x, weight, grad_out, stride=1, padding=0):
    from karpa_lab.models.conv import conv2d_backward

    xp, rows, cols = _wrap(x, padding)
    grad_xp, grad_weight, grad_bias = conv2d_backward(xp, weight, grad_out, stride, 0)
    grad_rows = grad_xp.new_zeros(*x.shape[:3], xp.shape[3]).index_add_(2, rows, grad_xp)
    return torch.zeros_like(x).index_add_(3, cols, grad_rows), grad_weight, grad_bias


def test_check_conv2d_with_circular_padding_names_the_zero_padding(capsys):
    grading.check_conv2d(_circular, stride=(2, 1), padding=(1, 2), padding_mode="circular")
    assert "✓ _circular matches F.conv2d with circular padding" in capsys.readouterr().out
    message = fails(grading.check_conv2d, _conv, padding=1, padding_mode="circular")
    assert "does not match F.conv2d with circular padding" in message and "x is padded with zeros" in message
    grading.check_conv2d(_conv, padding=0, padding_mode="circular")  # without padding the two layers agree
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        grading.check_conv2d(_circular, padding=1, padding_mode="reflect")


def test_check_conv2d_backward_with_circular_padding_names_the_cut_off_gradient(capsys):
    from karpa_lab.models.conv import conv2d_backward

    grading.check_conv2d_backward(_circular_backward, stride=2, padding=(1, 2), padding_mode="circular")
    assert "grad_x, grad_weight and grad_bias match autograd" in capsys.readouterr().out
    grading.check_conv2d_backward(_circular_backward, only="params", padding=3, size=(3, 4), padding_mode="circular")
    assert "grad_weight and grad_bias match autograd" in capsys.readouterr().out
    assert "the padding's gradient is cut off" in fails(grading.check_conv2d_backward, conv2d_backward,
                                                       only="grad_x", padding=1, padding_mode="circular")
    assert "x is padded with zeros" in fails(grading.check_conv2d_backward, conv2d_backward, only="params",
                                             padding=1, padding_mode="circular")
    with pytest.raises(ValueError, match="only must be"):
        grading.check_conv2d_backward(_circular_backward, only="grad_w")
