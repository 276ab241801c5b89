"""The from-scratch LSTM and GRU cells against nn.LSTMCell, nn.LSTM, nn.GRUCell and nn.GRU (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from karpa_lab.models.lstm import (
    GRUCell,
    LSTMCell,
    chrono_init_,
    lstm_gates_from_torch,
    lstm_sequence,
    lstm_step,
)

TOL = dict(rtol=0, atol=1e-10)  # float64: the from-scratch cells agree with PyTorch far below 1e-6
# (T, B, D, H): random-ish shapes, batch 1, length 1, both at once
SHAPES = [(5, 3, 4, 6), (1, 2, 3, 5), (7, 1, 2, 4), (1, 1, 1, 1), (12, 4, 9, 3)]


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


def bigger_weights(module: nn.Module, scale: float = 1.0) -> nn.Module:
    """Weights uniform in [-scale, scale]: PyTorch's default (1/sqrt(H)) keeps every gate near 0.5, so a
    gate swap could hide; these weights push each gate somewhere else."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-scale, scale)
    return module


# ------------------------------------------------------------------------------------------ LSTM
@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_matches_nn_lstm_cell_step_by_step(T, B, D, H, bias):
    torch.manual_seed(T * 100 + H)
    ref = bigger_weights(nn.LSTMCell(D, H, bias=bias).double())
    cell = LSTMCell.from_torch(ref)
    assert cell.weight_ih.dtype == torch.float64
    x = randn(T, B, D)
    for state in (None, (randn(B, H), randn(B, H))):
        ours, theirs = state, state
        for x_t in x:
            ours = cell(x_t, ours)
            theirs = ref(x_t, theirs)
            torch.testing.assert_close(ours[0], theirs[0], **TOL)
            torch.testing.assert_close(ours[1], theirs[1], **TOL)


@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_sequence_matches_nn_lstm(T, B, D, H, with_state):
    torch.manual_seed(7 * T + B)
    ref = bigger_weights(nn.LSTM(D, H).double())
    cell = LSTMCell.from_torch(ref)
    x = randn(T, B, D)
    state = (randn(1, B, H), randn(1, B, H)) if with_state else None
    out, (h_n, c_n), gates = lstm_sequence(cell, x, None if state is None else (state[0][0], state[1][0]))
    ref_out, (ref_h, ref_c) = ref(x, state)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(h_n, ref_h[0], **TOL)
    torch.testing.assert_close(c_n, ref_c[0], **TOL)
    assert set(gates) == {"i", "f", "g", "o", "c"}
    assert all(v.shape == (T, B, H) for v in gates.values())


def test_recorded_gates_are_pytorchs_gates_in_order_i_f_g_o():
    """The gates from lstm_step are the four row blocks of W_ih, W_hh and the biases, in PyTorch's order."""
    torch.manual_seed(3)
    B, D, H = 4, 3, 5
    ref = bigger_weights(nn.LSTMCell(D, H).double(), 2.0)
    x, h, c = randn(B, D), randn(B, H), randn(B, H)
    h_t, c_t, gates = lstm_step(x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    W_ih, W_hh = ref.weight_ih.chunk(4, dim=0), ref.weight_hh.chunk(4, dim=0)
    b_ih, b_hh = ref.bias_ih.chunk(4), ref.bias_hh.chunk(4)
    for k, name in enumerate("ifgo"):
        a = x @ W_ih[k].T + h @ W_hh[k].T + b_ih[k] + b_hh[k]
        expected = torch.tanh(a) if name == "g" else torch.sigmoid(a)
        torch.testing.assert_close(gates[name], expected, **TOL)
    torch.testing.assert_close(c_t, gates["f"] * c + gates["i"] * gates["g"], **TOL)
    torch.testing.assert_close(h_t, gates["o"] * torch.tanh(c_t), **TOL)
    ref_h, ref_c = ref(x, (h, c))
    torch.testing.assert_close(h_t, ref_h, **TOL)
    torch.testing.assert_close(c_t, ref_c, **TOL)


def test_lstm_cell_gradients_match_nn_lstm_cell():
    torch.manual_seed(4)
    ref = bigger_weights(nn.LSTMCell(3, 4).double())
    cell = LSTMCell.from_torch(ref)
    x = randn(2, 3).requires_grad_()
    h, c = randn(2, 4).requires_grad_(), randn(2, 4).requires_grad_()
    weights = torch.randn(2, 4, dtype=torch.float64)
    ours = torch.autograd.grad(((cell(x, (h, c))[0] + cell(x, (h, c))[1]) * weights).sum(),
                               [x, h, c, *cell.parameters()])
    theirs = torch.autograd.grad(((ref(x, (h, c))[0] + ref(x, (h, c))[1]) * weights).sum(),
                                 [x, h, c, *ref.parameters()])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)


