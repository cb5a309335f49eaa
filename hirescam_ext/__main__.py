"""``python -m hirescam_ext`` is the ``hirescam`` command."""

import sys

from hirescam_ext.cli import main

sys.exit(main())
