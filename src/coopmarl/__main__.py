"""`python -m coopmarl …` is the `coopmarl` command."""

import sys

from coopmarl.cli import main

sys.exit(main())
