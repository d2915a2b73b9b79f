"""Watch the process tree PyTriton starts, and take all of it down when the server stops.

``fashion-serve`` is one Python process; PyTriton starts ``tritonserver`` as its child, and Triton starts one
``triton_python_backend_stub`` per model instance (each with helper processes of its own). The stubs and this
process exchange batches through shared memory in ``/dev/shm``. Neither PyTriton 0.7 nor Triton 2.51 notices a
stub that died: the server stays ready while every request to that model gets ``Stub process ... is not
healthy``, and a stop under load can leave stubs and shared memory behind. So:

* :meth:`Supervisor.check` (every ``WATCH_PERIOD_S``) fails when tritonserver exited, a stub died (gone or a
  zombie), or PyTriton's inference threads stopped; ``fashion-serve`` then stops and exits non-zero so an
  orchestrator restarts it (PyTriton cannot restart one model's stub: its handshake is made once, at load).
* :meth:`Supervisor.shutdown` stops Triton (which refuses new requests and finishes those in flight), then
  SIGKILLs every process of the tree still alive and removes the shared-memory segments the tree had mapped.

Linux only (``/proc``); elsewhere the watch sees tritonserver and PyTriton's threads, not the stubs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Seconds between two checks of the process tree.
WATCH_PERIOD_S = 1.0
#: Seconds the models get to finish the requests in flight when the server stops.
DRAIN_TIMEOUT_S = 10.0
#: Seconds ``shutdown`` gives PyTriton's stop (Triton's own exit timeout included) before killing the tree.
STOP_TIMEOUT_S = 30.0
STUB_NAME = "triton_python_b"  # /proc/PID/comm of triton_python_backend_stub (15 characters)
PROC = Path("/proc")
SHM = Path("/dev/shm")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first), from /proc; empty where /proc is missing."""
    out: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop(0)
        if child not in out:
            out.append(child)
            todo += _children(child)
    return out


