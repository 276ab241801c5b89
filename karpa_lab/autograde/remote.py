"""The grader's handle on the notebook's functions: calling one runs it in the sandbox and brings back data.

A test runs in the grader's process, with its own ``torch`` and its own checks; where it calls the
student's ``lstm_cell`` it calls a :class:`RemoteFunction`. The arguments go to the sandbox pickled (a
module, optimizer or generator stays there between calls while it is unchanged here); what comes back (the
result, and the state of the arguments the call may have changed in place: tensors, modules, optimizers,
generators, random.Random, lists, deques, dicts) is plain data rebuilt by
:func:`karpa_lab.autograde.runner.unpack`, so nothing in it can run code here. Gradients cross too: a call on
tensors that require grad is an autograd Function whose backward asks the sandbox for the gradients.
A function the test hands to the student's code (a score, a mutation) stays here: the sandbox calls back.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import functools
import io
import random
import types
from dataclasses import dataclass, field

import torch

from karpa_lab.autograde.runner import FN, OBJ, dumps, raw_tensor, unpack
from karpa_lab.autograde.sandbox import Runner

_PLAIN_FUNCTIONS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


@functools.cache
def _readable() -> dict[str, type]:
    """The course's own types a lab's functions may return: dataclasses, rebuilt from their fields."""
    from karpa_lab.nas.searchers import SearchTrace
    from karpa_lab.nas.space import Genome, Space

    return {f"{c.__module__}.{c.__qualname__}": c for c in (Genome, Space, SearchTrace)}


def load_data(message: dict):
    """Values sent by the sandbox: tensors, numbers, strings, containers and the course's dataclasses."""
    return unpack(message, _readable())


def _fingerprint(obj) -> tuple:
    """Changes whenever ``obj`` (a module, optimizer or generator) changes here."""
    if isinstance(obj, torch.Generator):
        return tuple(obj.get_state().tolist())
    if isinstance(obj, torch.nn.Module):
        tensors = list(obj.state_dict(keep_vars=True).values())
        return tuple((t._version, t.data_ptr()) for t in tensors) + tuple(m.training for m in obj.modules())
    state = obj.state_dict()
    tensors = [t for s in obj.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    groups = repr([{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]])
    return tuple((t._version, t.data_ptr()) for t in tensors) + (groups, len(tensors))


@dataclass
class Events:
    """What the sandbox reported during one test: rebound names, forbidden torch functions, a stop."""

    tampered: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)
    stopped: str | None = None


class Session:
    """The sandbox of one submission, as the tests see it."""

    def __init__(self, runner: Runner, timeout: float, forbidden: tuple[str, ...]):
        self.runner, self.timeout, self.forbidden = runner, timeout, forbidden
        self.count = 0
        self.callbacks: dict[int, object] = {}
        self.shared: dict[str, object] = {}  # the grader's helpers the notebook also defines, passed by name
        self.events = Events()
        self.resident: dict[int, tuple[int, tuple, object]] = {}  # id -> (handle, fingerprint, object)

    def _resident(self, args: tuple) -> dict[int, int]:
        """Handles of the modules, optimizers and generators of ``args`` already in the sandbox, unchanged since.

        If any of them is new or changed here, none is reused: all are sent again together, so that an
        optimizer and its module's parameters stay one object on the other side.
        """
        kinds = (torch.nn.Module, torch.optim.Optimizer, torch.Generator)
        objects = [a for a in args if isinstance(a, kinds)]
        known = {id(o): self.resident.get(id(o)) for o in objects}
        if all(k is not None and k[2] is o and k[1] == _fingerprint(o) for o, k in zip(objects, known.values())):
            return {i: k[0] for i, k in known.items()}
        for o in objects:
            self.count += 1
            self.resident[id(o)] = (self.count, (), o)
        return {}

    def _wrap(self, value, reuse: dict[int, int] | None = None):
        reuse = {} if reuse is None else reuse
        if id(value) in self.resident and self.resident[id(value)][2] is value:
            handle = self.resident[id(value)][0]
            return (OBJ, handle) if id(value) in reuse else (OBJ, handle, value)
        if isinstance(value, torch.Tensor):
            return raw_tensor(value)
        if isinstance(value, RemoteFunction):
            return (FN, "name", value.__name__)
        if isinstance(value, _PLAIN_FUNCTIONS):
            name = getattr(value, "__name__", "")
            if self.shared.get(name) is value:
                return (FN, "name", name)
            self.count += 1
            self.callbacks[self.count] = value
            return (FN, "callback", self.count)
        if isinstance(value, tuple | list):
            return type(value)(self._wrap(v, reuse) for v in value)
        if isinstance(value, dict) and type(value) is dict:
            return {k: self._wrap(v, reuse) for k, v in value.items()}
        return value

    def _answer_callback(self, message: dict) -> dict:
        """Run one of the test's own functions on arguments from the sandbox; hand back its result."""
        try:
            args, kwargs = load_data(message["args"])
            return {"payload": dumps(self.callbacks[message["callback"]](*args, **kwargs))}
        except Exception as err:  # noqa: BLE001 (the notebook's code sees the error, as it would at home)
            return {"error": f"{type(err).__name__}: {err}"}

    def call(self, name: str, args: tuple, kwargs: dict, keep: bool = False):
        """``name(*args, **kwargs)`` in the sandbox; the arguments it changed are changed here too."""
        if self.events.stopped:
            raise RuntimeError(f"the notebook's sandbox had stopped ({self.events.stopped})")
        self.count += 1
        key = self.count
        reuse = self._resident(tuple(args))
        payload = dumps(self._wrap((tuple(args), dict(kwargs)), reuse))
        try:
            reply = self.runner.request("call", self.timeout + 30, self._answer_callback, name=name, payload=payload,
                                        timeout=self.timeout, forbidden=list(self.forbidden),
                                        key=key if keep else 0)
        except Exception as err:
            self.events.stopped = str(err)
            raise RuntimeError(f"the notebook's sandbox stopped during {name}(...): {err}") from err
        self.events.tampered |= set(reply.get("tampered", ()))
        self.events.forbidden |= set(reply.get("forbidden", ()))
        if reply["error"]:
            raise _rebuilt(name, reply["error"], self.timeout)
        try:
            result, synced = load_data(reply["data"])
        except Exception as err:
            raise AssertionError(f"{name} returned something the grader cannot read back ({err})") from err
        for arg, state in zip(args, synced):
            _apply(arg, state)
            if id(arg) in self.resident:
                handle, _, obj = self.resident[id(arg)]
                self.resident[id(arg)] = (handle, _fingerprint(obj), obj)
        return result, key

    def backward(self, key: int, grads: list) -> list:
        """The gradients of the inputs of kept call ``key``."""
        payload = dumps([None if g is None else g.detach() for g in grads])
        reply = self.runner.request("backward", self.timeout + 30, key=key, payload=payload, timeout=self.timeout)
        if reply["error"]:
            raise _rebuilt("backward", reply["error"], self.timeout)
        return load_data(reply["data"])


