"""``python -m api.cli``: the ``steerfeed`` command line."""

import sys

from api.cli import app

sys.exit(app())