def _comm(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status and "\nState:\tX" not in status


def stub_name(pid: int) -> str:
    """The model instance a stub serves (``fashion_0_0``), read from its command line."""
    try:
        args = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    names = [a.decode(errors="replace") for a in args if a.count(b"_") >= 2 and b"/" not in a and b"-" not in a]
    return names[-1] if names else f"pid {pid}"


def shm_segments(pids: list[int]) -> set[str]:
    """Names of the /dev/shm files these processes have mapped."""
    names: set[str] = set()
    for pid in pids:
        try:
            maps = (PROC / str(pid) / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            where = line.find(f"{SHM}/")
            if where >= 0:
                names.add(line[where + len(str(SHM)) + 1 :].split(" ")[0])
    return names


@dataclass
class Shutdown:
    """What stopping took: processes that had to be killed, segments removed, tritonserver's own status."""

    killed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    triton_status: int | None = None
    timed_out: bool = False

    @property
    def clean(self) -> bool:
        return not self.killed and not self.timed_out and self.triton_status in (0, None)


class Supervisor:
    """Tracks the tree of one started ``pytriton.triton.Triton``; see the module docstring."""

    def __init__(self, triton, expected_stubs: int):
        self.triton = triton
        self.expected_stubs = expected_stubs
        self.pids: dict[int, str] = {}  # every process seen in the tree: pid -> what it was
        self.stubs: dict[int, str] = {}  # pid -> model instance
        self.segments: set[str] = set()
        self.triton_status: int | None = None
        self._lock = threading.Lock()

    @property
    def server(self):
        return getattr(self.triton, "_triton_server", None)  # PyTriton 0.7's TritonServer (private)

    def server_pid(self) -> int | None:
        command = getattr(self.server, "_tritonserver_running_cmd", None)
        return getattr(getattr(command, "process", None), "pid", None) if command is not None else None

    def started(self) -> None:
        """Call once tritonserver runs: record its exit status when it ends."""
        server = self.server
        if server is not None:
            server.register_on_exit(self._on_exit)

    def _on_exit(self, success: bool, exit_code: int) -> None:
        self.triton_status = 0 if success else exit_code

    def scan(self) -> None:
        """Record the tree's processes, stubs and shared-memory segments as they are now."""
        tree = [os.getpid()]
        server_pid = self.server_pid()
        if server_pid is not None:
            tree += [server_pid] + descendants(server_pid)
        mine = [p for p in descendants(os.getpid()) if p not in tree]
        with self._lock:
            for pid in tree[1:]:  # this process's own helpers (resource tracker) end with it
                if pid not in self.stubs and running(pid):
                    comm = _comm(pid)  # read again: a child seen between fork and exec still says "tritonserver"
                    self.pids[pid] = comm
                    if comm == STUB_NAME:
                        self.stubs[pid] = stub_name(pid)
            self.segments |= shm_segments(tree + mine)

    def check(self) -> str | None:
        """None while healthy, else why the server cannot serve any more."""
        self.scan()
        server = self.server
        if server is not None and not server.is_alive():
            status = f" (status {self.triton_status})" if self.triton_status not in (None, 0) else ""
            return f"tritonserver exited{status}"
        if PROC.is_dir() and len(self.stubs) < self.expected_stubs:  # one died before it was first seen
            return f"only {len(self.stubs)} of {self.expected_stubs} model processes (stubs) are running"
        for pid, name in list(self.stubs.items()):
            if not running(pid):
                return f"the model process {name} (triton_python_backend_stub, pid {pid}) died"
        for model in getattr(getattr(self.triton, "_model_manager", None), "models", []):
            if not model.is_alive():
                return f"PyTriton's inference threads for model {model.model_name} stopped"
        return None

    def wait_for_stubs(self, timeout_s: float = 30.0) -> None:
        """Until every model instance's stub is seen (Triton starts them while loading the models)."""
        deadline = time.monotonic() + timeout_s
        while len(self.stubs) < self.expected_stubs and time.monotonic() < deadline and PROC.is_dir():
            self.scan()
            time.sleep(0.1)

    def drain(self, timeout_s: float) -> bool:
        """Unload every model through Triton's repository API: each refuses new requests, finishes those in
        flight, and its stubs end normally. True when all were unloaded within ``timeout_s``."""
        server = self.server
        if server is None or not server.is_alive():
            return False
        try:
            import tritonclient.http as httpclient
            from pytriton.client.auth import create_auth_headers

            url = self.triton._url.split("://", 1)[-1]  # noqa: SLF001 - the address PyTriton itself talks to
            headers = create_auth_headers(self.triton.get_access_token(), "http")
            client = httpclient.InferenceServerClient(url, network_timeout=timeout_s)
            names = [m.model_name for m in self.triton._model_manager.models]  # noqa: SLF001
            for name in names:
                client.unload_model(name, headers=headers)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                states = {m["name"]: m.get("state") for m in client.get_model_repository_index(headers=headers)}
                if all(states.get(name) != "READY" and states.get(name) != "UNLOADING" for name in names):
                    return True
                time.sleep(0.1)
        except Exception:  # noqa: BLE001 - a failed drain is reported by the stop that follows
            return False
        return False

    def shutdown(self, say: Callable[[str], None]) -> Shutdown:
        """Drain and stop Triton, kill what survived, remove the shared memory the tree mapped."""
        self.scan()
        report = Shutdown()
        if not self.drain(DRAIN_TIMEOUT_S):
            say(f"the models did not unload within {DRAIN_TIMEOUT_S:.0f} s")
        stopper = threading.Thread(target=self.triton.stop, name="pytriton-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT_S)
        report.timed_out = stopper.is_alive()
        report.triton_status = self.triton_status
        for pid, what in self.pids.items():
            if running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                    report.killed.append(f"{self.stubs.get(pid, what)} (pid {pid})")
                except ProcessLookupError:
                    pass
        prefix = f"pytrtion{os.getpid()}-"  # PyTriton's Python-backend regions carry this process's pid
        leftovers = self.segments | {p.name for p in SHM.glob(f"{prefix}*")} if SHM.is_dir() else self.segments
        for name in sorted(leftovers):
            try:
                (SHM / name).unlink()
                report.removed.append(name)
            except OSError:
                continue
        if report.killed:
            say(f"killed {len(report.killed)} process(es) that did not stop: {', '.join(report.killed)}")
        if report.removed:
            say(f"removed {len(report.removed)} shared-memory segment(s) left in {SHM}")
        return report
