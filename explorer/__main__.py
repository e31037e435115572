import sys

from explorer.launcher import main

sys.exit(main())
