"""A NumPy ``.npz`` archive with ``x`` (inputs, batch first) and ``y`` (labels); ``class_names`` optional.

``y`` may hold class indices ``[N]`` / ``[N, 1]`` or one-hot rows ``[N, classes]``. The archive is read
with ``allow_pickle=False``: object arrays (which run code on load) are refused.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x=np.zeros((3, 4, 4, 1)), y=[0, 1, 1])
    >>> read_npz(path).num_classes
    2
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from tfmot_easiedge.data._common import LoadedData, make_data
from tfmot_easiedge.data.batches import DataError


def read_npz(path: str | os.PathLike, *, limit: int | None = None) -> LoadedData:
    """Loads an ``.npz`` archive (see the module docstring).

    Raises:
        DataError: not a readable ``.npz``, ``x`` or ``y`` missing, empty, or of different lengths.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise DataError(f"{path}: no array {' or '.join(repr(k) for k in missing)}; found "
                                f"{sorted(archive.files)}, expected 'x' (inputs) and 'y' (labels)")
            x, y = archive["x"], archive["y"]
            names = archive["class_names"].tolist() if "class_names" in archive.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({str(e).splitlines()[0]})") from None
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return make_data(x, y, str(path), class_names=names)
