"""The from-scratch RNN against nn.RNN, and the hand-derived BPTT against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from karpa_lab.models.rnn import RNN, bptt, gradient_norms_by_lag, recurrent_weight, rnn_step

# (T, B, D, H): random-ish shapes, batch 1, length 1, both at once
SHAPES = [(5, 3, 4, 6), (1, 2, 3, 5), (7, 1, 2, 4), (1, 1, 1, 1), (12, 4, 9, 3)]


def make_pair(D: int, H: int, seed: int, bias: bool = True, batch_first: bool = False):
    torch.manual_seed(seed)
    ref = nn.RNN(D, H, bias=bias, batch_first=batch_first).double()
    return ref, RNN.from_torch(ref)


@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_nn_rnn(T, B, D, H, bias):
    ref, rnn = make_pair(D, H, seed=T * 100 + H, bias=bias)
    x = torch.randn(T, B, D, dtype=torch.float64)
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    for state in (None, h0):
        out, h_n = rnn(x, state)
        ref_out, ref_h = ref(x, state)
        torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
        torch.testing.assert_close(h_n, ref_h, rtol=0, atol=1e-12)


def test_batch_first_and_float32_match_nn_rnn():
    ref, rnn = make_pair(3, 5, seed=1, batch_first=True)
    ref, rnn = ref.float(), rnn.float()
    x = torch.randn(2, 6, 3)
    out, h_n = rnn(x)
    ref_out, ref_h = ref(x)
    assert out.shape == (2, 6, 5)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, ref_h, rtol=1e-5, atol=1e-6)


def test_step_is_the_equation():
    torch.manual_seed(0)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    w_ih, w_hh = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    b_ih, b_hh = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    cell = nn.RNNCell(3, 4).double()
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih)
        cell.weight_hh.copy_(w_hh)
        cell.bias_ih.copy_(b_ih)
        cell.bias_hh.copy_(b_hh)
    torch.testing.assert_close(rnn_step(x, h, w_ih, w_hh, b_ih, b_hh), cell(x, h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("with_h0", [False, True])
def test_bptt_matches_autograd(T, B, D, H, with_h0):
    ref, _ = make_pair(D, H, seed=T + 7 * H)
    x = torch.randn(T, B, D, dtype=torch.float64)
    g = torch.randn(T, B, H, dtype=torch.float64)  # the loss reads every step
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True) if with_h0 else None
    grads = bptt(ref, x, g, h0.detach() if with_h0 else None)

    out, _ = ref(x, h0)
    out.retain_grad()
    (out * g).sum().backward()  # L = sum_t <g_t, h_t>, so dL/dh_t (direct) = g_t
    torch.testing.assert_close(grads.weight_ih, ref.weight_ih_l0.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads.weight_hh, ref.weight_hh_l0.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads.bias, ref.bias_ih_l0.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads.bias, ref.bias_hh_l0.grad, rtol=1e-10, atol=1e-12)
    if with_h0:
        torch.testing.assert_close(grads.h0, h0.grad[0], rtol=1e-10, atol=1e-12)


def test_bptt_total_dl_dh_t_matches_autograd_on_a_last_step_loss():
    """delta_t (the total gradient through all later steps) equals autograd's gradient at h_t."""
    torch.manual_seed(3)
    rnn = RNN(3, 4, batch_first=True).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    target = torch.randn(2, 4, dtype=torch.float64)
    hs = []
    h = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(6):
        h = rnn_step(x[:, t], h, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        h.retain_grad()
        hs.append(h)
    loss = 0.5 * ((hs[-1] - target) ** 2).sum()
    loss.backward()
    g = torch.zeros(2, 6, 4, dtype=torch.float64)
    g[:, -1] = (hs[-1] - target).detach()
    grads = bptt(rnn, x, g)
    expected = torch.stack([h.grad for h in hs])  # (T, B, H)
    torch.testing.assert_close(grads.h, expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(grads.weight_hh, rnn.weight_hh_l0.grad, rtol=1e-10, atol=1e-14)


def test_bad_shapes_give_clear_errors():
    rnn = RNN(3, 4)
    with pytest.raises(ValueError, match=r"input_size=3, got \(5, 2, 7\)"):
        rnn(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="add a batch axis"):
        rnn(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"h0 must be \(num_layers=1, batch=2, hidden_size=4\), got \(2, 4"):
        rnn(torch.randn(5, 2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="needs at least one time step"):
        rnn(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match=r"grad_outputs must have the output's shape \(5, 2, 4\)"):
        bptt(rnn, torch.randn(5, 2, 3), torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="num_layers=2"):
        RNN.from_torch(nn.RNN(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        RNN.from_torch(nn.RNN(3, 4, nonlinearity="relu"))


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.7])
def test_recurrent_weight_has_the_spectral_radius_asked_for(radius):
    w = recurrent_weight(16, radius, seed=2)
    assert torch.linalg.eigvals(w).abs().max().item() == pytest.approx(radius, rel=1e-9)


def test_gradient_norms_follow_the_spectral_radius_at_rest():
    """With no input the states stay at 0, so dL/dh_{T-k} = (W_hh^T)^k v: norms ~ rho^k."""
    steps = 60
    for radius in (0.8, 1.2):
        norms = gradient_norms_by_lag(radius, steps=steps)
        assert norms.shape == (steps,)
        assert norms[0].item() == pytest.approx(1.0)
        per_step = (norms[-1] / norms[steps // 2]).item() ** (1 / (steps - 1 - steps // 2))
        assert per_step == pytest.approx(radius, rel=0.05)


def test_saturating_inputs_shrink_the_gradient():
    quiet = gradient_norms_by_lag(1.2, steps=40, input_scale=0.0)
    loud = gradient_norms_by_lag(1.2, steps=40, input_scale=1.0)
    assert loud[-1] < 1e-3 * quiet[-1]


def test_next_value_batches_and_model():
    from karpa_lab.data import next_value_batches
    from karpa_lab.models.rnn import NextValue

    series = torch.arange(100, dtype=torch.float32)
    x, y = next_value_batches(series, 8, 5, torch.Generator().manual_seed(0))()
    assert x.shape == (8, 5, 1) and y.shape == (5, 1)
    assert torch.equal(y[:, 0], x[-1, :, 0] + 1), "y is the value right after each window"
    again = next_value_batches(series, 8, 5, torch.Generator().manual_seed(0))()
    assert torch.equal(again[0], x), "the generator decides the batches"
    assert NextValue(hidden=4)(x).shape == (5, 1)
    with pytest.raises(ValueError, match="window"):
        next_value_batches(series, 99, 5, torch.Generator())
    with pytest.raises(ValueError, match="1-D"):
        next_value_batches(series.view(10, 10), 3, 5, torch.Generator())