def test_cell_gradient_through_c_is_the_forget_gate():
    """dc_t/dc_{t-1} = diag(f_t): the additive memory path (the constant error carousel when f = 1)."""
    torch.manual_seed(5)
    cell = bigger_weights(LSTMCell(3, 4).double())
    x, h, c = randn(2, 3), randn(2, 4), randn(2, 4)
    (_, _), gates = cell(x, (h, c), return_gates=True)
    jac = torch.autograd.functional.jacobian(lambda c_: cell(x, (h, c_))[1], c)  # (2, 4, 2, 4)
    for b in range(2):
        torch.testing.assert_close(jac[b, :, b, :], torch.diag(gates["f"][b]), **TOL)


def test_float32_and_default_state():
    torch.manual_seed(6)
    ref = nn.LSTMCell(5, 3)
    cell = LSTMCell.from_torch(ref)
    x = torch.randn(4, 5)
    h, c = cell(x)
    ref_h, ref_c = ref(x)
    assert h.dtype == torch.float32 and h.shape == (4, 3)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, ref_c, rtol=1e-5, atol=1e-6)


def test_from_torch_copies_rather_than_shares():
    ref = nn.LSTMCell(2, 3).double()
    cell = LSTMCell.from_torch(ref)
    with torch.no_grad():
        cell.weight_ih.add_(1.0)
    assert not torch.equal(cell.weight_ih, ref.weight_ih)


def test_default_init_is_pytorchs_range():
    H = 16
    cell = LSTMCell(4, H)
    bound = 1 / math.sqrt(H)
    for p in cell.parameters():
        assert p.abs().max() <= bound
    assert cell.weight_ih.shape == (4 * H, 4) and cell.weight_hh.shape == (4 * H, H)


# ------------------------------------------------------------------------------ lstm_gates_from_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("T,B", [(6, 3), (1, 1), (4, 1)])
def test_gates_from_torch_replay_both_layers(batch_first, bias, with_state, T, B):
    torch.manual_seed(T + 10 * B)
    D, H = 3, 4
    lstm = bigger_weights(nn.LSTM(D, H, num_layers=2, bias=bias, batch_first=batch_first).double())
    x = randn(B, T, D) if batch_first else randn(T, B, D)
    state = (randn(2, B, H), randn(2, B, H)) if with_state else None
    out, (h_n, c_n) = lstm(x, state)
    top = out.transpose(0, 1) if batch_first else out  # (T, B, H)
    g1 = lstm_gates_from_torch(lstm, x, layer=1, state=state)
    torch.testing.assert_close(g1["h"], top, **TOL)
    g0 = lstm_gates_from_torch(lstm, x, layer=0, state=state)
    for layer, g in ((0, g0), (1, g1)):
        assert set(g) == {"i", "f", "g", "o", "c", "h"}
        assert all(v.shape == (T, B, H) for v in g.values())
        torch.testing.assert_close(g["h"][-1], h_n[layer], **TOL)
        torch.testing.assert_close(g["c"][-1], c_n[layer], **TOL)
        c_prev = torch.cat([(state[1][layer] if state else torch.zeros(B, H, dtype=torch.float64))[None], g["c"][:-1]])
        torch.testing.assert_close(g["c"], g["f"] * c_prev + g["i"] * g["g"], **TOL)
    # layer 0's h is the input the top layer sees: a one-layer LSTM with layer 0's weights gives it
    bottom = nn.LSTM(D, H, bias=bias, batch_first=batch_first).double()
    bottom.load_state_dict({k: v for k, v in lstm.state_dict().items() if k.endswith("_l0")})
    out0, _ = bottom(x, None if state is None else (state[0][:1], state[1][:1]))
    torch.testing.assert_close(g0["h"], out0.transpose(0, 1) if batch_first else out0, **TOL)


def test_gates_from_torch_float32_leaves_the_lstm_alone():
    torch.manual_seed(8)
    lstm = nn.LSTM(3, 5, batch_first=True)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    x = torch.randn(2, 7, 3)
    gates = lstm_gates_from_torch(lstm, x)
    torch.testing.assert_close(gates["h"].transpose(0, 1), lstm(x)[0], rtol=1e-5, atol=1e-6)
    assert not gates["h"].requires_grad
    assert all(torch.equal(before[k], v) for k, v in lstm.state_dict().items())


# ------------------------------------------------------------------------------------------ GRU
@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_nn_gru_cell(T, B, D, H, bias):
    torch.manual_seed(T * 10 + D)
    ref = bigger_weights(nn.GRUCell(D, H, bias=bias).double())
    cell = GRUCell.from_torch(ref)
    x = randn(T, B, D)
    for h0 in (None, randn(B, H)):
        ours, theirs = h0, h0
        for x_t in x:
            ours, theirs = cell(x_t, ours), ref(x_t, theirs)
            torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize("T,B,D,H", SHAPES)
