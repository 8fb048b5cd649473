import sys

from scenimefy.cli import main

sys.exit(main())
