"""``rnnkit train``: train a model (default: a character-level language model).

    rnnkit train [PATH ...] [--preset default] [--config FILE.toml] [--hidden 512 ...]
    rnnkit train --task classify data/names/ --out runs/names
    rnnkit train --resume runs/charlm --max-steps 8000
    rnnkit train --device cuda --precision bf16      (default --device auto: CUDA if available)
    rnnkit train --nproc 2 ...        (torchrun + DistributedDataParallel: training/distributed.py)

One flag per config field (``rnnkit.config``) and one argument group per task (each task's
options dataclass); which value wins -- defaults, preset, ``--config``, flags, or on
``--resume`` the saved run -- is ``rnnkit.config``'s rule. ``--device`` is not part of the
config: a run (a resumed one too) trains where it is run now, and is checked before any data is
read. Ctrl-C saves the run and exits 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnkit.commands.args import add_config_flags, add_device, config_flags, positive, use_device
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train a model (default: a character-level language model)"
    )
    train.add_argument(
        "--preset",
        help="a preset from rnnkit/configs (default: 'default' for --task lm, else the task's own)",
    )
    train.add_argument(
        "--config", metavar="FILE.toml", help="TOML with [data] [model] [train] [task]"
    )
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
    train.add_argument(
        "--nproc",
        type=positive,
        default=1,
        metavar="N",
        help="train in N processes on this machine (torchrun + DistributedDataParallel; "
        "--batch-size is the global batch, split evenly; on CUDA one process per GPU)",
    )
    add_device(train)
    add_config_flags(train)


def run(args: argparse.Namespace) -> int:
    from rnnkit.config import RunConfig, fresh_config, resume_overrides
    from rnnkit.trainer.loop import train
    from rnnkit.training import distributed

    device = use_device(args)  # a missing device: one line, before any data is read
    flags = config_flags(args)
    data = flags.get("data", {})
    if data.get("val") and "val_fraction" in data:
        raise UserError("--val-fraction has no effect with --val FILE (the file is the "
                        "validation split); drop one of them")  # fmt: skip
    if args.resume:  # the saved run's config, then the [train] flags given now
        config = RunConfig()
        config.train.out = args.resume
        flags = resume_overrides(flags, args.resume, args.config)
    else:
        config = fresh_config(flags, args.preset, args.config)
        _check_val(config, data)
    if args.nproc > 1:
        return _launch_torchrun(args, config, flags, device)
    if args.resume:
        result = train(config, resume=True, overrides=flags, device=device)
    else:
        result = train(config, device=device)
    if result.stopped == "interrupted":  # under torchrun, 0: the launcher reports the signal
        return 0 if distributed.launched_by_torchrun() else 130
    return 0


def _check_val(config, data: dict) -> None:
    """``--val FILE`` for a task that holds out ``--val-fraction`` of its data: one line."""
    from rnnkit.tasks import TASK_NAMES, get_task

    name = config.task.name
    if data.get("val") and not get_task(name).val_file:
        takers = " or ".join(t for t in TASK_NAMES if get_task(t).val_file)
        raise UserError(f"--val applies to --task {takers}; --task {name} holds out "
                        "--val-fraction of its data")  # fmt: skip


def _launch_torchrun(args: argparse.Namespace, config, flags: dict, device) -> int:
    """``rnnkit train --nproc N ...``: check the flags here (one-line errors before any process
    starts), then run ``torchrun --standalone --nproc-per-node N -m rnnkit train ...``; the
    processes get ``--device`` as resolved here (``cuda``: each takes its LOCAL_RANK's GPU)."""
    from rnnkit.checkpoint.lock import check_unlocked
    from rnnkit.checkpoint.runs import check_new_run_dir
    from rnnkit.config import COMMAND_LINE, apply_overrides, validate
    from rnnkit.tasks import get_task, task_options
    from rnnkit.tasks.saved import read_run_checkpoint
    from rnnkit.training import distributed

    if distributed.launched_by_torchrun():
        raise UserError("--nproc cannot be used inside torchrun (torchrun starts the processes)")
    if args.resume:
        _, config, _ = read_run_checkpoint(Path(args.resume) / "last")
        apply_overrides(config, flags, COMMAND_LINE)
    else:
        check_new_run_dir(Path(config.train.out))
    check_unlocked(config.train.out)  # rank 0 locks it; refused here, before any process starts
    validate(config)
    task_options(config)  # the task's own options, checked
    world = distributed.World(0, args.nproc)
    get_task(config.task.name).check_world(world)  # only a task whose batches split
    distributed.check_divisible(world, config.train.batch_size)
    distributed.check_gpus(args.nproc, device, args.device)
    argv = distributed.worker_argv(sys.argv[2:] if args.argv is None else args.argv, device)
    code = distributed.launch(args.nproc, argv, share_cores=not config.train.threads)
    if code not in (0, 130):
        raise UserError(
            f"training in {args.nproc} processes failed (torchrun exit status {code}; the "
            "processes' messages are above)"
        )
    return code
