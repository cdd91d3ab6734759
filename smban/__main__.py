"""python3 -m smban: see smban.cli."""
import sys

from smban.cli import main

sys.exit(main())
