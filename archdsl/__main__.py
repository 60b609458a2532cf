"""``python -m archdsl``: the ``archdsl`` command, for environments whose scripts folder is not on PATH."""

from archdsl.cli import main

if __name__ == "__main__":
    main()
