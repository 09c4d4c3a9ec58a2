"""Multi-process training on PyTorch's own engine: torchrun + DistributedDataParallel.

    torchrun --nproc-per-node 2 -m rnnkit train --out runs/ddp          # one machine
    rnnkit train --nproc 2 --out runs/ddp                               # the same, launched for you
    rnnkit train --nproc 4 --device cuda --out runs/ddp                 # one process per GPU
    torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d \\
        --rdzv-endpoint host0:29500 --rdzv-id ddp -m rnnkit train --out /shared/runs/ddp  # each

torchrun starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous; :func:`setup` joins the process group: nccl when the run is on CUDA (each process on
its own GPU, ``cuda:LOCAL_RANK``), gloo otherwise (CPU processes). The tensors the ranks
exchange are made on the run's device (nccl reduces CUDA tensors only). What each rank does
(``rnnkit.trainer.loop`` calls the functions here):

- data: the global batch of B streams is cut into contiguous blocks of B / world streams,
  rank r reading streams ``[r*B/W, (r+1)*B/W)`` of every batch (no sampler, no padding);
- gradients: DDP all-reduces (averages) them during ``backward``, so with equal shares every
  rank applies the gradient of the global batch's mean loss -- what one process with the
  whole batch computes;
- decisions: the loss used to skip non-finite steps is averaged over the ranks, validation
  runs on rank 0 and its figures are broadcast, and the reasons to stop (``--max-time``,
  SIGINT/SIGTERM) are combined every step, so all ranks take the same branch and stop at the
  same step;
- files: only rank 0 writes checkpoints, metrics and pictures and prints. The carried state
  is gathered into the global batch's order before saving, so a checkpoint looks exactly like
  a one-process run's: it resumes with any number of processes that divides the batch.

Not here: the training step itself (``rnnkit.trainer.loop``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from rnnkit.errors import UserError

#: stop reasons in the order that wins when ranks disagree (a signal beats the clock)
STOP_CODES = (None, "max_time", "interrupted")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone) and the
    device it trains on (what its collectives' tensors are made on)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """The contiguous block of the global batch's streams this rank reads."""
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device | None = None, timeout_s: float = 600.0) -> World:
    """Join the process group torchrun describes (a World of one without torchrun) on
    ``device`` (default: the CPU). On CUDA under torchrun, each process takes the GPU its
    ``LOCAL_RANK`` names (``torch.cuda.set_device``) and the group uses nccl; gloo otherwise."""
    device = torch.device("cpu") if device is None else torch.device(device)
    if not launched_by_torchrun():
        return World(device=device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        count = torch.cuda.device_count()
        if local >= count:
            raise UserError(
                f"process {local} of this machine has no GPU of its own ({count} visible): "
                "start at most one process per GPU"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return World(dist.get_rank(), dist.get_world_size(), device)


def teardown(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.barrier()  # no rank leaves while another still talks to it
        dist.destroy_process_group()


def check_divisible(world: World, batch_size: int) -> None:
    """The global batch splits into equal contiguous shares. (Whether a task's batches split
    at all is the task's to say: ``Task.check_world``.)"""
    if not world.enabled:
        return
    if batch_size % world.size:
        raise UserError(
            f"--batch-size {batch_size} must be divisible by the {world.size} processes (each "
            "reads an equal block of the streams)"
        )


def mean_over_ranks(world: World, value: torch.Tensor) -> torch.Tensor:
    """``value`` (a scalar tensor) averaged over the ranks, on the run's device; itself when
    alone."""
    if not world.enabled:
        return value
    total = value.detach().to(world.device, copy=True)
    dist.all_reduce(total)
    return total / world.size


def agree_on_stop(world: World, reason: str | None) -> str | None:
    """Every rank's stop reason combined: the strongest one (see ``STOP_CODES``) for all."""
    if not world.enabled:
        return reason
    code = torch.tensor(
        [STOP_CODES.index(reason) if reason in STOP_CODES else 0], device=world.device
    )
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    # reasons outside STOP_CODES (max_steps, epochs, early stopping) are the same on every rank
    return reason if reason not in STOP_CODES else STOP_CODES[int(code)]


def broadcast(world: World, obj):
    """Rank 0's ``obj`` on every rank (for small Python values: validation figures)."""
    if not world.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(world: World, tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """The ranks' blocks of ``tensor`` concatenated along ``dim`` (rank order), on every rank."""
    if not world.enabled:
        return tensor
    tensor = tensor.to(world.device).contiguous()
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor)
    return torch.cat(parts, dim=dim)


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_ranks_agree(world: World, model: torch.nn.Module) -> str | None:
    """After training: the digests of every rank's weights, compared. Returns a line for the
    log (rank 0), or raises if any rank's weights differ from rank 0's (a DDP bug)."""
    if not world.enabled:
        return None
    digests = [None] * world.size
    dist.all_gather_object(digests, parameters_digest(model))
    if len(set(digests)) != 1:
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        raise RuntimeError(f"the weights of ranks {bad} differ from rank 0's after training")
    return f"parameters identical on all {world.size} ranks (sha256 {digests[0][:16]})"


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """``rnnkit train --nproc N ARGS`` -> torchrun on this machine running ``rnnkit train ARGS``.

    ``--standalone`` lets torchrun pick a free local rendezvous port; torchrun itself sets
    OMP_NUM_THREADS=1 per process unless it is set (pass --threads to choose)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "rnnkit",
        "train",
        *argv,
    ]


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the workers must not launch again)."""
    return strip_option(argv, "--nproc")


def worker_argv(argv: list[str], device: torch.device) -> list[str]:
    """What each torchrun process runs ``rnnkit train`` with: ``argv`` without ``--nproc``
    (they must not launch again) and with ``--device`` as the launcher resolved it (its type:
    ``cuda`` processes each take the GPU of their LOCAL_RANK)."""
    return [*strip_option(strip_nproc(argv), "--device"), "--device", device.type]


def strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            out.append(arg)
    return out


def check_gpus(nproc: int, device: torch.device, text: str) -> None:
    """``--nproc N`` on ``device`` (as ``--device text`` resolved): the CPU, or CUDA with one
    GPU per process (the processes take cuda:0 to cuda:N-1 by their LOCAL_RANK)."""
    if device.type == "mps":
        raise UserError("--nproc runs on the CPU or on CUDA GPUs, not on --device mps")
    if device.type != "cuda":
        return
    if text.startswith("cuda:"):
        raise UserError(
            f"--nproc {nproc} --device {text}: each process takes the GPU of its local rank "
            "(cuda:0, cuda:1 ...); give --device cuda"
        )
    count = torch.cuda.device_count()
    if nproc > count:
        raise UserError(
            f"--nproc {nproc} on CUDA needs {nproc} GPUs (one per process); {count} visible"
        )


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc; empty where that cannot be read)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(p) for p in task.read_text().split()]
    return children


def launch(nproc: int, argv: list[str], *, share_cores: bool = True) -> int:
    """Run ``rnnkit train ARGV`` in ``nproc`` processes under torchrun; its exit status, or 130
    if Ctrl-C (or SIGTERM) came. ``share_cores``: OMP_NUM_THREADS = cores // nproc, unless the
    environment sets it.

    torchrun runs in its own session, so Ctrl-C reaches only this process, which passes it to
    the training processes: they stop together, rank 0 saves, and they exit 0, so torchrun ends
    quietly. torchrun is never killed mid-save: this waits for it."""
    env = dict(os.environ)
    if share_cores and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    launcher = subprocess.Popen(torchrun_command(nproc, argv), env=env, start_new_session=True)
    interrupted = []

    def forward(signum, frame) -> None:
        interrupted.append(signum)
        for pid in child_pids(launcher.pid) or [launcher.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = launcher.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 130 if interrupted else code
