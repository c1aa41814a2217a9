"""`python -m emofusion.cli ...`: the same as the `emofusion` console script."""

from . import main

main()
