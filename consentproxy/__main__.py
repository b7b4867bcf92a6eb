import sys

from consentproxy.cli import main

sys.exit(main())
