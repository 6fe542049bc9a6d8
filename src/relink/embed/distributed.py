"""The ``torch.distributed`` process group that ``relink embed --distributed`` runs in.

    torchrun --nproc_per_node 2 -m relink embed --distributed --cohort C --model M --out DIR

Rank ``r`` of ``W`` embeds shards ``r, r+W, ...``; rank 0 merges them in row order, so the result is a
one-process run's (byte-identical on the CPU) and any process count can resume any work folder. An
error on one rank stops every rank with that rank's message. Joining is checked first: the launch's
variables, then at most ``--timeout`` seconds for every rank to arrive (one line naming who did not);
only then is the group made, whose collectives may wait longer. ``relink audit --distributed`` uses it too.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

from ..errors import RelinkError


class TorchComm:
    """The :class:`relink.embed.run.Comm` of an initialised ``torch.distributed`` group: rank, size, a
    barrier, a sum of integer arrays, error gathering."""

    def __init__(self):
        import torch
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # nccl moves tensors that live on the rank's GPU (its current device); gloo, CPU tensors
        nccl = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def barrier(self) -> None:
        self.dist.barrier()

    def all_reduce_sum(self, a):
        """The element-wise sum of every rank's integer array ``a`` (int64), returned on every rank."""
        import numpy as np
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def gather_errors(self, error: tuple[str, bool] | None) -> list[tuple[str, bool]]:
        """Every rank's ``(message, is_bad_input)`` (``None``: no failure), messages prefixed with the rank."""
        gathered: list[tuple[str, bool] | None] = [None] * self.world_size
        self.dist.all_gather_object(gathered, error)
        return [(f"rank {r}: {e[0]}", bool(e[1])) for r, e in enumerate(gathered) if e]


class OtherRankFailed(RelinkError):
    """Another rank failed for a reason other than bad input (its finished work is kept for a re-run)."""


def sync(comm, failure: BaseException | None) -> None:
    """Meet the other ranks; raise this rank's failure, or the first other rank's (``comm`` None: just
    raise), so no rank waits for the others forever."""
    mine = None if failure is None else (str(failure) or failure.__class__.__name__, isinstance(failure, RelinkError))
    errors = comm.gather_errors(mine) if comm is not None else []
    if failure is not None:
        raise failure
    if errors:
        msg, bad_input = errors[0]
        raise (RelinkError if bad_input else OtherRankFailed)(msg)


JOIN_TIMEOUT = 600.0  # seconds a rank waits for the others to join (--timeout): minutes, not hours
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)  # rank 0 merges while the others wait at a barrier
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Launch:
    """What a torchrun launch tells one process: its rank among ``world`` and where rank 0 listens."""

    rank: int
    world: int
    local_rank: int
    addr: str
    port: int


def _int_var(environ, name: str, low: int, high: int, what: str) -> int:
    text = environ.get(name)
    if text is None or not text.strip():
        raise RelinkError(f"--distributed: {name} is not set (a torchrun launch sets {', '.join(LAUNCH_VARS)})")
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise RelinkError(f"--distributed: {name}={text[:40]!r} is not {what}")
    return value


def launch_from_env(environ=None) -> Launch:
    """The launch as the environment describes it; one line naming the variable that is missing or malformed."""
    import socket

    environ = os.environ if environ is None else environ
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        raise RelinkError("--distributed needs a torchrun launch (RANK and WORLD_SIZE are not set)")
    world = _int_var(environ, "WORLD_SIZE", 1, 1 << 16, "a process count from 1 to 65536")
    rank = _int_var(environ, "RANK", 0, world - 1, f"a rank from 0 to WORLD_SIZE - 1 = {world - 1}")
    local = _int_var(environ, "LOCAL_RANK", 0, world - 1, f"a local rank from 0 to WORLD_SIZE - 1 = {world - 1}")
    addr = environ.get("MASTER_ADDR", "").strip()
    if not addr:
        raise RelinkError(f"--distributed: MASTER_ADDR is not set (a torchrun launch sets {', '.join(LAUNCH_VARS)})")
    port = _int_var(environ, "MASTER_PORT", 1, 65535, "a port number from 1 to 65535")
    try:
        socket.getaddrinfo(addr, port)
    except (OSError, UnicodeError):
        raise RelinkError(f"--distributed: MASTER_ADDR={addr[:60]!r} is not a host this machine can find") from None
    return Launch(rank, world, local, addr, port)


@contextlib.contextmanager
def _native_stderr_silenced():
    """c10d logs each failed connection attempt from C++ straight to file descriptor 2; the user gets one line
    from relink instead, so that descriptor points at the null device while the store is reached."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _store(launch: Launch, timeout: float):
    """The launch's key-value store, reached within ``timeout`` seconds (under torchrun the agent hosts it)."""
    wait = datetime.timedelta(seconds=timeout)
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:
        with _native_stderr_silenced():
            return _connect(launch, wait, agent)
    except Exception as exc:  # noqa: BLE001 - torch raises several kinds; each means the same to the user
        if launch.rank == 0 and not agent:
            reason = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
            raise RelinkError(f"--distributed: rank 0 cannot listen at MASTER_ADDR:MASTER_PORT = "
                              f"{launch.addr}:{launch.port} ({reason})") from None
        raise RelinkError(f"--distributed: rank 0 did not arrive at MASTER_ADDR:MASTER_PORT = "
                          f"{launch.addr}:{launch.port} within --timeout {timeout:g} s") from None


def _connect(launch: Launch, wait: datetime.timedelta, agent: bool):
    """Under torchrun every rank is a client of the agent's store; launched by hand, rank 0 hosts it (without
    waiting for the others there: :func:`_meet` waits, and names who is missing)."""
    import torch.distributed as dist

    if agent:
        store = dist.TCPStore(launch.addr, launch.port, launch.world, False, wait)
        return dist.PrefixStore(f"/relink/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    store = dist.TCPStore(launch.addr, launch.port, launch.world, launch.rank == 0, wait, wait_for_workers=False)
    return dist.PrefixStore("/relink", store)


def _meet(store, launch: Launch, timeout: float) -> None:
    """Every rank announces itself and waits (at most ``timeout`` s) until all have; else one line naming
    the ranks that did not arrive."""
    import time

    store.set(f"arrived/{launch.rank}", "1")
    missing = list(range(launch.world))
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = [r for r in missing if not store.check([f"arrived/{r}"])]
        except Exception:  # noqa: BLE001 - the store went away: rank 0 stopped
            raise RelinkError("--distributed: lost rank 0 while waiting for the other ranks to join") from None
        if not missing:
            return
        if time.monotonic() > deadline:
            names = ", ".join(map(str, missing))
            raise RelinkError(f"--distributed: rank{'s' if len(missing) > 1 else ''} {names} of WORLD_SIZE="
                              f"{launch.world} did not arrive within --timeout {timeout:g} s")
        time.sleep(0.1)


def init_process_group(device: str = "auto", timeout: float = JOIN_TIMEOUT) -> str:
    """Join the torchrun group (as the module says); return the device this rank uses."""
    launch = launch_from_env()
    import torch
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(launch.local_rank)
        device = f"cuda:{launch.local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        store = _store(launch, timeout)
        _meet(store, launch, timeout)
        dist.init_process_group("nccl" if use_cuda else "gloo", store=store, rank=launch.rank,
                                world_size=launch.world, timeout=COLLECTIVE_TIMEOUT)
    return device


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
