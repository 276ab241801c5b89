r"""Friendly checks for the labs: run them yourself, then read what they say.

Each check prints one line starting with ``✓`` when your code is right, or raises an ``AssertionError``
whose message says what is wrong in the lab's own terms: which tensor, which shape (and what each axis
means), how far off and where, and, for the LSTM, which gate. The checks never return a value, because
in a graded notebook cell a returned number would be read by nbgrader as a partial score.

    from karpa_lab.grading import check_close, check_lstm_cell
    check_close("h_next", h_next, expected, atol=1e-6, dims="(batch, hidden)")
    check_lstm_cell(lstm_cell)      # your function against nn.LSTMCell, gate by gate

The teacher's hidden tests use the same ideas on inputs you do not see.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(flat % size)
        flat //= size
    return tuple(reversed(out))


def check_tensor(name: str, actual, shape: Iterable[int], dims: str | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """Raise unless ``actual`` is a tensor of ``shape`` (and ``dtype``); ``dims`` names the axes for the message."""
    shape = tuple(shape)
    meaning = f" = {dims}" if dims else ""
    if not isinstance(actual, torch.Tensor):
        hint = " (did you forget a `return`?)" if actual is None else ""
        raise AssertionError(f"{name} should be a torch.Tensor of shape {shape}{meaning}, "
                             f"got {type(actual).__name__}{hint}")
    got = tuple(actual.shape)
    if got != shape:
        if sorted(got) == sorted(shape):
            hint = ": the right sizes in the wrong order (a transpose, or time and batch swapped?)"
        elif math.prod(got) == math.prod(shape):
            hint = ": the right number of entries, so look at your reshape/view"
        elif len(got) != len(shape):
            hint = f": {len(got)} axes instead of {len(shape)}"
        else:
            hint = ""
        raise AssertionError(f"{name} has shape {got} but should have shape {shape}{meaning}{hint}")
    if dtype is not None and actual.dtype != dtype:
        raise AssertionError(f"{name} has dtype {actual.dtype} but the inputs are {dtype}: make new tensors "
                             "like the inputs, e.g. x.new_zeros(...) or torch.zeros(..., dtype=x.dtype)")


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference, in float64 (inf when either side has a NaN the other lacks)."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.numel() == 0:
        return 0.0
    err = (a - e).abs()
    err[torch.isnan(a) & torch.isnan(e)] = 0.0
    return float(err.nan_to_num(nan=math.inf).max())


def _tolerance(atol: float, rtol: float) -> str:
    if not rtol:
        return f"{atol:g}"
    return f"{rtol:g} × |expected|" if not atol else f"{atol:g} + {rtol:g} × |expected|"


def _mismatch(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> str | None:
    """None when close; otherwise one line saying how far off, where, and how many entries."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    nan = torch.isnan(a) & ~torch.isnan(e)
    if nan.any():
        where = _index(int(nan.flatten().nonzero()[0]), tuple(a.shape))
        return (f"{name} has NaN at index {where} (expected {float(e[where]):.6g}): an overflow, "
                "e.g. exp of a large number, or 0/0")
    err = (a - e).abs().nan_to_num(nan=0.0, posinf=math.inf)
    excess = err - (atol + rtol * e.abs().nan_to_num(nan=0.0))
    if a.numel() == 0 or float(excess.max()) <= 0:
        return None
    where = _index(int(excess.flatten().argmax()), tuple(a.shape))
    n_bad = int((excess > 0).sum())
    line = (f"{name} is off by up to {float(err.max()):.3g}; at index {where} yours is {float(a[where]):.6g}, "
            f"expected {float(e[where]):.6g} (tolerance {_tolerance(atol, rtol)}); "
            f"{n_bad} of {a.numel()} entries are outside it")
    if float((a + e).abs().max()) <= atol + rtol * float(e.abs().max()):
        line += ". It is the expected value with the sign flipped"
    return line


def check_close(name: str, actual, expected, atol: float = 1e-6, rtol: float = 0.0, dims: str | None = None) -> None:
    """Raise unless ``actual`` has ``expected``'s shape and every entry is within ``atol + rtol * |expected|``.

    The message names the tensor, its shape (with ``dims``, e.g. ``"(batch, hidden)"``), the largest error,
    where it is (yours against the expected value) and how many entries are off.
    """
    expected = torch.as_tensor(expected)
    check_tensor(name, actual, expected.shape, dims=dims)
    problem = _mismatch(name, actual, expected, atol, rtol)
    if problem:
        raise AssertionError(problem)
    print(f"✓ {name} matches (max abs error {max_error(actual, expected):.1e}, tolerance {_tolerance(atol, rtol)})")


def code_names(code) -> set[str]:
    """Every global and attribute name a code object uses, nested functions and lambdas included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= code_names(const)
    return names


def check_no_calls(fn: Callable, forbidden: Iterable[str], why: str) -> None:
    """Raise if the body of ``fn`` (nested functions included) names any of ``forbidden``."""
    used = sorted(set(forbidden) & code_names(fn.__code__))
    if used:
        raise AssertionError(f"{fn.__name__} uses {', '.join(used)}: {why}")


def _call(fn: Callable, what: str, *args):
    """Call the learner's ``fn``; turn an unexpected error into one that says what the inputs were."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise AssertionError(f"{fn.__name__} raised {type(err).__name__}: {err}\n  called with {what}") from err


# ---------------------------------------------------------------- LSTM with a projection (lab 01)

LSTM_GATES = ("i", "f", "g", "o")
_SHUT, _OPEN = -40.0, 40.0  # a pre-activation bias (in each of b_ih and b_hh) that pins σ or tanh at 0/-1 or 1
_FORBIDDEN_LSTM = ("LSTMCell", "LSTM", "lstm_step", "lstm_sequence", "_VF", "karpa_lab")
_LSTM_WEIGHTS = ("weight_ih", "weight_hh", "weight_hr", "bias_ih", "bias_hh")  # the order of the lab's arguments


def random_lstm(input_size: int, hidden_size: int, proj_size: int, seed: int = 0, bias: bool = True,
                dtype: torch.dtype = torch.float64) -> nn.LSTM:
    """A one-layer ``nn.LSTM`` with a projection (``proj_size < hidden_size``), weights uniform in [-1, 1] from
    ``seed`` (large enough that every gate matters)."""
    gen = torch.Generator().manual_seed(seed)
    lstm = nn.LSTM(input_size, hidden_size, proj_size=proj_size, bias=bias).to(dtype)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 2 - 1)
    return lstm


def _params(lstm: nn.LSTM) -> tuple:
    """weight_ih (4H, D), weight_hh (4H, P), weight_hr (P, H), bias_ih and bias_hh (4H,) or None."""
    return tuple(getattr(lstm, name + "_l0", None) for name in _LSTM_WEIGHTS)


def _one_step(lstm: nn.LSTM, x, h, c) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.LSTM``'s (h_next (B, P), c_next (B, H)) after one step from (h, c)."""
    with torch.no_grad():
        _, (h_next, c_next) = lstm(x[None], (h[None], c[None]))
    return h_next[0], c_next[0]


def _pin_gates(ref: nn.LSTM, pinned: dict[str, float]) -> nn.LSTM:
    """A copy of ``ref`` where each gate in ``pinned`` has zero weights and a huge bias: σ/tanh saturate."""
    lstm = copy.deepcopy(ref)
    H = lstm.hidden_size
    with torch.no_grad():
        for gate, value in pinned.items():
            rows = slice(LSTM_GATES.index(gate) * H, (LSTM_GATES.index(gate) + 1) * H)
            for p in (lstm.weight_ih_l0, lstm.weight_hh_l0):
                p[rows] = 0.0
            for p in (lstm.bias_ih_l0, lstm.bias_hh_l0):
                p[rows] = value
    return lstm


def _shapes(x, h, c, lstm) -> str:
    w_ih, w_hh, w_hr = _params(lstm)[:3]
    return (f"x {tuple(x.shape)}, h {tuple(h.shape)}, c {tuple(c.shape)}, weight_ih {tuple(w_ih.shape)}, "
            f"weight_hh {tuple(w_hh.shape)}, weight_hr {tuple(w_hr.shape)}")


