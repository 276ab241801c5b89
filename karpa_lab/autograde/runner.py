"""The notebook's side of a grading run: it executes cells and calls functions when asked, nothing else.

The grader starts it inside the sandbox (``python -I -m karpa_lab.autograde.runner``) and writes one JSON
request a line on its stdin; it answers one JSON line each on a copy of its stdout (the notebook's own
prints are captured per cell, and file descriptor 1 is pointed at stderr). The grader's values arrive
pickled; this side's go back as :func:`pack` data (numbers, strings, containers, tensors' raw bytes, the
course's dataclasses by field), which the grader rebuilds without running anything it names. Nothing
it answers is trusted: the grader runs every test itself, and only reads what this side says it saw
(rebound checks, forbidden calls) to report it and to take points away, never to give them.
"""

from __future__ import annotations

import base64
import builtins
import collections
import contextlib
import dataclasses
import functools
import importlib
import io
import json
import os
import pickle
import random
import signal
import sys
import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import karpa_lab.grading
from karpa_lab.grading import code_names  # bound now: a notebook that rebinds the module's name changes nothing here

FN = "__karpa_fn__"  # a callable in a request: ("__karpa_fn__", "name", global) or ("__karpa_fn__", "callback", id)
OBJ = "__karpa_obj__"  # a module, optimizer or generator kept here between calls: (OBJ, handle[, the object])
TENSOR = "__karpa_tensor__"  # a tensor in a request: (TENSOR, dtype, shape, raw bytes, requires_grad)


def raw_tensor(t: torch.Tensor) -> tuple:
    """A tensor as plain values, much faster to pickle than the tensor itself."""
    requires_grad = bool(t.requires_grad)
    t = t.detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return (TENSOR, str(t.dtype).removeprefix("torch."), tuple(t.shape), raw, requires_grad)


def _from_raw(value: tuple) -> torch.Tensor:
    _, dtype, shape, raw, requires_grad = value
    dtype = getattr(torch, dtype)
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype) if raw else torch.empty(0, dtype=dtype)
    return flat.reshape(shape).clone().requires_grad_(requires_grad)


def encode(value, buffers: list[bytes]):
    """``value`` as JSON-ready data, its tensors' bytes appended to ``buffers`` (see :func:`decode`)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        _, dtype, shape, raw, _ = raw_tensor(value)
        buffers.append(raw)
        return {"T": len(buffers) - 1, "dtype": dtype, "shape": list(shape)}
    if isinstance(value, tuple | list | collections.deque):
        key = "t" if isinstance(value, tuple) else "q" if isinstance(value, collections.deque) else "l"
        return {key: [encode(v, buffers) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k, buffers), encode(v, buffers)] for k, v in value.items()]}
    if isinstance(value, random.Random):
        version, state, gauss = value.getstate()
        return {"R": [version, encode(torch.tensor(state, dtype=torch.int64), buffers), gauss]}
    if dataclasses.is_dataclass(value) and type(value).__module__.startswith("karpa_lab."):
        cls = type(value)
        return {"C": f"{cls.__module__}.{cls.__qualname__}",
                "f": {f.name: encode(getattr(value, f.name), buffers) for f in dataclasses.fields(value)}}
    raise TypeError(f"a {type(value).__name__} cannot be handed to the grader")


def decode(data, buffers: list[bytes], classes: dict[str, type]):
    """The inverse of :func:`encode`; only the dataclasses named in ``classes`` are rebuilt, nothing runs."""
    if not isinstance(data, dict):
        return data
    if "T" in data:
        return _from_raw((TENSOR, data["dtype"], data["shape"], buffers[data["T"]], False))
    if "d" in data:
        return {decode(k, buffers, classes): decode(v, buffers, classes) for k, v in data["d"]}
    if "R" in data:
        version, state, gauss = data["R"]
        rng = random.Random()
        rng.setstate((version, tuple(decode(state, buffers, classes).tolist()), gauss))
        return rng
    if "C" in data:
        if data["C"] not in classes:
            raise TypeError(f"the grader does not read {data['C']} objects")
        return classes[data["C"]](**{k: decode(v, buffers, classes) for k, v in data["f"].items()})
    key = next(iter(data))
    items = [decode(v, buffers, classes) for v in data[key]]
    return tuple(items) if key == "t" else collections.deque(items) if key == "q" else items


def pack(value) -> dict:
    """``value`` as a JSON-ready message: :func:`encode`'s data and its tensors' bytes in base64."""
    buffers: list[bytes] = []
    data = encode(value, buffers)
    return {"data": data, "buffers": [base64.b64encode(b).decode() for b in buffers]}


def unpack(message: dict, classes: dict[str, type]):
    """The value :func:`pack` packed."""
    return decode(message["data"], [base64.b64decode(b) for b in message["buffers"]], classes)


def loads(payload: str):
    """What the grader sent (a pickle: this side trusts the grader, never the other way round)."""
    return pickle.loads(base64.b64decode(payload))


def dumps(value) -> str:
    """A pickle for the sandbox to read with :func:`loads`."""
    return base64.b64encode(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).decode()


class CellTimeout(BaseException):
    """Raised in the notebook's code when a cell or a call runs past its limit."""