def test_gru_cell_over_a_sequence_matches_nn_gru(T, B, D, H):
    torch.manual_seed(T + D + H)
    ref = bigger_weights(nn.GRU(D, H).double())
    cell = GRUCell.from_torch(ref)
    x, h = randn(T, B, D), randn(B, H)
    ref_out, ref_h = ref(x, h[None])
    outs = []
    for x_t in x:
        h = cell(x_t, h)
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs), ref_out, **TOL)
    torch.testing.assert_close(h, ref_h[0], **TOL)


def test_gru_gates_are_the_equations():
    """r multiplies (W_hn h + b_hn), after the matrix product; z near 1 keeps the old state."""
    torch.manual_seed(9)
    cell = bigger_weights(GRUCell(3, 4).double(), 2.0)
    x, h = randn(2, 3), randn(2, 4)
    h_t, gates = cell(x, h, return_gates=True)
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    for name, value in (("r", r), ("z", z), ("n", n)):
        torch.testing.assert_close(gates[name], value, **TOL)
    torch.testing.assert_close(h_t, (1 - z) * n + z * h, **TOL)


# ------------------------------------------------------------------------------------------ chrono
@pytest.mark.parametrize("module", [nn.LSTM(3, 8, num_layers=2), nn.LSTMCell(3, 8), LSTMCell(3, 8)])
def test_chrono_init_sets_forget_and_input_biases(module):
    t_max = 50
    chrono_init_(module, t_max, generator=torch.Generator().manual_seed(0))
    H = 8
    suffixes = ["_l0", "_l1"] if isinstance(module, nn.LSTM) else [""]
    for sfx in suffixes:
        b_ih, b_hh = getattr(module, "bias_ih" + sfx), getattr(module, "bias_hh" + sfx)
        b_f = b_ih[H:2 * H]
        assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(t_max - 1))
        assert b_f.std() > 0.1  # spread over the time scales, not one value
        torch.testing.assert_close(b_ih[:H], -b_f)
        assert torch.all(b_hh[:2 * H] == 0)
        # memory time scales 1 / (1 - sigmoid(b_f)) = 1 + e^b_f lie in [2, t_max]
        tau = 1 + b_f.exp()
        assert torch.all(tau >= 2 - 1e-5) and torch.all(tau <= t_max + 1e-4)


def test_chrono_init_refuses_bad_arguments():
    with pytest.raises(ValueError, match="t_max must be >= 2"):
        chrono_init_(nn.LSTM(2, 3), 1)
    with pytest.raises(ValueError, match="bias=True"):
        chrono_init_(nn.LSTM(2, 3, bias=False), 10)
    with pytest.raises(ValueError, match="bias=True"):
        chrono_init_(LSTMCell(2, 3, bias=False), 10)


# ------------------------------------------------------------------------------------------ errors
def test_wrong_shapes_name_expected_and_actual():
    cell = LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input x must be \(batch, 3\), got \(2, 5\)"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"input x must be \(batch, 3\), got \(3,\)"):
        cell(torch.randn(3))
    with pytest.raises(ValueError, match=r"input x must be \(batch, 3\), got \(\)"):
        cell(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"hidden state must be \(batch=2, 4\), got \(2, 3\)"):
        cell(torch.randn(2, 3), (torch.randn(2, 3), torch.randn(2, 3)))
    with pytest.raises(ValueError, match=r"cell state must have the hidden state's shape \(2, 4\), got \(1, 4\)"):
        cell(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(1, 4)))
    with pytest.raises(ValueError, match=r"x must be \(time, batch, 3\), got \(5, 3\)"):
        lstm_sequence(cell, torch.randn(5, 3))
    gru = GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"GRUCell: input x must be \(batch, 3\), got \(2, 2\)"):
        gru(torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"GRUCell: hidden state must be \(batch=2, 4\), got \(4,\)"):
        gru(torch.randn(2, 3), torch.randn(4))


def test_gates_from_torch_refuses_what_it_cannot_replay():
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    with pytest.raises(ValueError, match=r"x must be \(batch, time, 3\), got \(5, 2\)"):
        lstm_gates_from_torch(lstm, torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"x must be \(time, batch, 3\), got \(5, 2, 4\)"):
        lstm_gates_from_torch(nn.LSTM(3, 4), torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\), got 2"):
        lstm_gates_from_torch(lstm, torch.randn(2, 5, 3), layer=2)
    with pytest.raises(ValueError, match=r"h_0 and c_0 must each be \(num_layers=2, batch=2, 4\), got \(1, 2, 4\)"):
        lstm_gates_from_torch(lstm, torch.randn(2, 5, 3), state=(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="uni-directional"):
        lstm_gates_from_torch(nn.LSTM(3, 4, bidirectional=True), torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="without projections"):
        lstm_gates_from_torch(nn.LSTM(3, 4, proj_size=2), torch.randn(5, 2, 3))
