"""Build script: the pure-Python packages and their metadata come from pyproject.toml;
this adds the native core, ``byoc_sdk._native``, built from ``cpp/`` with pybind11."""

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

native = Pybind11Extension(
    "byoc_sdk._native",
    sorted(glob("cpp/src/*.cpp")),
    include_dirs=["cpp/include"],
    cxx_std=17,
    extra_compile_args=["-O2", "-fvisibility=hidden"],
    libraries=["dl"],
)

setup(ext_modules=[native], cmdclass={"build_ext": build_ext})
