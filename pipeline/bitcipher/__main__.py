"""`python -m bitcipher ...`: the same as the `bitcipher` command."""

import sys

from bitcipher.cli import main

if __name__ == "__main__":
    sys.exit(main())
