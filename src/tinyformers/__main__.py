import sys

from tinyformers.apps.cli import main

sys.exit(main())
