"""``python -m tuike.cli``: what the tests and benchmarks run when no ``tuike`` script is installed."""
import sys

from tuike.cli import main

sys.exit(main())
