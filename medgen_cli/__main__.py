"""`python -m medgen_cli` runs the same application as the `medgen` console script."""

from __future__ import annotations

from medgen_cli.cli.app import main

if __name__ == "__main__":
    main()
