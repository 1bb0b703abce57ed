"""``python -m bench``: the ``bench`` command where its console script is not installed (a source checkout on
PYTHONPATH, as on a lent GPU machine whose image has torch but not this package)."""

from bench.cli import main

if __name__ == "__main__":
    main()
