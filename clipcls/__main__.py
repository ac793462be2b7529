import sys

from clipcls.commands import main

sys.exit(main())
