import sys

from pyxenon.toolstack.cli import main

sys.exit(main())
