"""Build script: the pure-Python packages come from pyproject.toml; this adds the
native core (``byoc_sdk._native``) from ``cpp/`` with pybind11 once it has sources."""

from glob import glob

from setuptools import setup

sources = sorted(glob("cpp/src/*.cpp"))
ext_modules = []
cmdclass = {}
if sources:
    from pybind11.setup_helpers import Pybind11Extension, build_ext

    ext_modules = [
        Pybind11Extension(
            "byoc_sdk._native",
            sources,
            include_dirs=["cpp/include"],
            cxx_std=17,
        )
    ]
    cmdclass = {"build_ext": build_ext}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
