"""The sandbox one submission runs in: Debian's bubblewrap (``bwrap``), and how the grader talks to it.

Inside it the notebook sees a read-only system (``/usr``), Python and the course's virtual environment and
package, a private ``/tmp``, its own ``/proc`` and ``/dev``, and one writable folder: the scratch folder that
holds its notebook and the values it exchanges with the grader. No network, no other process (its own PID
namespace: when the grading of the submission ends, every process it started ends with it), no course
folder, no instructor source, no gradebook, no other student's work. Each request has a time limit, the
whole run a wall-clock limit, the process a memory limit (``RLIMIT_AS``).

``open_runner(..., sandboxed=False)`` runs the same code without bubblewrap: only for trusted notebooks or
a machine that cannot have it (``--no-sandbox``, which the report flags).
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


class SandboxStopped(RuntimeError):
    """The sandbox stopped answering (a wall-clock limit, the memory limit, a crash): it has been ended."""


def sandbox_problem() -> str | None:
    """None when bubblewrap can make a sandbox here; otherwise why not."""
    if sys.platform != "linux":
        return f"bubblewrap (bwrap) needs Linux; this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    trial = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if trial.returncode:
        return f"bwrap cannot create namespaces here: {trial.stderr.strip()}"
    return None


def bwrap_command(scratch: Path, argv: list[str]) -> list[str]:
    """``argv`` inside a fresh sandbox whose only writable folder is ``scratch``."""
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), str(target)]
        elif target.exists():
            cmd += ["--ro-bind", str(target), str(target)]
    # The private /tmp first: the course and its venv may live under /tmp (a clone there), and a bind made
    # before the tmpfs would be hidden by it.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    read_only = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PACKAGE}
    for path in sorted(read_only):
        if not str(path).startswith("/usr/"):
            cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
            "--bind", str(scratch), str(scratch), "--chdir", str(scratch), "--clearenv"]
    env = {"HOME": str(scratch), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(scratch / ".matplotlib"), "KARPA_HEADLESS": "1"}
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--", *argv]


class Runner:
    """A running notebook (karpa_lab.autograde.runner) behind a pipe; every request has a deadline."""

    def __init__(self, scratch: Path, sandboxed: bool, memory_bytes: int, wall_clock: float):
        argv = [sys.executable, "-I", "-m", "karpa_lab.autograde.runner"]
        env = None if sandboxed else {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HOME": str(scratch)}
        self.deadline = time.monotonic() + wall_clock
        self.proc = subprocess.Popen(
            bwrap_command(scratch, argv) if sandboxed else argv, cwd=scratch, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes)))
        self.buffer = b""

    def _line(self, limit: float) -> dict:
        end = min(time.monotonic() + limit, self.deadline)
        while b"\n" not in self.buffer:
            left = end - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16) if ready else b""
            if not chunk:
                why = "it ended (out of memory, or it exited)" if ready else "no answer in time"
                self.close()
                raise SandboxStopped(why)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def request(self, op: str, limit: float, callback=None, **fields) -> dict:
        """Send one request and wait (at most ``limit`` s, and never past the wall clock) for its answer.

        While it waits, ``callback(message)`` answers the calls the notebook makes back to the grader's own
        helpers (a test hands a function to the notebook's code); it returns the reply to send.
        """
        if self.proc.poll() is not None:
            raise SandboxStopped("it had already ended")
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError as err:
            self.close()
            raise SandboxStopped("it ended") from err
        while True:
            message = self._line(limit)
            if "callback" not in message:
                return message
            reply = callback(message) if callback else {"error": "no callback expected"}
            self.proc.stdin.write((json.dumps(reply) + "\n").encode())
            self.proc.stdin.flush()

    def close(self) -> None:
        """End the runner and everything it started (the whole sandbox)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except BrokenPipeError:
                pass
