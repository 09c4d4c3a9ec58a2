"""The UCR/UEA archive sets that sktime's wheel ships, copied out as ``.ts`` files.

    pip install 'rnnkit[bench]'                          # sktime's wheel holds the files
    python benchmarks/ucr_data.py --out data/ucr         # data/ucr/<Name>_{TRAIN,TEST}.ts
    rnnkit train --preset ucr data/ucr/JapaneseVowels_TRAIN.ts --out runs/vowels

Copies the official train and test files of each set (default: the three of
``benchmarks/ucr.py``) and prints their sizes. sktime is found, never imported.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ucr import SETS, set_files  # noqa: E402


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, metavar="DIR", help="write the .ts files here")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in args.sets:
        for source in set_files(name, out, quick=False):
            target = out / source.name
            shutil.copyfile(source, target)
            cases = sum(1 for line in target.open(encoding="utf-8") if line[:1] not in "#@\n")
            print(f"{target}: {cases:,} sequences")
            written.append(target)
    return written


if __name__ == "__main__":
    main()
