"""``python -m onespike``: the command line."""

from onespike.cli import main

main()
