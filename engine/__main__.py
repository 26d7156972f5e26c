"""`python -m engine ...`: see engine/cli/__init__.py for the commands."""
from engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
