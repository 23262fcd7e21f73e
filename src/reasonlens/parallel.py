"""Several processes of one job (`accelerate launch --num_processes N`, torchrun): who is who.

    world = current_world()          # World(rank=0, size=1) in a plain run
    mine = world.batches(n_batches)  # batch indices this process computes: rank, rank+N, ...
    rows = world.gather(my_rows)     # every process's list, on every process, in rank order

Data-parallel capture and evaluation split their work by *batches*, each batch exactly the
one a 1-process run forms, so every row is computed from the same padded batch and the
merged result is identical to a 1-process run's (rows in input order). Rank 0 alone writes a
run directory and holds its lock (`runs.lock`: other ranks never take it); the others write
only what is theirs by construction (a store's shards) and wait at a barrier before rank 0
marks the run complete.

The process group is the one accelerate sets up (`PartialState`): gloo on CPUs, NCCL on GPUs;
each process then uses its own device (`world.device`). On a machine with no GPU, start the
processes with `accelerate launch --multi_gpu --num_processes N` (torchrun underneath; the
processes then find no GPU and use gloo): accelerate 1.x's `--cpu` flag runs ONE process
whatever `--num_processes` says (unless started through mpirun).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from reasonlens.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: str | None = None  # this process's device under a launcher ("cuda:1", "cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def mine(self, index: int) -> bool:
        """Whether batch `index` is this process's (round robin)."""
        return index % self.size == self.rank

    def batches(self, n: int) -> list[int]:
        return [i for i in range(n) if self.mine(i)]

    def barrier(self) -> None:
        if self.parallel:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in rank order, on every process."""
        if not self.parallel:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if not self.parallel:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_size() -> int:
    """The number of processes a launcher started (1 in a plain run)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def launched_rank() -> int:
    """This process's rank in a launched job (0 in a plain run), from the launcher's env."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


_WORLD: World | None = None


def current_world() -> World:
    """This process's place in the job; sets up the process group on first use."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if launched_size() == 1:
        _WORLD = World()
        return _WORLD
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on a machine with no GPU
    _WORLD = World(state.process_index, state.num_processes, str(state.device))
    return _WORLD


def process_device(world: World, device: str | None) -> str | None:
    """The device a process of a launched job loads its model on: its own GPU when the user
    asked for auto (or cuda), the CPU when the job runs on CPUs; as asked otherwise."""
    if not world.parallel or world.device is None:
        return device
    if device in (None, "auto") or (device == "cuda" and world.device.startswith("cuda")):
        return world.device
    if device not in ("cpu",) and device != world.device:
        raise UserError(
            f"--device {device} under a launch of {world.size} processes: each process uses "
            f"its own device ({world.device} here); leave --device auto"
        )
    return device


def refuse_launch(what: str) -> None:
    """A study's stages (data, training, read-outs, analyses) run in one process: under a
    launch of several, each process would run every stage into the same run directory. Its
    training stages launch themselves across processes (``--processes N``)."""
    n = launched_size()
    if n > 1:
        raise UserError(
            f"the {what} study runs in one process, but this is one of {n} launched processes: "
            f"run it without accelerate launch and give --processes {n} (its training stages "
            "are then launched across that many processes)"
        )


def check_processes(n: Any) -> int:
    """A number of processes to launch: a whole number of at least 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"--processes must be a whole number of at least 1, got {n!r}")
    return n


def refuse_fsdp_on_cpus() -> None:
    """accelerate runs FSDP (and DeepSpeed) on GPUs only: launched with such a config on a
    machine with none, its processes fall back to plain data parallelism, each holding the
    whole model. Say so rather than run a job that is not what was asked for."""
    import torch

    wants = [
        name
        for name, var in (
            ("FSDP", "ACCELERATE_USE_FSDP"),
            ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"),
        )
        if os.environ.get(var, "").lower() == "true"
    ]
    if wants and launched_size() > 1 and not torch.cuda.is_available():
        raise UserError(
            f"this launch asks for {wants[0]}, which accelerate runs on GPUs only: here (no "
            "GPU) each process would hold and train the whole model; launch with --multi_gpu "
            "--num_processes N for data parallelism on CPUs, or run the config on GPUs"
        )


def launch_command(target: list[str], processes: int) -> list[str]:
    """`accelerate launch` of ``target`` (``["-m", "reasonlens", ...]`` or a script and its
    arguments) in ``processes`` processes, one a GPU where there are GPUs, else on the CPU
    (gloo). ``--multi_gpu`` starts them through torchrun whatever the devices:
    accelerate 1.x's ``--cpu`` would run ONE process whatever --num_processes says."""
    import socket
    import sys
    from pathlib import Path

    with socket.socket() as sock:  # a free port: other jobs may be launching at the same time
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port), *target,
    ]  # fmt: skip


def refuse_sharding(world: World, device_map: str | None) -> None:
    """A model sharded across devices and a job of several processes do not mix here."""
    if world.parallel and device_map:
        raise UserError(
            f"--device-map shards one model across this machine's devices, but this is one of "
            f"{world.size} launched processes, each holding a whole model: run the sharded "
            "model in one process (no accelerate launch), or drop --device-map"
        )