def _run_cell(fn: Callable, lstm: nn.LSTM, x, h, c):
    """The learner's output and nn.LSTM's on the same inputs (the inputs are passed as copies)."""
    out = _call(fn, _shapes(x, h, c, lstm), x.clone(), h.clone(), c.clone(),
                *(p.detach() if p is not None else None for p in _params(lstm)))
    return out, _one_step(lstm, x, h, c)


# Each diagnosis pins some gates so that one unknown is left in c_t (or in h_t for the output gate).
_GATE_TESTS = (
    ("f", "forget gate f", {"i": _SHUT}, 1, "with the input gate shut (i = 0), c_t must be f ⊙ c_{t-1}"),
    ("i", "input gate i", {"f": _SHUT, "g": _OPEN}, 1, "with f = 0 and g = 1, c_t must be i"),
    ("g", "candidate g", {"f": _SHUT, "i": _OPEN}, 1, "with f = 0 and i = 1, c_t must be g = tanh(a_g) (tanh, not σ)"),
    ("o", "output gate o", {"f": _SHUT, "i": _OPEN, "g": _OPEN}, 0,
     "with c_t = 1, h_t must be (o ⊙ tanh(1)) @ weight_hr.T: h_t = (o ⊙ tanh(c_t)) @ weight_hr.T"),
)


def _gate_report(fn: Callable, ref: nn.LSTM, x, h, c, atol: float) -> list[str]:
    H = ref.hidden_size
    lines = []
    for gate, title, pinned, which, rule in _GATE_TESTS:
        (out, expected) = _run_cell(fn, _pin_gates(ref, pinned), x, h, c)
        k = LSTM_GATES.index(gate)
        err = max_error(out[which], expected[which])
        rows = f"rows {k * H}:{(k + 1) * H} (block {k} of [i, f, g, o]) of the pre-activations"
        if err <= atol:
            lines.append(f"  ✓ {title}")
            continue
        lines.append(f"  ✗ {title}: {rule}; off by {err:.3g}. {gate} uses {rows}")
        if gate == "f":
            lines.append("  (the other gates are tested with f pinned at 0, so fix f first)")
            break
    if sum(line.startswith("  ✗") for line in lines) >= 2:
        lines.append("  Several gates wrong at once: check the order of the four blocks, PyTorch stacks [i, f, g, o].")
    return lines


def _term_report(fn: Callable, ref: nn.LSTM, x, h, c, atol: float) -> list[str]:
    """When every gate passes alone, find the term that breaks the full step: the biases, x or h."""
    no_bias = copy.deepcopy(ref)
    with torch.no_grad():
        no_bias.bias_ih_l0.zero_()
        no_bias.bias_hh_l0.zero_()
    trials = (
        (no_bias, x, h, "with both biases at zero: add b_ih and b_hh (each (4H,)) to the pre-activations"),
        (ref, x, torch.zeros_like(h), "with h_{t-1} = 0: look at the recurrent term h_{t-1} (B, P) @ W_hh.T (P, 4H)"),
        (ref, torch.zeros_like(x), h, "with x_t = 0: look at the input term x_t (B, D) @ W_ih.T (D, 4H)"),
    )
    for lstm, xx, hh, hint in trials:
        out, expected = _run_cell(fn, lstm, xx, hh, c)
        if max(max_error(out[0], expected[0]), max_error(out[1], expected[1])) <= atol:
            return [f"  Every gate is right {hint}."]
    return []


def _check_state(out, B: int, H: int, P: int, fn_name: str) -> None:
    """Raise unless ``out`` is a pair (h_next (B, P), c_next (B, H)) of float64 tensors."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise AssertionError(f"{fn_name} should return a pair (h_next, c_next), got {type(out).__name__}"
                             + (f" of length {len(out)}" if isinstance(out, tuple | list) else ""))
    if isinstance(out[0], torch.Tensor) and tuple(out[0].shape) == (B, H) and H != P:
        raise AssertionError(f"h_next has shape {(B, H)} = (batch, hidden_size): that is o ⊙ tanh(c_t) before the "
                             f"projection. Project it: h_t = (o ⊙ tanh(c_t)) @ weight_hr.T, (batch, proj_size) = "
                             f"{(B, P)}")
    check_tensor("h_next", out[0], (B, P), dims="(batch, proj_size)", dtype=torch.float64)
    check_tensor("c_next", out[1], (B, H), dims="(batch, hidden_size)", dtype=torch.float64)


def check_lstm_cell(fn: Callable, input_size: int = 5, hidden_size: int = 4, proj_size: int = 2, batch: int = 3,
                    seed: int = 0, atol: float = 1e-6) -> None:
    """Compare ``fn(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih, bias_hh) -> (h_next, c_next)`` with one
    step of ``nn.LSTM(..., proj_size=P)``, the LSTM with a projection.

    Float64 inputs x (B, D), h (B, P) and c (B, H); weights in PyTorch's layout, gates stacked [i, f, g, o]:
    weight_ih (4H, D), weight_hh (4H, P), weight_hr (P, H). On a mismatch the message names the tensor and,
    by pinning the other gates open or shut so that one gate alone decides c_t (or h_t), which gate is wrong;
    then which term (biases, x or h) if none is, or the projection when c_next is right.
    """
    check_no_calls(fn, _FORBIDDEN_LSTM, "this lab asks you to write the gate equations yourself")
    B, D, H, P = batch, input_size, hidden_size, proj_size
    ref = random_lstm(D, H, P, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x, h, c = (torch.randn(B, n, generator=gen, dtype=torch.float64) for n in (D, P, H))
    copies = (x.clone(), h.clone(), c.clone())
    out = _call(fn, _shapes(x, h, c, ref), x, h, c, *(p.detach() for p in _params(ref)))
    if any(not torch.equal(a, b) for a, b in zip((x, h, c), copies)):
        raise AssertionError(f"{fn.__name__} changed its inputs in place (e.g. c *= f or c.mul_(f)): "
                             "compute c_next and h_next as new tensors")
    _check_state(out, B, H, P, fn.__name__)
    expected = _one_step(ref, x, h, c)
    problems = [p for p in (_mismatch(n, a, e, atol, 0.0) for n, a, e in zip(("h_next", "c_next"), out, expected)) if p]
    shape = f"B={B}, D={D}, H={H}, P={P}"
    if not problems:
        err = max(max_error(a, e) for a, e in zip(out, expected))
        print(f"✓ {fn.__name__} matches nn.LSTM with proj_size ({shape}; max abs error {err:.1e})")
        return
    report = [f"{fn.__name__} does not match nn.LSTM with proj_size ({shape}, float64):"]
    report += [f"  {p}" for p in problems]
    if len(problems) == 1 and problems[0].startswith("h_next"):
        report.append("  c_next matches, so the gates and the cell are right: h_t = (o ⊙ tanh(c_t)) @ weight_hr.T, "
                      "the output gate times tanh of the new cell (B, H), then the projection to (B, P)")
    term = _term_report(fn, ref, x, h, c, atol)
    if term:
        report += term
    else:
        report.append("Which gate? Pinning the other gates open or shut to test one at a time:")
        report += _gate_report(fn, ref, x, h, c, atol)
    raise AssertionError("\n".join(report))


def _sequence_hint(outputs, expected, t: int, given: bool, atol: float) -> str:
    """What it means that the outputs first go wrong at step ``t``."""
    if max_error(outputs.flip(0), expected) <= atol:
        return "your outputs are in reverse time order: outputs[t] must be h after step t"
    if t == 0 and not given:
        return ("already step 0 is off: with state=None start from zeros, h_0 (B, P) and c_0 (B, H); "
                "then check your lstm_cell with check_lstm_cell")
    if t == 0:
        return "step 0 is off only when a state is given: start from the (h_0, c_0) you are passed"
    done = "step 0 matches" if t == 1 else f"steps 0 to {t - 1} match"
    return f"{done} and step {t} does not: feed the (h, c) returned by step t-1 into step t (both of them)"


def _run_sequence(fn: Callable, x: torch.Tensor, state, label: str, ref: nn.LSTM):
    """The learner's sequence from ``state`` (copies of the inputs); an error says what the state should be."""
    try:
        return fn(x.clone(), None if state is None else tuple(s.clone() for s in state),
                  *(p.detach() for p in _params(ref)))
    except NotImplementedError:
        raise
    except Exception as err:
        hint = ("start from h_0 = zeros (B, P) and c_0 = zeros (B, H), two sizes" if state is None else
                "h_0 is (B, P) and c_0 is (B, H)")
        raise AssertionError(f"{fn.__name__} raised {type(err).__name__} with {label} ({hint}): {err}\n  called with "
                             f"x {tuple(x.shape)} = (time, batch, input_size), H={ref.hidden_size}, "
                             f"P={ref.proj_size}") from err


