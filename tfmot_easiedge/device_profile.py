"""``python -m tfmot_easiedge.device_profile DIR --out table.json``: time a profile directory on this device.

The directory is what ``easiedge profile MODEL --out DIR`` wrote on the host (segment models and a
``manifest.json``); this needs only numpy and the runtime (``ai_edge_litert`` or ``onnxruntime``), no
TensorFlow and no Keras, so it runs on a Raspberry Pi or a Jetson. Copy ``table.json`` back and prune with
``easiedge prune ... --budget latency:0.5 --latency-table table.json``.

Exit codes: 0 written, 2 bad input (one line ``device_profile: error: ...``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command line of the device profiler."""
    p = argparse.ArgumentParser(prog="python -m tfmot_easiedge.device_profile",
                                description="Time the segment models of a profile directory; write the latency table.")
    p.add_argument("directory", help="a directory written by 'easiedge profile'")
    p.add_argument("--out", required=True, help="the latency table to write (JSON)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--runs", type=int, default=20, help="timed invokes per file and round (default 20)")
    p.add_argument("--warmup", type=int, default=10, help="untimed invokes per file and round (default 10)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the profiler; returns the exit code."""
    from tfmot_easiedge.latency.runner import run_profile

    args = build_parser().parse_args(argv)
    try:
        table = run_profile(args.directory, threads=args.threads, rounds=args.rounds, runs=args.runs,
                            warmup=args.warmup)
        table.save(args.out, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as e:
        print(f"device_profile: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(table.segments)} segments, {table.runtime_version}, {table.threads} thread(s), "
          f"full model {table.extra['model_ms']:.3f} ms, timed in {table.extra['timing_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
