r"""LSTM and GRU cells from scratch, in PyTorch's own weight layout so they can be checked against it.

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), for input
x_t (B, D), previous hidden h_{t-1} (B, H) and cell c_{t-1} (B, H); W_ih (4H, D), W_hh (4H, H),
b_ih and b_hh (4H,) stacked in PyTorch's order [i, f, g, o]:

    [a_i, a_f, a_g, a_o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (B, 4H), split in four
    i_t = sigmoid(a_i)    input gate      (B, H)   how much of the candidate to write
    f_t = sigmoid(a_f)    forget gate     (B, H)   how much of the old cell to keep
    g_t = tanh(a_g)       cell candidate  (B, H)   what to write (tanh, not a sigmoid: it can be negative)
    o_t = sigmoid(a_o)    output gate     (B, H)   how much of the cell to show
    c_t = f_t * c_{t-1} + i_t * g_t                (B, H)   the additive path that carries memory
    h_t = o_t * tanh(c_t)                          (B, H)

GRU (Cho et al. 2014) in PyTorch's convention, gates stacked [r, z, n]:

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)       reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)       update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))  candidate (r multiplies *after* W_hn)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                      z near 1 keeps the old state
"""

from __future__ import annotations

import math

import torch
from torch import nn

LSTM_GATES = ("i", "f", "g", "o")


def _check_input(name: str, x: torch.Tensor, input_size: int) -> None:
    if x.dim() != 2 or x.shape[1] != input_size:
        raise ValueError(f"{name}: input x must be (batch, {input_size}), got {tuple(x.shape)}")


def _check_step(name: str, x: torch.Tensor, h: torch.Tensor, input_size: int, hidden_size: int) -> None:
    _check_input(name, x, input_size)
    if h.shape != (x.shape[0], hidden_size):
        raise ValueError(f"{name}: hidden state must be (batch={x.shape[0]}, {hidden_size}), got {tuple(h.shape)}")


def lstm_step(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
    weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None, bias_hh: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One LSTM step. Returns ``h_t``, ``c_t`` and the gates ``{"i", "f", "g", "o"}``, each (B, H)."""
    a = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        a = a + bias_ih + bias_hh
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    return h_next, c_next, {"i": i, "f": f, "g": g, "o": o}


class LSTMCell(nn.Module):
    """A from-scratch ``nn.LSTMCell``: same parameters, same names, same numbers (tested to 1e-6 in float64)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every weight uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None, return_gates: bool = False
    ):
        """``x`` (B, D) and optional ``(h, c)`` (B, H) each -> ``(h, c)``, plus the gates when asked."""
        _check_input("LSTMCell", x, self.input_size)
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        _check_step("LSTMCell", x, h, self.input_size, self.hidden_size)
        if c.shape != h.shape:
            raise ValueError(
                f"LSTMCell: cell state must have the hidden state's shape {tuple(h.shape)}, got {tuple(c.shape)}"
            )
        h, c, gates = lstm_step(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return ((h, c), gates) if return_gates else (h, c)

    @classmethod
    def from_torch(cls, ref: nn.LSTMCell | nn.LSTM) -> LSTMCell:
        """A copy of a PyTorch ``LSTMCell`` (or the first layer of an ``LSTM``) with the same weights."""
        suffix = "" if isinstance(ref, nn.LSTMCell) else "_l0"
        cell = cls(ref.input_size, ref.hidden_size, bias=ref.bias).to(getattr(ref, "weight_ih" + suffix))
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if ref.bias else ()):
                getattr(cell, name).copy_(getattr(ref, name + suffix))
        return cell


