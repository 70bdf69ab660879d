"""Build the C extension that reads a JPEG's DCT coefficients through libjpeg(-turbo).

Everything else about the package lives in pyproject.toml.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "freqdata._jpegcoef",
            sources=["freqdata/_jpegcoef.c"],
            include_dirs=[numpy.get_include()],
            libraries=["jpeg"],
            extra_compile_args=["-O2", "-std=c99", "-Wall"],
        )
    ]
)
