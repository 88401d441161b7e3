"""`python -m keyrotation` runs the command line."""

from keyrotation.cli import main

main()
