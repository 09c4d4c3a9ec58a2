"""``rnnkit export``: a trained language model as one ONNX file (one step with state).

    rnnkit export runs/charlm                            # -> runs/charlm/model.onnx
    rnnkit export runs/charlm --format onnx -o charlm.onnx

The export and its check against PyTorch are ``rnnkit.export.checked.export_checked``.
"""

from __future__ import annotations

import argparse

from rnnkit.commands.args import add_device, add_threads, use_device, use_threads
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    from rnnkit.export.checked import DEFAULT_NAME, EXPORTERS, FORMATS

    export = commands.add_parser(
        "export", help="write a trained language model as one ONNX file (one step with state)"
    )
    export.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    export.add_argument("--format", default="onnx", help=f"file format: {', '.join(FORMATS)}")
    export.add_argument(
        "-o", "--output", metavar="FILE", help=f"where to write (default: DIR/{DEFAULT_NAME})"
    )
    export.add_argument(
        "--exporter",
        default=EXPORTERS[0],
        help="torch's ONNX exporter: torchscript (fast) or dynamo (torch.export)",
    )
    add_threads(export)
    add_device(
        export,
        help="checked like every command's --device, then not used: an ONNX file is "
        "device-free, so the graph is traced and checked against PyTorch on the CPU",
    )


def run(args: argparse.Namespace) -> int:
    """``rnnkit export DIR [--format onnx] [-o FILE]``: write, verify, print one line."""
    from rnnkit.export.checked import FORMATS, export_checked
    from rnnkit.export.onnx import OPSET

    use_threads(args)
    use_device(args)  # refused at once if missing; the export itself runs on the CPU
    if args.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    path, size, model, vocab, diff = export_checked(args.checkpoint, args.output, args.exporter)
    m = model.config
    sizes = m.stack()
    print(f"wrote {path} ({size / 1024:,.0f} KiB, ONNX opset {OPSET}, {m.cell} "
          f"{sizes}, vocab {len(vocab)}; max |difference| from PyTorch over "
          f"8 steps: {diff:.1e})")  # fmt: skip
    return 0
