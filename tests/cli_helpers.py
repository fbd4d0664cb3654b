"""What the CLI tests share: run ``easiedge`` in-process and check a one-line usage error."""
from __future__ import annotations

from tfmot_easiedge import cli


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``easiedge ARGV`` (the arguments, or one list of them)."""
    if len(argv) == 1 and isinstance(argv[0], (list, tuple)):
        argv = tuple(argv[0])
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, text: str) -> None:
    """Exit code 2 and one ``easiedge: error:`` line on stderr that contains ``text``."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("easiedge: error: ") and text in lines[0], err
