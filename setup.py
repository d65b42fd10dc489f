"""Build the scorer's compiled kernels (plain C over the CPython C API and the buffer protocol: no
numpy headers, no build-time dependency beyond a C compiler). Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
KERNELS = {
    "entitykit.evaluation._ckernel": "entitykit/evaluation/_ckernel.c",  # per-image IoU + matching
    "entitykit.evaluation._cscan": "entitykit/evaluation/_cscan.c",  # COCO JSON -> columns
    "entitykit.evaluation._cband": "entitykit/evaluation/_cband.c",  # boundary bands (Boundary APe)
}

setup(
    ext_modules=[
        Extension(name, [src], extra_compile_args=["-O3", "-std=c11"])
        for name, src in KERNELS.items()
        if (HERE / src).exists()
    ]
)
