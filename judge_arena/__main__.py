"""`python -m judge_arena`: the same command as `judge-arena`."""

import sys

from judge_arena.cli import main

sys.exit(main())
