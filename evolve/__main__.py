"""`python -m evolve` is the same as the `evolve` command."""

from evolve.cli import main

main()
