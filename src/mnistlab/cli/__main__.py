"""`python -m mnistlab.cli ...`: the same as the `mnistlab` command.

    python -m mnistlab.cli models
"""

import sys

from mnistlab.cli import main

sys.exit(main())