def _watched() -> dict[str, object]:
    """What a notebook could rebind to make checks pass: builtins, torch's comparisons, the course's checks."""
    watched = {f"builtins.{k}": v for k, v in vars(builtins).items() if not k.startswith("__")}
    for name in ("allclose", "isclose", "equal", "all", "any", "isfinite", "lstm_cell", "sigmoid", "tanh"):
        watched[f"torch.{name}"] = getattr(torch, name)
    watched["torch.testing.assert_close"] = torch.testing.assert_close
    for name in ("allclose", "equal", "all", "any", "item", "tolist", "__eq__", "__bool__", "__float__"):
        watched[f"torch.Tensor.{name}"] = getattr(torch.Tensor, name)
    watched |= {f"karpa_lab.grading.{k}": v for k, v in vars(karpa_lab.grading).items() if callable(v)}
    watched |= {f"sys.modules[{m!r}]": sys.modules[m] for m in ("torch", "builtins", "karpa_lab.grading")}
    return watched


def _resolve(name: str):
    if name.startswith("sys.modules["):
        return sys.modules.get(name[13:-2])
    owner, _, attr = name.rpartition(".")
    obj = {"builtins": builtins, "torch": torch, "torch.testing": torch.testing, "torch.Tensor": torch.Tensor,
           "karpa_lab.grading": karpa_lab.grading}[owner]
    return getattr(obj, attr, None)


# The documented switches that turn torch function modes off (and with them the watch of ``_Forbidden``).
# Called from the notebook's code during a test, they count as a forbidden call; torch's own use is left alone.
_SWITCHES = ("torch._C:DisableTorchFunction", "torch._C:DisableTorchFunctionSubclass",
             "torch._C:_pop_torch_function_stack", "torch._C:_set_torch_function_state",
             "torch.overrides:_pop_mode", "torch.overrides:_pop_mode_temporarily")
SWITCHED_OFF = "switched off the grader's watch"


class _Forbidden(TorchFunctionMode):
    """Records every torch function called whose name contains one of ``words`` (however it was reached)."""

    def __init__(self, words: tuple[str, ...], seen: set[str]):
        super().__init__()
        self.words, self.seen = words, seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if any(w in name for w in self.words):
            self.seen.add(name)
        return func(*args, **(kwargs or {}))


def _alarm(signum, frame):
    raise CellTimeout("stopped after the time limit")


