"""Build entry point.

The native rasteriser in ``cuda_ext/`` is built from here once it has sources; until then this is a plain
Python install, so ``pip install -e .`` works on any machine.
"""
from pathlib import Path

from setuptools import setup


def native_extensions():
    sources = sorted(Path(__file__).parent.joinpath("cuda_ext").glob("**/*.cpp"))
    if not sources:
        return []  # nothing native to build yet
    raise RuntimeError("cuda_ext/ has C++ sources but setup.py does not know how to build them yet")


setup(ext_modules=native_extensions())