def check_lstm_sequence(fn: Callable, input_size: int = 3, hidden_size: int = 4, proj_size: int = 2, batch: int = 2,
                        steps: int = 6, seed: int = 0, atol: float = 1e-6) -> None:
    """Compare ``fn(x, state, weight_ih, weight_hh, weight_hr, bias_ih, bias_hh) -> (outputs, (h_T, c_T))`` with
    ``nn.LSTM(..., proj_size=P)``.

    x is (T, B, D), time first; ``state`` is None (zeros) or ``(h_0, c_0)``, h_0 (B, P) and c_0 (B, H);
    outputs is (T, B, P). On a mismatch the message says at which time step your outputs first go wrong,
    and what that suggests.
    """
    check_no_calls(fn, _FORBIDDEN_LSTM, "run your own lstm_cell over time, step by step")
    T, B, D, H, P = steps, batch, input_size, hidden_size, proj_size
    ref = random_lstm(D, H, P, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(T, B, D, generator=gen, dtype=torch.float64)
    h0, c0 = (torch.randn(B, n, generator=gen, dtype=torch.float64) for n in (P, H))
    for state, label in ((None, "state=None"), ((h0, c0), "a given (h_0, c_0)")):
        out = _run_sequence(fn, x, state, label, ref)
        if not isinstance(out, tuple | list) or len(out) != 2 or not isinstance(out[1], tuple | list) \
                or len(out[1]) != 2:
            raise AssertionError(f"{fn.__name__} should return (outputs, (h_T, c_T)), got {type(out).__name__}")
        outputs, (h_T, c_T) = out
        check_tensor("outputs", outputs, (T, B, P), dims="(time, batch, proj_size)", dtype=torch.float64)
        check_tensor("h_T", h_T, (B, P), dims="(batch, proj_size)")
        check_tensor("c_T", c_T, (B, H), dims="(batch, hidden_size)")
        with torch.no_grad():
            exp_out, (exp_h, exp_c) = ref(x, None if state is None else (h0[None], c0[None]))
        bad = [t for t in range(T) if max_error(outputs[t], exp_out[t]) > atol]
        if bad:
            t = bad[0]
            head = f"{fn.__name__} does not match nn.LSTM with proj_size (T={T}, B={B}, D={D}, H={H}, P={P}), {label}:"
            line = _mismatch(f"outputs[{t}]", outputs[t], exp_out[t], atol, 0.0)
            raise AssertionError(f"{head}\n  {line}\n  {_sequence_hint(outputs, exp_out, t, state is not None, atol)}")
        for name, a, e in (("h_T", h_T, exp_h[0]), ("c_T", c_T, exp_c[0])):
            problem = _mismatch(name, a, e, atol, 0.0)
            if problem:
                raise AssertionError(f"{problem}\n  (with {label}) return the state after the last step, "
                                     "h_T equal to outputs[-1]")
    print(f"✓ {fn.__name__} matches nn.LSTM with proj_size (T={T}, B={B}, D={D}, H={H}, P={P}; with state=None and "
          "a given state)")


# ---------------------------------------------------------------- attention with linear biases (lab 03)

def _additive(bias, mask) -> torch.Tensor | None:
    """One float mask added to the scores: the bias (or 0) where the mask allows, -inf where it blocks."""
    if mask is None:
        return bias
    base = torch.zeros((), dtype=torch.float64) if bias is None else bias
    return base.expand(torch.broadcast_shapes(base.shape, mask.shape)).masked_fill(~mask, float("-inf"))


def _sdpa(q, k, v, attn_mask=None, scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's reference attention, which also returns the weights: softmax(q k^T * scale + attn_mask) v."""
    if attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype).expand(*q.shape[:-2], q.shape[-2], k.shape[-2])
    out, weights = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=attn_mask, scale=scale)
    return out, weights


