# The C core is a cffi extension; cffi hooks into setuptools through here.
from setuptools import setup

setup(cffi_modules=["pyxenon/_core/build_core.py:ffibuilder"])