def lstm_sequence(
    cell: LSTMCell, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Run ``cell`` over ``x`` (T, B, D), time first as in ``nn.LSTM``.

    Returns the outputs ``h_1..h_T`` (T, B, H), the final ``(h_T, c_T)``, and every gate and the cell
    state over time: ``{"i", "f", "g", "o", "c"}`` each (T, B, H), for plotting what the memory does.
    """
    if x.dim() != 3 or x.shape[2] != cell.input_size:
        raise ValueError(f"lstm_sequence: x must be (time, batch, {cell.input_size}), got {tuple(x.shape)}")
    outputs, record = [], {k: [] for k in (*LSTM_GATES, "c")}
    for x_t in x:
        state, gates = cell(x_t, state, return_gates=True)
        outputs.append(state[0])
        for k in LSTM_GATES:
            record[k].append(gates[k])
        record["c"].append(state[1])
    return torch.stack(outputs), state, {k: torch.stack(v) for k, v in record.items()}


def lstm_gates_from_torch(
    lstm: nn.LSTM, x: torch.Tensor, layer: int = 0, state: tuple[torch.Tensor, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Gate activations of one layer of a trained ``nn.LSTM`` (batch_first or not) on input ``x``.

    ``nn.LSTM`` does not expose its gates; this replays layer ``layer`` step by step with the same
    weights (the input to layer ``l > 0`` is layer ``l - 1``'s output, computed by ``nn.LSTM`` itself).
    Returns ``{"i", "f", "g", "o", "c", "h"}`` each (T, B, H), time first.
    """
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("lstm_gates_from_torch supports uni-directional LSTMs without projections")
    if not 0 <= layer < lstm.num_layers:
        raise ValueError(f"lstm_gates_from_torch: layer must be in [0, {lstm.num_layers}), got {layer}")
    if x.dim() != 3 or x.shape[2] != lstm.input_size:
        layout = "batch, time" if lstm.batch_first else "time, batch"
        raise ValueError(f"lstm_gates_from_torch: x must be ({layout}, {lstm.input_size}), got {tuple(x.shape)}")
    batch = x.shape[0] if lstm.batch_first else x.shape[1]
    if state is not None and any(s.shape != (lstm.num_layers, batch, lstm.hidden_size) for s in state):
        raise ValueError(
            f"lstm_gates_from_torch: h_0 and c_0 must each be (num_layers={lstm.num_layers}, batch={batch}, "
            f"{lstm.hidden_size}), got {tuple(state[0].shape)} and {tuple(state[1].shape)}"
        )
    with torch.no_grad():
        seq = x.transpose(0, 1) if lstm.batch_first else x
        if layer > 0:  # the layers below, with their biases (or none) and their initial states
            below = nn.LSTM(lstm.input_size, lstm.hidden_size, layer, bias=lstm.bias).to(seq)
            below.load_state_dict({k: v for k, v in lstm.state_dict().items() if int(k.rsplit("_l", 1)[1]) < layer})
            seq, _ = below(seq, None if state is None else (state[0][:layer], state[1][:layer]))
        cell = LSTMCell(seq.shape[2], lstm.hidden_size, bias=lstm.bias).to(seq)
        for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l{layer}"))
        if state is not None:
            state = (state[0][layer], state[1][layer])
        outputs, _, record = lstm_sequence(cell, seq, state)
    return {**record, "h": outputs}


def chrono_init_(
    module: nn.LSTM | nn.LSTMCell | LSTMCell, t_max: int, generator: torch.Generator | None = None
) -> None:
    r"""Chrono initialisation (Tallec & Ollivier 2018) of an LSTM's gate biases, in place.

    With x_t = 0 and h_{t-1} = 0 a unit keeps f = sigmoid(b_f) of its cell per step, so a memory
    lasts about tau = 1 / (1 - f) = 1 + e^{b_f} steps. Chrono draws tau uniformly in [2, t_max] per unit:

        b_f = log(u),  u ~ U[1, t_max - 1]        b_i = -b_f

    (in ``bias_ih``; the i and f parts of ``bias_hh`` set to 0), so the units span the time scales of a
    task whose dependencies reach ``t_max`` steps back, and a unit that remembers long writes little.
    PyTorch's default, b ~ U[-1/sqrt(H), 1/sqrt(H)], gives f ~ 0.5: a memory of about two steps.
    Every layer of an ``nn.LSTM`` is set.
    """
    if t_max < 2:
        raise ValueError(f"chrono_init_: t_max must be >= 2 (the longest dependency, in steps), got {t_max}")
    suffixes = [f"_l{k}" for k in range(module.num_layers)] if isinstance(module, nn.LSTM) else [""]
    biases = [(getattr(module, "bias_ih" + sfx, None), getattr(module, "bias_hh" + sfx, None)) for sfx in suffixes]
    if any(b is None for pair in biases for b in pair):
        raise ValueError("chrono_init_ sets gate biases: the LSTM must have bias=True")
    H = module.hidden_size
    with torch.no_grad():
        for b_ih, b_hh in biases:
            b_f = torch.empty(H, dtype=torch.float64).uniform_(1, t_max - 1, generator=generator).log()
            b_ih[H:2 * H] = b_f.to(b_ih)
            b_ih[:H] = -b_f.to(b_ih)
            b_hh[:2 * H] = 0


class GRUCell(nn.Module):
    """A from-scratch ``nn.GRUCell`` in PyTorch's layout [r, z, n] (tested to 1e-6 in float64)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None, return_gates: bool = False):
        """``x`` (B, D), ``h`` (B, H) -> ``h_t`` (B, H), plus ``{"r", "z", "n"}`` when asked."""
        _check_input("GRUCell", x, self.input_size)
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        _check_step("GRUCell", x, h, self.input_size, self.hidden_size)
        gi = x @ self.weight_ih.T
        gh = h @ self.weight_hh.T
        if self.bias_ih is not None:
            gi, gh = gi + self.bias_ih, gh + self.bias_hh
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h_next = (1 - z) * n + z * h
        return (h_next, {"r": r, "z": z, "n": n}) if return_gates else h_next

    @classmethod
    def from_torch(cls, ref: nn.GRUCell | nn.GRU) -> GRUCell:
        """A copy of a PyTorch ``GRUCell`` (or the first layer of a ``GRU``) with the same weights."""
        suffix = "" if isinstance(ref, nn.GRUCell) else "_l0"
        cell = cls(ref.input_size, ref.hidden_size, bias=ref.bias).to(getattr(ref, "weight_ih" + suffix))
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if ref.bias else ()):
                getattr(cell, name).copy_(getattr(ref, name + suffix))
        return cell
