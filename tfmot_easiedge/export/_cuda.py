"""The CUDA runtime library (``libcudart``) through ctypes: device count, memory, copies and one stream.

Enough to run a TensorRT engine without pycuda or cuda-python; loaded only when an engine is built or run.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys

import numpy as np

_MEMCPY_HOST_TO_DEVICE, _MEMCPY_DEVICE_TO_HOST = 1, 2


class TensorRTUnavailableError(RuntimeError):
    """TensorRT cannot run here: no CUDA GPU, no CUDA runtime, or a TensorRT version that lacks a feature."""


# --------------------------------------------------------------------------- CUDA runtime through ctypes


def _cudart_candidates() -> list[str]:
    names = []
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    if sys.platform == "win32":
        names += ["cudart64_13.dll", "cudart64_12.dll", "cudart64_110.dll"]
    else:
        names += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    # pip wheels (nvidia-cuda-runtime-cu12 / nvidia-cuda-runtime) put it under site-packages/nvidia/.
    for entry in sys.path:
        names += sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib", "libcudart.so*")), reverse=True)
    return names


def _load_cudart():
    errors = []
    for name in _cudart_candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as err:
            errors.append(f"{name}: {err}")
    raise TensorRTUnavailableError(
        "TensorRT needs the CUDA runtime library (libcudart) and an NVIDIA GPU; libcudart could not be "
        "loaded (install the NVIDIA driver and CUDA runtime, e.g. pip install nvidia-cuda-runtime-cu12)")


def cuda_device_count() -> int:
    """Number of CUDA devices the CUDA runtime sees; 0 when there is no runtime library or no GPU."""
    try:
        lib = _load_cudart()
    except TensorRTUnavailableError:
        return 0
    count = ctypes.c_int(0)
    if lib.cudaGetDeviceCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


class CudaRuntime:
    """The handful of CUDA runtime calls an engine run needs: malloc/free, copies, one stream."""

    def __init__(self) -> None:
        self.lib = _load_cudart()
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"CUDA {what} failed with error code {code}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), "cudaMalloc")
        if ptr.value is None:
            raise RuntimeError("CUDA cudaMalloc returned a null pointer")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._check(self.lib.cudaMemcpy(ctypes.c_void_p(ptr), array.ctypes.data_as(ctypes.c_void_p),
                                        array.nbytes, _MEMCPY_HOST_TO_DEVICE), "cudaMemcpy to device")

    def to_host(self, array: np.ndarray, ptr: int) -> None:
        self._check(self.lib.cudaMemcpy(array.ctypes.data_as(ctypes.c_void_p), ctypes.c_void_p(ptr),
                                        array.nbytes, _MEMCPY_DEVICE_TO_HOST), "cudaMemcpy to host")

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def destroy(self, stream: int) -> None:
        self.lib.cudaStreamDestroy(ctypes.c_void_p(stream))
