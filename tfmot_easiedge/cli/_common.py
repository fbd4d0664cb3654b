"""What every ``easiedge`` command shares: the one-line ``UserError``, printing, and the common options."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

#: Runtimes ``--latency`` and ``bench --runtime`` accept.
LATENCY_RUNTIMES = ("keras", "tflite", "onnxruntime")


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one-line ``UserError``s, like every other input error."""

    def error(self, message: str) -> NoReturn:  # raises instead of exiting
        raise UserError(f"{message} (see: {self.prog} --help)")


def say(args: argparse.Namespace, *parts: object) -> None:
    """Prints ``parts`` unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(*parts, flush=True)


def warn(message: str) -> None:
    """Prints ``easiedge: warning: message`` to stderr."""
    print(f"easiedge: warning: {message}", file=sys.stderr, flush=True)


def names(text: str | None) -> list[str]:
    """The names of a comma-separated list, blanks dropped."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"32,32,3"`` (or ``32x32x3``) as a tuple of sizes; None for None."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise UserError(f"--input-shape {text!r} does not parse: expected sizes like 32,32,3 (height, width, channels)")
    return shape


def runtimes(text: str | None) -> list[str]:
    """The runtimes of a comma-separated list (``onnx`` and ``litert`` are aliases), each once."""
    if not text:
        return []
    found = [r.strip().lower() for r in text.split(",") if r.strip()]
    aliases = {"onnx": "onnxruntime", "litert": "tflite"}
    found = [aliases.get(n, n) for n in found]
    bad = [n for n in found if n not in LATENCY_RUNTIMES]
    if bad:
        raise UserError(f"unknown runtime {bad[0]!r}; expected a comma-separated list of {', '.join(LATENCY_RUNTIMES)}")
    return list(dict.fromkeys(found))


def model_options(p: argparse.ArgumentParser) -> None:
    """``--unsafe``, ``--input-shape``, ``--classes``, ``--weights``: how the model argument is loaded."""
    p.add_argument("--unsafe", action="store_true", help="allow models with Lambda layers (runs their code)")
    p.add_argument("--input-shape", metavar="H,W,C", help="input shape of a keras:NAME model, e.g. 32,32,3")
    p.add_argument("--classes", type=int, metavar="N", help="output classes of a keras:NAME model")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|none|FILE",
                   help="weights of a keras:NAME model: imagenet (downloaded once by Keras; default), none "
                        "(random) or a weights file")


def data_options(p: argparse.ArgumentParser, *, required: bool, help_text: str) -> None:
    """``--data`` and ``--rescale``."""
    p.add_argument("--data", required=required, metavar="SPEC", help=help_text)
    p.add_argument("--rescale", metavar="SCALE[,OFFSET]",
                   help="inputs become x*SCALE+OFFSET, e.g. 1/255 or 1/127.5,-1 (default: raw 0..255 pixels)")


def output_options(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--overwrite``, ``--quiet``."""
    p.add_argument("--out", required=True, metavar="DIR", help="directory to create for the results")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory holding earlier results")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