def _rebuilt(name: str, error: dict, timeout: float) -> BaseException:
    """The notebook's exception, as one of Python's own (its message), raised here."""
    if error["ename"] == "CellTimeout":
        return TimeoutError(f"{name} ran past the {timeout:g} s limit")
    cls = getattr(builtins, error["ename"], None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(error["evalue"])
    return RuntimeError(f"{error['ename']}: {error['evalue']}")


def _apply(arg, state) -> None:
    """Copy the state an argument had after the call in the sandbox back into the grader's object."""
    if state is None:
        return
    if isinstance(arg, torch.Tensor) and isinstance(state, torch.Tensor):
        if state.shape == arg.shape and not torch.equal(state.to(arg.dtype), arg.detach()):
            with torch.no_grad():
                arg.copy_(state)
    elif isinstance(arg, torch.nn.Module):
        arg.load_state_dict(state)
    elif isinstance(arg, torch.Generator):
        arg.set_state(state)
    elif isinstance(arg, random.Random):
        arg.setstate(state)
    elif isinstance(arg, dict):
        arg.clear()
        arg.update(state)
    elif isinstance(arg, collections.deque | list):
        arg.clear()
        arg.extend(state)


class _RemoteGrad(torch.autograd.Function):
    """A call whose inputs require grad: forward in the sandbox, backward too."""

    @staticmethod
    def forward(ctx, fn, args, kwargs, *inputs):
        result, key = fn.session.call(fn.__name__, args, kwargs, keep=True)
        ctx.fn, ctx.key, ctx.tuple = fn, key, isinstance(result, tuple | list)
        outputs = tuple(result) if ctx.tuple else (result,)
        return outputs if ctx.tuple else outputs[0]

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, None, *ctx.fn.session.backward(ctx.key, list(grads)))


class RemoteFunction:
    """A function of the notebook, called from a test: it runs in the sandbox and returns data."""

    def __init__(self, session: Session, name: str, code_names: list[str]):
        self.session, self.__name__, self.__qualname__ = session, name, name
        self.__code__ = types.SimpleNamespace(co_names=tuple(code_names), co_consts=())  # for check_no_calls

    def __call__(self, *args, **kwargs):
        inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if inputs and torch.is_grad_enabled():
            return _RemoteGrad.apply(self, args, kwargs, *inputs)
        return self.session.call(self.__name__, args, kwargs)[0]

    def __repr__(self) -> str:
        return f"<function {self.__name__} of the notebook>"


@contextlib.contextmanager
def captured():
    """Everything printed inside, as a string in the yielded list (for the feedback)."""
    out, box = io.StringIO(), []
    with contextlib.redirect_stdout(out):
        try:
            yield box
        finally:
            box.append(out.getvalue())
