"""``python -m store DIRECTORY LOG_FORMAT``: the store's worker process (worker.py)."""

import sys

from .worker import main

main(sys.argv[1:])
