"""envsync's benchmarks in one run: the comparison (compare_bench.py), then the apply (apply_bench.py).

    .venv/bin/python benchmarks/bench.py [--records 1000000] [--repeat 3]
                                         [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

SQLite always; PostgreSQL too with --postgres. Each script prints its own figures (see their
docstrings for what is measured and the targets); run either alone for its other options.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="products in the largest comparison")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; medians are shown")
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server to run against too")
    args = parser.parse_args()
    common = ["--repeat", str(args.repeat)] + (["--postgres", args.postgres] if args.postgres else [])
    for script, extra in (("compare_bench.py", ["--records", str(args.records)]), ("apply_bench.py", [])):
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *extra, *common], check=True)


if __name__ == "__main__":
    main()