def _over_queries(q, k, v, attn_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """The mistake of a softmax over the queries (dim=-2) instead of the keys."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + (0.0 if attn_mask is None else attn_mask)
    weights = torch.softmax(scores, dim=-2)
    return weights @ v, weights


def _first_match(candidates: Iterable[tuple[str, tuple]], got: tuple, atol: float) -> str | None:
    for hint, want in candidates:
        if all(a.shape == b.shape and max_error(a, b) <= atol for a, b in zip(got, want)):
            return hint
    return None


def _attention_mistakes(q, k, v, bias, mask) -> list[tuple[str, tuple]]:
    """What the usual mistakes compute, for the messages."""
    d_k = q.shape[-1]
    both = _additive(bias, mask)
    found = [
        ("the scores are not scaled: divide q k^T by sqrt(d_k)", _sdpa(q, k, v, both, scale=1.0)),
        ("the scores are divided by d_k: divide by sqrt(d_k)", _sdpa(q, k, v, both, scale=1 / d_k)),
        ("the softmax runs over the queries: take it over the keys, dim=-1, so each row sums to 1",
         _over_queries(q, k, v, both)),
    ]
    if bias is not None:
        found += [
            ("the bias is left out: add it to the scores before the softmax",
             _sdpa(q, k, v, _additive(None, mask))),
            ("the bias is subtracted: add it", _sdpa(q, k, v, _additive(-bias, mask))),
            ("the bias is divided by sqrt(d_k) with q k^T: scale q k^T first, then add the bias",
             _sdpa(q, k, v, _additive(bias / math.sqrt(d_k), mask))),
        ]
    if mask is not None:
        raw = q @ k.transpose(-2, -1) / math.sqrt(d_k) + (0.0 if bias is None else bias)
        found += [
            ("the mask is inverted: True means *may attend*, so block where it is False (~mask)",
             _sdpa(q, k, v, _additive(bias, ~mask))),
            ("blocked scores are set to 0, and exp(0) = 1 still counts: set them to -inf before the softmax",
             _sdpa(q, k, v, torch.where(mask, 0.0 if bias is None else bias, -raw), scale=None)),
            ("the mask is ignored", _sdpa(q, k, v, bias)),
        ]
    return found


def check_attention(fn: Callable, batch: tuple[int, ...] = (2, 3), L: int = 4, S: int = 6, d_k: int = 5,
                    d_v: int = 3, seed: int = 0, atol: float = 1e-6) -> None:
    """Compare ``fn(q, k, v, bias=None, mask=None) -> (out, weights)`` with scaled dot-product attention whose
    scores get an additive ``bias`` before the softmax.

    q (..., L, d_k), k (..., S, d_k), v (..., S, d_v) in float64; the float bias (..., L, S) is added to
    q k^T / sqrt(d_k); the boolean mask is True where a query may attend to a key (``F.scaled_dot_product_
    attention``'s convention). Checked with neither, each, and both; on a mismatch the message says which
    usual mistake your numbers match (no 1/sqrt(d_k), the bias scaled too, the mask inverted, ...).
    """
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, L, d_k, generator=gen, dtype=torch.float64)
    k = torch.randn(*batch, S, d_k, generator=gen, dtype=torch.float64)
    v = torch.randn(*batch, S, d_v, generator=gen, dtype=torch.float64)
    bias = 2 * torch.randn(*batch, L, S, generator=gen, dtype=torch.float64)
    mask = torch.rand(*batch, L, S, generator=gen) < 0.6
    mask[..., -1] = False  # every query loses a key (when it has two) and keeps one
    mask[..., 0] = True
    d = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} = (..., L, d_k), (..., S, d_k), (..., S, d_v)"
    cases = ((None, None, "without a bias or a mask"), (bias, None, f"with a float bias {tuple(bias.shape)}"),
             (None, mask, f"with a boolean mask {tuple(mask.shape)}"), (bias, mask, "with a bias and a mask"))
    for b, m, label in cases:
        out = _call(fn, f"{d}, {label}", q, k, v, b, m)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AssertionError(f"{fn.__name__} should return the pair (out, weights), got {type(out).__name__}")
        check_tensor("out", out[0], (*batch, L, d_v), dims="(..., L, d_v)")
        check_tensor("weights", out[1], (*batch, L, S), dims="(..., L, S): one row per query, one column per key")
        want = _sdpa(q, k, v, _additive(b, m))
        problems = [p for p in (_mismatch(n, a, e, atol, 0.0) for n, a, e in zip(("out", "weights"), out, want)) if p]
        if not problems:
            continue
        hint = _first_match(_attention_mistakes(q, k, v, b, m), out, atol)
        if hint is None and _mismatch("weights", out[1], want[1], atol, 0.0) is None:
            hint = "the weights are right but out is not: out = weights @ v"
        recipe = ("scores = q @ k.transpose(-2, -1) / sqrt(d_k) + bias, -inf where the mask is False; "
                  "weights = softmax(scores, dim=-1); out = weights @ v")
        head = f"{fn.__name__} does not match scaled dot-product attention {label}"
        raise AssertionError("\n".join([f"{head}. Your numbers match this mistake: {hint}." if hint else
                                        f"{head}: {recipe}"] + [f"  {p}" for p in problems]))
    print(f"✓ {fn.__name__} matches scaled dot-product attention (batch {batch}, L={L}, S={S}, d_k={d_k}, d_v={d_v}; "
          "with and without a bias and a mask)")


def _mha_params(d_model: int, n_heads: int, seed: int) -> tuple[nn.MultiheadAttention, tuple]:
    gen = torch.Generator().manual_seed(seed)
    ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True).double()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / d_model ** 0.5)
    params = (ref.in_proj_weight.detach(), ref.in_proj_bias.detach(), ref.out_proj.weight.detach(),
              ref.out_proj.bias.detach())
    return ref, params


def _self_attention(x, n_heads, w_in, b_in, w_out, b_out, attn_mask=None, split="right", scale_by=None,
                    project=True):
    """Multi-head self-attention written out around PyTorch's attention, with knobs for the usual mistakes."""
    B, T, D = x.shape
    d_h = D // n_heads
    q, k, v = (x @ w_in.T + b_in).chunk(3, dim=-1)
    if split == "right":
        q, k, v = (t.view(B, T, n_heads, d_h).transpose(1, 2) for t in (q, k, v))
    else:
        q, k, v = (t.reshape(B, n_heads, T, d_h) for t in (q, k, v))
    out, _ = _sdpa(q, k, v, attn_mask, scale=None if scale_by is None else scale_by ** -0.5)
    out = out.transpose(1, 2).reshape(B, T, D) if split == "right" else out.reshape(B, T, D)
    return out @ w_out.T + b_out if project else out


def _layer_mistakes(x, n_heads, params, bias, one_head_bias) -> list[tuple[str, tuple]]:
    """What the usual mistakes of a multi-head layer with per-head biases (h, T, T) compute (``one_head_bias``:
    the biases of a single head, (1, T, T))."""
    d_model = x.shape[-1]
    d_h = d_model // n_heads
    causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
    return [
        ("the linear biases are left out, only the causal mask is there: add alibi_bias to every head's scores",
         (_self_attention(x, n_heads, *params, _additive(None, causal)),)),
        ("the heads get each other's slopes (reversed): head h takes row h of alibi_bias",
         (_self_attention(x, n_heads, *params, bias.flip(0)),)),
        (f"the biases are divided by sqrt(d_h) with the scores: add them after scaling q k^T by 1/sqrt({d_h})",
         (_self_attention(x, n_heads, *params, bias / math.sqrt(d_h)),)),
        (f"one head over all of d_model: split into {n_heads} heads of size d_model / n_heads = {d_h}",
         (_self_attention(x, 1, *params, one_head_bias),)),
        ("heads split with view(B, h, T, d_h): split the features, view(B, T, h, d_h).transpose(1, 2)",
         (_self_attention(x, n_heads, *params, bias, split="wrong"),)),
        (f"scores divided by sqrt(d_model): each head scales by its own size, sqrt(d_h) = sqrt({d_h})",
         (_self_attention(x, n_heads, *params, bias, scale_by=d_model),)),
        ("no output projection: finish with out @ out_proj_weight.T + out_proj_bias",
         (_self_attention(x, n_heads, *params, bias, project=False),)),
    ]


def check_alibi_self_attention(fn: Callable, bias_fn: Callable, batch: int = 2, T: int = 5, d_model: int = 6,
                               n_heads: int = 2, seed: int = 0, atol: float = 1e-6) -> None:
    """Compare ``fn(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias) -> (B, T, D)``
    with ``nn.MultiheadAttention`` (batch_first, float64) whose float ``attn_mask`` is ``bias_fn(n_heads, T,
    dtype=torch.float64)`` (h, T, T), your own per-head biases, for every sequence of the batch.

    The weights are ``nn.MultiheadAttention``'s: in_proj (3D, D) stacking W_q, W_k, W_v, out_proj (D, D).
    On a mismatch the message says which usual mistake your numbers match.
    """
    ref, params = _mha_params(d_model, n_heads, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, T, d_model, generator=gen, dtype=torch.float64)
    bias = _call(bias_fn, f"n_heads={n_heads}, T={T}, dtype=torch.float64", n_heads, T, torch.float64)
    check_tensor(f"{getattr(bias_fn, '__name__', 'the bias')}({n_heads}, {T})", bias, (n_heads, T, T),
                 dims="(n_heads, T, T)")
    shape = f"B={batch}, T={T}, d_model={d_model}, heads={n_heads}"
    out = _call(fn, f"x {tuple(x.shape)} = (batch, T, d_model), n_heads={n_heads}", x.clone(), n_heads, *params)
    check_tensor("output", out, (batch, T, d_model), dims="(batch, T, d_model)")
    with torch.no_grad():
        want = ref(x, x, x, attn_mask=bias.repeat(batch, 1, 1), need_weights=False)[0]
    problem = _mismatch("output", out, want, atol, 0.0)
    if problem is None:
        print(f"✓ {fn.__name__} matches nn.MultiheadAttention with your biases as attn_mask ({shape})")
        return
    one_head = _call(bias_fn, f"n_heads=1, T={T}, dtype=torch.float64", 1, T, torch.float64)
    hint = _first_match(_layer_mistakes(x, n_heads, params, bias, one_head), (out,), atol)
    head = f"{fn.__name__} does not match nn.MultiheadAttention with attn_mask = the biases ({shape})"
    raise AssertionError((f"{head}. Your numbers match this mistake: {hint}." if hint else
                          f"{head}: q, k, v = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1), then heads, "
                          "attention with each head's row of the biases, merge, output projection") + f"\n  {problem}")


def _left_padding(batch: int, T: int, gen: torch.Generator) -> torch.Tensor:
    """A (B, T) padding mask, True at real tokens: sequence b has its pads first, 0 to T - 1 of them."""
    lengths = torch.randint(1, T + 1, (batch,), generator=gen)
    lengths[0] = T  # one sequence without padding
    return torch.arange(T)[None, :] >= (T - lengths)[:, None]


def _moved(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """The largest change between outputs a and b (B, T, D) at the positions ``where`` (B, T)."""
    return float((a - b)[where].abs().max()) if where.any() else 0.0


def check_causal(fn: Callable, batch: int = 2, T: int = 6, d_model: int = 4, n_heads: int = 2, seed: int = 0) -> None:
    """Check that output t of ``fn(x, n_heads, *weights, padding_mask=None)`` depends on tokens 0..t only,
    without padding and with a left-padding mask (B, T), and does depend on the earlier tokens.

    Each test changes the tokens after t and asks that outputs 0..t (at real tokens) do not move."""
    _, params = _mha_params(d_model, n_heads, seed)
    gen = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, T, d_model, generator=gen, dtype=torch.float64)
    padded = _left_padding(batch, T, gen)
    with torch.no_grad():
        for padding in (None, padded):
            real = torch.ones(batch, T, dtype=torch.bool) if padding is None else padding
            label = "without padding" if padding is None else "with a left-padding mask"
            base = _call(fn, f"x {tuple(x.shape)}, {label}", x.clone(), n_heads, *params, padding)
            for t in range(T - 1):
                changed = x.clone()
                changed[:, t + 1:] = torch.randn(batch, T - t - 1, d_model, generator=gen, dtype=torch.float64)
                err = _moved(fn(changed, n_heads, *params, padding)[:, : t + 1], base[:, : t + 1], real[:, : t + 1])
                if err > 1e-9:
                    raise AssertionError(
                        f"output[:, {t}] changed (by {err:.3g}) when only the tokens after {t} changed ({label}): "
                        f"position {t} sees the future. Block key j > query i before the softmax, padding or not.")
        base = fn(x, n_heads, *params, None)
        earlier = x.clone()
        earlier[:, 0] += 1.0
        if max_error(fn(earlier, n_heads, *params, None)[:, -1], base[:, -1]) < 1e-9:
            raise AssertionError(f"output[:, {T - 1}] did not change when token 0 changed: the last position must "
                                 "attend to every earlier one, not only to itself")
    print(f"✓ {fn.__name__} is causal: output t depends on tokens 0..t only (T={T}, with and without padding)")


def check_padding(fn: Callable, batch: int = 3, T: int = 6, d_model: int = 4, n_heads: int = 2, seed: int = 0) -> None:
    """Check that ``fn(x, n_heads, *weights, padding_mask)`` hides the pads of a left-padding mask (B, T), True at
    real tokens: the outputs at real tokens do not move when the pads change, and they are the outputs of the
    same layer on each sequence without its pads."""
    _, params = _mha_params(d_model, n_heads, seed)
    gen = torch.Generator().manual_seed(seed + 3)
    x = torch.randn(batch, T, d_model, generator=gen, dtype=torch.float64)
    padding = _left_padding(batch, T, gen)
    with torch.no_grad():
        out = _call(fn, f"x {tuple(x.shape)}, a padding mask {tuple(padding.shape)}", x.clone(), n_heads, *params,
                    padding)
        check_tensor("output", out, (batch, T, d_model), dims="(batch, T, d_model)")
        other = torch.where(padding[..., None], x, 10 * torch.randn(x.shape, generator=gen, dtype=torch.float64))
        err = _moved(fn(other, n_heads, *params, padding), out, padding)
        if err > 1e-9:
            raise AssertionError(f"the outputs at real tokens moved (by {err:.3g}) when only the pads changed: hide "
                                 "the pad keys from every query, padding_mask[:, None, None, :] (B, 1, 1, T)")
        for b in range(batch):
            n = int(padding[b].sum())
            alone = fn(x[b:b + 1, T - n:].clone(), n_heads, *params, None)
            err = max_error(out[b:b + 1, T - n:], alone)
            if err > 1e-9:
                raise AssertionError(f"sequence {b} ({T - n} pads, {n} tokens): its outputs differ (by {err:.3g}) "
                                     "from those of the same tokens without the pads")
    print(f"✓ {fn.__name__} hides the pads: real tokens get the outputs they get without padding (B={batch}, T={T})")


# ---------------------------------------------------------------- GAN with the hinge loss (lab 02)

def _scalar(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} should be a torch.Tensor (a scalar), got {type(value).__name__}"
                             + (" (did you forget a `return`?)" if value is None else ""))
    if value.dim() != 0:
        raise AssertionError(f"{name} has shape {tuple(value.shape)} but should be a scalar (shape ()): "
                             "average over the batch with .mean()")
    return value


def _hinge(x: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """PyTorch's hinge loss with target -1: the mean of max(0, margin - x) over the batch."""
    return F.hinge_embedding_loss(x, -torch.ones_like(x), margin=margin)


def _mean(x: torch.Tensor) -> torch.Tensor:
    """PyTorch's hinge loss with target +1, which is the plain mean of its input."""
    return F.hinge_embedding_loss(x, torch.ones_like(x))


def _reference_loss(name: str, args: tuple) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The hinge GAN's loss ``name`` on logits ``args`` and its gradients with respect to them."""
    leaves = tuple(a.detach().clone().requires_grad_() for a in args)
    value = _hinge(leaves[0]) + _hinge(-leaves[1]) if name == "discriminator_loss" else _mean(-leaves[0])
    return value.detach(), torch.autograd.grad(value, leaves)


def _loss_mistakes(name: str, args: tuple) -> tuple[tuple[str, torch.Tensor], ...]:
    """The usual mistakes of each loss, with what each computes, for the messages."""
    with torch.no_grad():
        if name == "generator_loss":
            (f,) = args
            return (
                ("the generator's loss has no relu and no margin: L_G = -mean(l_fake); the hinge is D's", _hinge(f)),
                ("the sign is flipped: G wants D's scores on its fakes large, so it minimises -mean(l_fake)", _mean(f)),
                ("that is the non-saturating cross-entropy loss, not the hinge GAN's", F.softplus(-f).mean()),
                ("that sums over the batch: take the mean", _mean(-f) * len(f)),
            )
        r, f = args
        return (
            ("the sign is flipped: each term is max(0, ...) ≥ 0, so L_D is positive", -(_hinge(r) + _hinge(-f))),
            ("the real and fake terms are swapped: real logits should be pushed above +1, fake ones below -1",
             _hinge(-r) + _hinge(f)),
            ("the margin is missing: the terms are max(0, 1 - l_real) and max(0, 1 + l_fake)",
             _hinge(r, 0.0) + _hinge(-f, 0.0)),
            ("without the relu (max(0, ·)) that is a loss that never stops pushing, like the Wasserstein critic's",
             (1 - r).mean() + (1 + f).mean()),
            ("that is the Wasserstein critic's loss mean(l_fake) - mean(l_real): no relu, no margin",
             f.mean() - r.mean()),
            ("that is the cross-entropy loss of the standard GAN, not the hinge loss",
             F.softplus(-r).mean() + F.softplus(f).mean()),
            ("that is half the loss: average each term over its own batch, then add the two",
             (_hinge(r) + _hinge(-f)) / 2),
            ("that sums over the batch: take the mean", _hinge(r) * len(r) + _hinge(-f) * len(f)),
        )


def _check_one_loss(name: str, fn: Callable, args: tuple, label: str, atol: float) -> None:
    """The value of one loss and its gradient with respect to the logits, against the hinge GAN's."""
    want, want_grads = _reference_loss(name, args)
    leaves = tuple(a.detach().clone().requires_grad_() for a in args)
    shapes = " and ".join(str(tuple(a.shape)) for a in args)
    got = _scalar(name, _call(fn, f"{'real and fake' if len(args) == 2 else 'fake'} logits {shapes}", *leaves))
    value = float(got.detach())
    err = abs(value - float(want))
    if not math.isfinite(value) or err > atol:
        hint = next((h for h, v in _loss_mistakes(name, args) if abs(value - float(v)) <= atol), None)
        raise AssertionError(f"{name} is {value:.6g} for {label}, expected {float(want):.6g} (off by {err:.3g})"
                             + (f": {hint}" if hint else ""))
    if not got.requires_grad:
        raise AssertionError(f"{name} carries no gradient: compute it with torch operations on the logits "
                             "(no .item(), no .detach(), no torch.no_grad())")
    grads = torch.autograd.grad(got, leaves, allow_unused=True)
    for which, g, e in zip(("real", "fake")[-len(args):], grads, want_grads):
        problem = _mismatch(f"d {name} / d {which}_logits", torch.zeros_like(e) if g is None else g, e, atol, 0.0)
        if problem:
            raise AssertionError(f"{problem} ({label}). Per sample it is ∓1/B inside the margin and 0 beyond it")


def check_gan_losses(discriminator_loss: Callable | None, generator_loss: Callable | None, batch: int = 8,
                     seed: int = 0, atol: float = 1e-6) -> None:
    r"""Compare your hinge losses on logits with PyTorch's hinge loss, values and gradients, on logits that
    straddle the margin and on logits far beyond it (a loss given as ``None`` is not checked, so that each
    loss can be graded on its own).

    ``discriminator_loss(real_logits, fake_logits)`` = mean max(0, 1 - l_real) + mean max(0, 1 + l_fake) and
    ``generator_loss(fake_logits)`` = -mean l_fake, logits (B,) (Lim & Ye 2017). The message says which usual
    mistake your numbers match.
    """
    gen = torch.Generator().manual_seed(seed)
    real, fake = (2 * torch.randn(batch, generator=gen, dtype=torch.float64) for _ in range(2))
    far_real = torch.tensor([200.0, -200.0, 0.5, -0.5, 1000.0, -1000.0, 1.5], dtype=torch.float64)
    far_fake = torch.tensor([-200.0, 200.0, -0.5, 0.5, -1000.0, 1000.0], dtype=torch.float64)
    for r, f, label in ((real, fake, f"random logits (B={batch})"),
                        (far_real, far_fake, "logits of ±0.5, ±200 and ±1000 (two batch sizes)")):
        if discriminator_loss is not None:
            _check_one_loss("discriminator_loss", discriminator_loss, (r, f), label, atol)
        if generator_loss is not None:
            _check_one_loss("generator_loss", generator_loss, (f,), label, atol)
    names = [n for n, fn in (("discriminator_loss", discriminator_loss), ("generator_loss", generator_loss)) if fn]
    print(f"✓ {' and '.join(names)} match{'es' if len(names) == 1 else ''} the hinge GAN's, values and gradients, "
          "inside the margin and far beyond it")


def _hinge_update(opt_d, opt_g, noise: torch.Generator):
    """The course's GAN step with the hinge losses in place of the cross-entropies."""
    from karpa_lab.models.gan import GANUpdate

    class HingeUpdate(GANUpdate):
        def d_loss(self, real_out, fake_out):
            return _hinge(real_out) + _hinge(-fake_out)

        def g_loss(self, fake_out):
            return _mean(-fake_out)

    return HingeUpdate(opt_d, opt_g, noise=noise)


def check_gan_step(step_fn: Callable, steps: int = 3, batch: int = 16, seed: int = 0, atol: float = 1e-5) -> None:
    """Compare ``step_fn(gan, real, opt_d, opt_g, noise) -> {"loss": L_D, "g_loss": L_G}`` with the course's
    ``GANUpdate`` step on the hinge losses for a few steps, on two copies of a small 2D GAN.

    One step: a discriminator update on ``real`` and fakes from ``gan.noise(B, noise)`` (detached), then a
    generator update on fresh fakes from ``gan.noise(B, noise)``. The message says which update first
    differs, at which step, and what that suggests.
    """
    from karpa_lab.models.gan import gan_optimizers, mlp_gan_2d

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gan = mlp_gan_2d(hidden=16)
    ref = copy.deepcopy(gan)
    opt_d, opt_g = gan_optimizers(gan, 1e-2, 1e-2)
    update = _hinge_update(*gan_optimizers(ref, 1e-2, 1e-2), noise=torch.Generator().manual_seed(seed + 1))
    noise = torch.Generator().manual_seed(seed + 1)
    data = torch.Generator().manual_seed(seed + 2)
    for t in range(steps):
        real = torch.randn(batch, 2, generator=data)
        out = _call(step_fn, f"a GAN (2D, hidden 16), real {tuple(real.shape)}, Adam optimizers, a torch.Generator",
                    gan, real.clone(), opt_d, opt_g, noise)
        want = update(ref, real)
        if not isinstance(out, dict) or not {"loss", "g_loss"} <= set(out):
            raise AssertionError(f"{step_fn.__name__} should return a dict with 'loss' (L_D) and 'g_loss' (L_G), "
                                 f"got {out!r}")
        d_err = max(max_error(a, b) for a, b in zip(gan.discriminator.parameters(), ref.discriminator.parameters()))
        g_err = max(max_error(a, b) for a, b in zip(gan.generator.parameters(), ref.generator.parameters()))
        later = (f" Step 0 matched, step {t} does not: are the gradients zeroed before each backward "
                 "(opt.zero_grad())?") if t else ""
        if d_err > atol:
            raise AssertionError(
                f"after step {t} the discriminator's weights differ from the reference by {d_err:.3g}.{later} "
                "The D update: fakes = G(gan.noise(B, noise)) without gradients (torch.no_grad() or .detach()), "
                "L_D = discriminator_loss(D(real), D(fakes)) (the hinge loss), opt_d.zero_grad(), backward, "
                "opt_d.step(); and the G update must not change D (only opt_g.step()).")
        if g_err > atol:
            raise AssertionError(
                f"after step {t} the generator's weights differ from the reference by {g_err:.3g} (the "
                f"discriminator's match).{later} The G update comes after the D update: draw fresh noise "
                "gan.noise(B, noise), L_G = generator_loss(D(G(z))) (no detach: the gradient flows through D "
                "into G), opt_g.zero_grad(), backward, opt_g.step().")
        for key in ("loss", "g_loss"):
            got = float(out[key].detach()) if isinstance(out[key], torch.Tensor) else float(out[key])
            if abs(got - float(want[key])) > atol:
                raise AssertionError(f"the returned {key!r} is {got:.6g}, expected {float(want[key]):.6g} (step {t}): "
                                     "return the losses computed in this step, L_D as 'loss' and L_G as 'g_loss'")
    print(f"✓ {step_fn.__name__} matches the reference hinge GAN step for {steps} steps (both networks, both losses)")


# ---------------------------------------------------------------- NAS local search (lab 04)

def _keys(genomes) -> str:
    return ", ".join(g.key for g in genomes) or "none"


def check_neighbourhood(neighbours: Callable, space, trials: int = 100, seed: int = 0) -> None:
    """Check ``neighbours(genome, space) -> list[Genome]`` on ``trials`` random genomes of ``space`` (MLPs, no
    skips): a list without duplicates, inside the space, without the genome itself; every other activation and
    every other width of each layer there once; layers added or removed only where the depths allow, with the
    activation kept. (Which layers may be added where is checked on worked examples in the lab.)"""
    import random

    from karpa_lab.nas.space import Genome

    rng = random.Random(seed)
    for _ in range(trials):
        parent = space.sample(rng)
        out = _call(neighbours, f"genome {parent.key}, a Space", parent, space)
        if not isinstance(out, list) or not all(isinstance(g, Genome) for g in out):
            raise AssertionError(f"neighbours({parent.key}) returned {out!r}: return a list of Genomes, e.g. "
                                 "Genome.mlp(*widths, activation=activation)")
        twice = sorted({g.key for g in out if out.count(g) > 1})
        if twice:
            raise AssertionError(f"neighbours({parent.key}) lists {', '.join(twice)} more than once: each neighbour "
                                 "once (removing either of two equal layers gives the same network)")
        if parent in out:
            raise AssertionError(f"neighbours({parent.key}) contains {parent.key} itself: a neighbour is one edit "
                                 "away")
        outside = [g for g in out if not space.contains(g)]
        if outside:
            raise AssertionError(f"neighbours({parent.key}) contains {_keys(outside[:3])}, outside the space "
                                 f"(depths {space.depths}, widths {space.widths}, activations {space.activations})")
        acts = {g.activation for g in out if g.widths == parent.widths}
        if acts != set(space.activations) - {parent.activation}:
            raise AssertionError(f"neighbours({parent.key}) changes the activation to {sorted(acts)}: every other "
                                 f"activation of the space, {sorted(set(space.activations) - {parent.activation})}")
        same = [g for g in out if g.depth == parent.depth and g.activation == parent.activation]
        wrong = [g for g in same if sum(a != b for a, b in zip(g.widths, parent.widths)) != 1]
        if wrong or len(same) != parent.depth * (len(space.widths) - 1):
            raise AssertionError(
                f"neighbours({parent.key}) has {len(same)} networks of its depth and activation ({_keys(wrong[:3])} "
                f"change more than one width): expected {parent.depth} layers x {len(space.widths) - 1} other widths, "
                "each layer's width changed alone")
        for change, word in ((1, "added"), (-1, "removed")):
            moved = [g for g in out if g.depth == parent.depth + change]
            if any(g.activation != parent.activation for g in moved):
                raise AssertionError(f"neighbours({parent.key}): a layer {word} and the activation changed too")
            if bool(moved) != (parent.depth + change in space.depths):
                raise AssertionError(f"neighbours({parent.key}) has {len(moved)} networks with a layer {word}; the "
                                     f"space's depths are {space.depths}")
        if any(abs(g.depth - parent.depth) > 1 for g in out):
            raise AssertionError(f"neighbours({parent.key}) changes the depth by more than one layer")
    print(f"✓ {neighbours.__name__}: {trials} neighbourhoods, each a list of distinct genomes one change away")


def _improve_call(improve: Callable, genome, genome_score, space, score, rng, budget: int):
    """Call ``improve`` with a counted ``score`` -> (evaluated, better, the genomes score was called on), the
    result's form checked: a list of (genome, score) pairs, every call of score in it in order."""
    calls = []

    def counted(g):
        calls.append(g)
        return score(g)

    what = f"genome {genome.key} scored {genome_score}, budget {budget}"
    out = _call(improve, what, genome, genome_score, space, counted, rng, budget)
    if not isinstance(out, tuple | list) or len(out) != 2 or not isinstance(out[0], list):
        raise AssertionError(f"improve({genome.key}) returned {out!r}: return (evaluated, better), evaluated a list "
                             "of (neighbour, its score) pairs, better one such pair or None")
    evaluated, better = out
    pairs = [tuple(pair) if isinstance(pair, tuple | list) else pair for pair in evaluated]
    if pairs != [(g, score(g)) for g in calls]:
        raise AssertionError(f"improve({genome.key}) called score {len(calls)} times and returned {len(evaluated)} "
                             "evaluations: evaluated lists (neighbour, its score) for every call of score, in order")
    return evaluated, better, calls


def check_first_improvement(improve: Callable, space, neighbours: Callable, trials: int = 10, seed: int = 0) -> None:
    """Check ``improve(genome, genome_score, space, score, rng, budget) -> (evaluated, better)`` against the
    neighbourhood ``neighbours`` gives: at most ``budget`` neighbours, each at most once, all of them in
    ``evaluated`` in order; ``better`` the first that scores strictly higher, with its score, or None when none
    does (a local optimum, once every neighbour is evaluated, or the budget spent)."""
    import random

    rng = random.Random(seed)
    for _ in range(trials):
        genome = space.sample(rng)
        nbhd = neighbours(genome, space)
        _, better, calls = _improve_call(improve, genome, 0.0, space, lambda g: -1.0, rng, 10**6)
        if better is not None or sorted(g.key for g in calls) != sorted(g.key for g in nbhd):
            raise AssertionError(
                f"no neighbour of {genome.key} scores higher, yet improve returned {better!r} after evaluating "
                f"{len(calls)} ({len(set(calls))} distinct) of its {len(nbhd)} neighbours: a local optimum is declared "
                "(better = None) only when every neighbour has been evaluated, each once")
        _, better, _ = _improve_call(improve, genome, 0.0, space, lambda g: 0.0, rng, 10**6)
        if better is not None:
            raise AssertionError(f"improve moved to {better[0].key}, which scores 0.0 like the genome itself: move "
                                 "only to a neighbour that scores strictly higher (>)")
        if not nbhd:
            continue
        target = nbhd[rng.randrange(len(nbhd))]
        _, better, calls = _improve_call(improve, genome, 0.5, space, lambda g, t=target: float(g == t), rng, 10**6)
        if better is None or tuple(better) != (target, 1.0) or calls[-1] != target or calls.count(target) != 1:
            raise AssertionError(
                f"of the neighbours of {genome.key} only {target.key} scores higher (1.0 against 0.5): improve should "
                f"stop at it and return it as better, ({target.key}, 1.0); it evaluated {len(calls)} and returned "
                f"{better!r}. First improvement: the first better neighbour is taken at once")
        _, better, calls = _improve_call(improve, genome, 0.0, space, lambda g: -1.0, rng, 3)
        if len(calls) != min(3, len(nbhd)) or better is not None:
            raise AssertionError(f"with a budget of 3, improve should evaluate 3 neighbours and return better = None; "
                                 f"it evaluated {len(calls)} and returned {better!r}")
    print(f"✓ {improve.__name__}: first improvement, every neighbour at most once, None at a local optimum; the "
          "budget kept")


def first_evaluated(improve: Callable, space, genome, trials: int = 300, seed: int = 0) -> list:
    """The neighbours ``improve`` evaluates first and second in ``trials`` calls on ``genome`` whose neighbours all
    score lower: a list of the genomes each call evaluated, (first, second), to see whether the order is random."""
    import random

    rng = random.Random(seed)
    return [tuple(_improve_call(improve, genome, 0.0, space, lambda g: -1.0, rng, 2)[2]) for _ in range(trials)]


def check_local_search(trace, space, neighbours: Callable) -> tuple[int, int]:
    """Replay ``trace`` (every evaluation of a search, in order) under the rules of local search with first
    improvement and restarts; raise saying which evaluation breaks them. -> (moves, restarts)."""
    moves = restarts = 0
    incumbent, tried, nbhd = None, set(), set()
    for t, (genome, value) in enumerate(zip(trace.genomes, trace.scores)):
        if incumbent is None or tried == nbhd:
            restarts += incumbent is not None
            incumbent, tried, nbhd = (genome, value), set(), set(neighbours(genome, space))
            continue
        if genome not in nbhd:
            raise AssertionError(
                f"evaluation {t} ({genome.key}) is not a neighbour of the current genome {incumbent[0].key}, whose "
                f"neighbourhood is not exhausted ({len(tried)} of {len(nbhd)} evaluated): evaluate its neighbours "
                "until one scores higher; restart with a random genome only at a local optimum")
        if genome in tried:
            raise AssertionError(f"evaluation {t} evaluates {genome.key} a second time as a neighbour of "
                                 f"{incumbent[0].key}: each neighbour once")
        tried.add(genome)
        if value > incumbent[1]:
            moves += 1
            incumbent, tried, nbhd = (genome, value), set(), set(neighbours(genome, space))
    return moves, restarts


# ---------------------------------------------------------------- convolution (lab 05)

_FORBIDDEN_CONV = ("conv2d", "conv_transpose2d", "Conv2d", "convolution", "conv2d_input", "conv2d_weight",
                   "karpa_lab", "backward", "grad")
_CONV_DIMS = "(batch, out_channels, H_out, W_out)"
_PADDING_MODES = ("zeros", "circular")
_ZERO_PADDED = ("x is padded with zeros: circular padding puts the last rows (columns) of x above (left of) it and "
                "the first ones below (right of) it")


def _pair_of(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def random_conv(batch: int, in_channels: int, out_channels: int, size: tuple[int, int], kernel: tuple[int, int],
                seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """x (B, C_in, H, W), weight (C_out, C_in, kH, kW) and bias (C_out,), random and reproducible."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, *size, generator=gen, dtype=dtype)
    weight = torch.randn(out_channels, in_channels, *kernel, generator=gen, dtype=dtype)
    return x, weight, torch.randn(out_channels, generator=gen, dtype=dtype)


def _conv_shape_hint(x, weight, stride, padding) -> str:
    (sh, sw), (ph, pw) = _pair_of(stride), _pair_of(padding)
    h, w, kh, kw = x.shape[2], x.shape[3], weight.shape[2], weight.shape[3]
    return (f"H_out = (H + 2 * padding_h - kH) // stride_h + 1 = ({h} + {2 * ph} - {kh}) // {sh} + 1 and "
            f"W_out = ({w} + {2 * pw} - {kw}) // {sw} + 1")


def _conv_call(fn: Callable, x, weight, bias, stride, padding):
    what = (f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias "
            f"{None if bias is None else tuple(bias.shape)}, stride={stride}, padding={padding}")
    return _call(fn, what, x, weight, bias, stride, padding), what


def _reference_conv2d(x, weight, bias, stride, padding, padding_mode: str) -> torch.Tensor:
    """``F.conv2d``; with ``padding_mode="circular"`` x is first padded circularly (as ``nn.Conv2d`` does)."""
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    if padding_mode == "zeros":
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    ph, pw = _pair_of(padding)
    return F.conv2d(F.pad(x, (pw, pw, ph, ph), mode="circular"), weight, bias, stride=stride)


def check_conv2d(fn: Callable, batch: int = 2, in_channels: int = 3, out_channels: int = 4, size=(7, 6),
                 kernel=(3, 2), stride=1, padding=0, bias: bool = True, seed: int = 0, atol: float = 1e-8,
                 padding_mode: str = "zeros") -> None:
    r"""Compare ``fn(x, weight, bias, stride, padding)`` with ``F.conv2d`` in float64.

    .. math:: y_{b,o,i,j} = \text{bias}_o + \sum_{c,u,v} x^{pad}_{b,c,\,i s_h + u,\,j s_w + v}\, w_{o,c,u,v}

    (cross-correlation: the kernel is not flipped). ``padding_mode`` says what :math:`x^{pad}` holds around x:
    ``"zeros"``, or ``"circular"``: :math:`x^{pad}_{b,c,p,q} = x_{b,c,(p - p_h) \bmod H,\,(q - p_w) \bmod W}`,
    each side padded with the rows (columns) of the opposite side. On a mismatch the message says which usual
    mistake your numbers match: the kernel flipped, the bias left out, the wrong padding, padding or stride
    ignored.
    """
    check_no_calls(fn, _FORBIDDEN_CONV, "this lab asks you to write the convolution yourself (loops, or "
                   "F.unfold and a matrix product)")
    x, weight, b = random_conv(batch, in_channels, out_channels, tuple(size), tuple(kernel), seed)
    b = b if bias else None
    got, what = _conv_call(fn, x, weight, b, stride, padding)
    want = _reference_conv2d(x, weight, b, stride, padding, padding_mode)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        try:
            check_tensor("output", got, want.shape, dims=_CONV_DIMS)
        except AssertionError as err:
            hint = _conv_shape_hint(x, weight, stride, padding)
            raise AssertionError(f"{err}\n  called with {what}; {hint}") from None
    reference = "F.conv2d" + (" with circular padding" if padding_mode == "circular" else "")
    problem = _mismatch("output", got, want, atol, 0.0)
    if problem is None:
        print(f"✓ {fn.__name__} matches {reference} ({what})")
        return
    candidates = [("the kernel is flipped: a CNN's convolution is a cross-correlation, w[o, c, u, v] multiplies "
                   "x[..., i*stride + u, j*stride + v] as it is",
                   (_reference_conv2d(x, weight.flip(2, 3), b, stride, padding, padding_mode),))]
    if b is not None:
        candidates.append(("the bias is missing: add bias[o] to every pixel of output channel o",
                           (_reference_conv2d(x, weight, None, stride, padding, padding_mode),)))
    if padding_mode == "circular":
        candidates.append((_ZERO_PADDED, (F.conv2d(x, weight, b, stride, padding),)))
    hint = _first_match(candidates, (got,), atol)
    raise AssertionError(f"{fn.__name__} does not match {reference}, called with {what}:\n  {problem}"
                         + (f"\n  Your numbers match this mistake: {hint}." if hint else ""))


def _conv_gradients(x, weight, bias, stride, padding, grad_out, padding_mode: str) -> tuple[torch.Tensor, ...]:
    """autograd's (dL/dx, dL/dweight, dL/dbias) for L = sum(grad_out * conv2d(x, weight, bias))."""
    x, weight, bias = (t.detach().requires_grad_() for t in (x, weight, bias))
    _reference_conv2d(x, weight, bias, stride, padding, padding_mode).backward(grad_out)
    return x.grad, weight.grad, bias.grad


def check_conv2d_backward(fn: Callable, only: str | None = None, batch: int = 2, in_channels: int = 3,
                          out_channels: int = 4, size=(7, 6), kernel=(3, 2), stride=1, padding=0, seed: int = 0,
                          atol: float = 1e-8, padding_mode: str = "zeros") -> None:
    r"""Compare ``fn(x, weight, grad_out, stride, padding) -> (grad_x, grad_weight, grad_bias)`` with autograd.

    With :math:`g = \partial L / \partial y` (B, C_out, H_out, W_out):
    :math:`\partial L/\partial w_{o,c,u,v} = \sum_{b,i,j} g_{b,o,i,j}\, x^{pad}_{b,c,i s_h+u,j s_w+v}`,
    :math:`\partial L/\partial \text{bias}_o = \sum_{b,i,j} g_{b,o,i,j}`, and :math:`\partial L/\partial x`
    scatters each :math:`g_{b,o,i,j} w_{o,c,u,v}` back onto the padded input pixel it came from; then the padding
    is cut off (``padding_mode="zeros"``) or added onto the pixels it copies (``"circular"``). ``only`` checks one
    of "grad_x", "grad_weight", "grad_bias", or the two "params" (all three by default).
    """
    if only not in (None, "grad_x", "grad_weight", "grad_bias", "params"):
        raise ValueError(f"only must be None, 'grad_x', 'grad_weight', 'grad_bias' or 'params', got {only!r}")
    check_no_calls(fn, _FORBIDDEN_CONV, "this lab asks you to derive the gradients yourself, without autograd or "
                   "a library convolution")
    x, weight, bias = random_conv(batch, in_channels, out_channels, tuple(size), tuple(kernel), seed)
    shape = _reference_conv2d(x, weight, bias, stride, padding, padding_mode).shape
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1), dtype=x.dtype)
    want = _conv_gradients(x, weight, bias, stride, padding, grad_out, padding_mode)
    what = (f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, grad_out {tuple(grad_out.shape)}, "
            f"stride={stride}, padding={padding}")
    got = _call(fn, what, x, weight, grad_out, stride, padding)
    if not isinstance(got, tuple | list) or len(got) != 3:
        raise AssertionError(f"{fn.__name__} should return (grad_x, grad_weight, grad_bias), got {type(got).__name__}")
    names = ("grad_x", "grad_weight", "grad_bias")
    dims = ("like x: (batch, in_channels, H, W)", "like weight: (out_channels, in_channels, kH, kW)",
            "like bias: (out_channels,)")
    flipped = _conv_gradients(x, weight.flip(2, 3), bias, stride, padding, grad_out, padding_mode)[0]
    hints = {"grad_x": [("the kernel is flipped: each output pixel sends g * w[o, c, u, v] back to the input pixel "
                         "that w[o, c, u, v] multiplied", flipped)],
             "grad_bias": [("the bias gradient is a mean: it is the sum of grad_out over batch, H_out and W_out",
                            grad_out.mean(dim=(0, 2, 3)))]}
    if padding_mode == "circular":
        zero_x, zero_w, _ = _conv_gradients(x, weight, bias, stride, padding, grad_out, "zeros")
        hints["grad_x"].append(("the padding's gradient is cut off: circular padding copies rows and columns of x, so "
                                "the gradient that reaches a padded copy must be added onto the pixel it copies",
                                zero_x))
        hints["grad_weight"] = [(_ZERO_PADDED, zero_w)]
    parts = {"params": ("grad_weight", "grad_bias")}.get(only, names if only is None else (only,))
    for name, mine, ref, dim in zip(names, got, want, dims):
        if name not in parts:
            continue
        check_tensor(name, mine, ref.shape, dims=dim)
        problem = _mismatch(name, mine, ref, atol, 0.0)
        if problem:
            hint = _first_match([(h, (t,)) for h, t in hints.get(name, [])], (mine,), atol)
            raise AssertionError(f"{name} does not match autograd, called with {what}:\n  {problem}"
                                 + (f"\n  Your numbers match this mistake: {hint}." if hint else ""))
    checked = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    print(f"✓ {fn.__name__}: {checked} match{'es' if len(parts) == 1 else ''} autograd ({what})")
