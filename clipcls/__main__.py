import sys

from clipcls.cli import main

sys.exit(main())
