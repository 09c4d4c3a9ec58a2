"""``rnnkit demo``: build a layer, print its shapes, check it against torch.nn (``rnnkit.demo``).

rnnkit demo --cell gru --hidden 64 --layers 3 --bidirectional
"""

from __future__ import annotations

import argparse

from rnnkit.commands.args import (
    add_device,
    add_threads,
    deprecated,
    positive,
    use_device,
    use_threads,
)


def add_parser(commands) -> None:
    from rnnkit.demo import LAYERS

    demo = commands.add_parser("demo", help="build a layer, print its shapes, check it vs torch.nn")
    demo.add_argument("--cell", choices=tuple(LAYERS), default="lstm", help="the layer")
    demo.add_argument("--input-size", type=positive, default=8, help="features per step H_in")
    demo.add_argument("--hidden", type=positive, default=32, help="hidden units per layer")
    demo.add_argument("--layers", type=positive, default=2, help="stacked recurrent layers")
    demo.add_argument("--batch", type=positive, default=4, help="sequences N")
    demo.add_argument("--length", type=positive, default=12, help="steps L")
    demo.add_argument("--bidirectional", action="store_true", help="both directions")
    demo.add_argument("--seed", type=int, default=0, help="random seed of weights and inputs")
    add_threads(demo)
    add_device(demo)
    deprecated(demo, "--hidden-size", "--hidden", type=positive, metavar="HIDDEN")
    deprecated(demo, "--num-layers", "--layers", type=positive, metavar="LAYERS")


def run(args: argparse.Namespace) -> int:
    from rnnkit.demo import demo

    use_threads(args)
    device = use_device(args)
    lines = demo(
        cell=args.cell,
        input_size=args.input_size,
        hidden_size=args.hidden,
        num_layers=args.layers,
        batch=args.batch,
        length=args.length,
        bidirectional=args.bidirectional,
        seed=args.seed,
        device=device,
    )
    print("\n".join(lines))
    return 0
