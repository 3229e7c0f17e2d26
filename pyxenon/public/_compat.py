"""ctypes base classes shared by the ABI modules.

ctypes.LittleEndianUnion only exists from Python 3.11.  Before that a plain
Union is used: on a little-endian host it has the same layout, and on a
big-endian host nesting it in a LittleEndianStructure raises TypeError
rather than silently producing a wrong layout.
"""

import ctypes

LittleEndianUnion = getattr(ctypes, "LittleEndianUnion", ctypes.Union)