def _sync(value):
    """The state of a mutable argument after a call, in a form the grader can read back.

    An optimizer's state stays here: the grader's copy is only ever handed back to the notebook, and it is
    not re-sent while it is unchanged there (see ``Session._resident``)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, torch.nn.Module):
        return value.state_dict()
    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, random.Random):
        return value.getstate()
    if isinstance(value, collections.deque | list | dict):
        return value
    return None


class Runner:
    """The notebook's namespace, and the requests that run code in it."""

    def __init__(self, channel, requests):
        self.ns: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.channel, self.requests = channel, requests
        self.graphs: dict[int, tuple] = {}
        self.objects: dict[int, object] = {}
        self.original = _watched()
        self.calling: set[str] | None = None  # while a test's call runs: the forbidden functions it reached

    def forbid(self, course: list[str]) -> dict:
        """Wrap the course's functions ``module:name`` (before any notebook code runs) so that a call to one
        during a test is seen, whatever name or route the notebook reached it by; guard the switches."""
        for spec in _SWITCHES:
            self._guard_switch(spec)
        for spec in course:
            module, _, path = spec.partition(":")
            owner = importlib.import_module(module)
            *parents, name = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            target = getattr(owner, name)
            if isinstance(target, type):
                target.__init__ = self._watch(spec, target.__init__)
            else:
                setattr(owner, name, self._watch(spec, target))
        return {}

    def _guard_switch(self, spec: str) -> None:
        """Replace the switch ``module:name`` everywhere torch's modules hold it by one that reports a call
        made by the notebook's code (its caller's module is not torch's) while a test runs."""
        module, _, name = spec.partition(":")
        original = getattr(importlib.import_module(module), name)

        def guarded(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if self.calling is not None and caller.partition(".")[0] != "torch":
                self.calling.add(f"{module}.{name} ({SWITCHED_OFF})")
            return original(*args, **kwargs)

        guarded.__name__ = guarded.__qualname__ = name
        for mod in list(sys.modules.values()):
            namespace = getattr(mod, "__dict__", None)
            if isinstance(namespace, dict) and namespace.get(name) is original and \
                    getattr(mod, "__name__", "").partition(".")[0] == "torch":
                setattr(mod, name, guarded)

    def _watch(self, spec: str, fn):
        @functools.wraps(fn)
        def watched(*args, **kwargs):
            if self.calling is not None:
                self.calling.add(spec.replace(":", "."))
            return fn(*args, **kwargs)

        return watched

    def _run(self, fn, timeout: float):
        """``fn()`` with the notebook's prints captured; returns (value, error, printed)."""
        out = io.StringIO()
        try:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                value = fn()
            return value, None, out.getvalue()
        except BaseException as err:  # noqa: BLE001 (the notebook's error is reported, whatever it is)
            signal.setitimer(signal.ITIMER_REAL, 0)
            tb = traceback.format_exception(type(err), err, err.__traceback__)
            return None, {"ename": type(err).__name__, "evalue": str(err), "traceback": tb}, out.getvalue()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def cell(self, code: str, timeout: float, index: int) -> dict:
        """Run a cell of the notebook in its namespace."""
        _, error, printed = self._run(lambda: exec(compile(code, f"<cell {index}>", "exec"), self.ns), timeout)
        return {"stdout": printed, "error": error}

    def names(self) -> dict:
        """Every callable the notebook defined, with the names its code uses."""
        found = {}
        for name, value in list(self.ns.items()):
            if callable(value) and not name.startswith("__"):
                code = getattr(value, "__code__", None)
                found[name] = sorted(code_names(code)) if code is not None else []
        return {"callables": found}

    def _unwrap(self, value):
        if isinstance(value, tuple) and len(value) in (2, 3) and value[0] == OBJ:
            if len(value) == 3:
                self.objects[value[1]] = value[2]
            return self.objects[value[1]]
        if isinstance(value, tuple) and len(value) == 5 and value[0] == TENSOR:
            return _from_raw(value)
        if isinstance(value, tuple) and len(value) == 3 and value[0] == FN:
            if value[1] == "name":
                return self.ns.get(value[2])
            return lambda *a, **k: self._callback(value[2], a, k)
        if isinstance(value, tuple | list):
            return type(value)(self._unwrap(v) for v in value)
        if isinstance(value, dict):
            return {k: self._unwrap(v) for k, v in value.items()}
        return value

    def _callback(self, key: int, args, kwargs):
        """Ask the grader to run one of its own functions (a test's helper) and wait for its answer."""
        self._send({"callback": key, "args": pack((args, kwargs))})
        reply = json.loads(self.requests.readline())
        if reply.get("error"):
            raise RuntimeError(reply["error"])
        return loads(reply["payload"])

    def call(self, name: str, payload: str, timeout: float, forbidden: list[str], key: int) -> dict:
        """Call the notebook's ``name`` on the arguments in ``payload``; answer its result and its arguments' state."""
        fn = self.ns.get(name)
        args, kwargs = self._unwrap(loads(payload))
        seen: set[str] = set()
        tampered = sorted(k for k, v in self.original.items() if _resolve(k) is not v)

        def invoke():
            with _Forbidden(tuple(forbidden), seen) if forbidden else contextlib.nullcontext():
                return fn(*args, **kwargs)

        self.calling = seen
        try:
            result, error, printed = self._run(invoke, timeout)
        finally:
            self.calling = None
        data = None
        if error is None:
            tensors = [t for t in (result if isinstance(result, tuple | list) else (result,))
                       if isinstance(t, torch.Tensor) and t.requires_grad]
            inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            if tensors and inputs:
                self.graphs[key] = (tensors, inputs)
            try:
                try:
                    data = pack((result, [_sync(a) for a in args]))
                except TypeError:  # an argument holds something that cannot travel: its state is not sent
                    data = pack((result, [None] * len(args)))
            except Exception as err:  # noqa: BLE001 (an unsavable result is the notebook's problem)
                error = {"ename": "TypeError", "evalue": f"{name} returned what the grader cannot read: {err}",
                         "traceback": []}
        return {"error": error, "stdout": printed, "data": data, "forbidden": sorted(seen), "tampered": tampered}

    def backward(self, key: int, payload: str, timeout: float) -> dict:
        """Gradients of a kept call's inputs for the output gradients in ``payload``."""
        outputs, inputs = self.graphs.pop(key)
        grads = loads(payload)
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
        result, error, _ = self._run(lambda: torch.autograd.grad(
            [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True), timeout)
        return {"error": error, "data": pack(list(result)) if error is None else None}

    def processes(self) -> dict:
        """The command lines of the processes running beside this one (the sandbox's own init excepted)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in (os.getpid(), 1, os.getppid()):
                try:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
                except OSError:
                    continue
        return {"processes": [c for c in found if c]}

    def _send(self, message: dict) -> None:
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()

    def serve(self) -> None:
        """Answer requests until stdin closes."""
        for line in self.requests:
            request = json.loads(line)
            op = request.pop("op")
            try:
                reply = getattr(self, op)(**request)
            except Exception as err:  # noqa: BLE001 (a request the notebook's state breaks fails alone)
                reply = {"error": {"ename": type(err).__name__, "evalue": str(err), "traceback": []}}
            self._send(reply)


def main() -> None:
    """Serve the grader on the stdin and stdout this process was started with."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    Runner(channel, sys.stdin).serve()


if __name__ == "__main__":
    main()
