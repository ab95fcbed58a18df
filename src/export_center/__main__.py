"""``python -m export_center``: the ``stella`` command (how ``stella serve`` starts its workers)."""

from export_center.cli.main import main

if __name__ == "__main__":
    main()
