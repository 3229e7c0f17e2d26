"""The C core, compiled by cffi against the unicorn wheel's libunicorn.

Importing unicorn first loads libunicorn.so.2 from the wheel, so the core's
dependency on that soname resolves to the very library already in the
process, wherever the package was installed (site-packages or editable).
"""
import unicorn  # noqa: F401  (loads libunicorn.so.2)

from ._xcore import ffi, lib  # noqa: E402

__all__ = ["ffi", "lib"]
