"""``python -m iusynth <stage>``: see :mod:`iusynth.cli`."""

from iusynth.cli import main

if __name__ == "__main__":
    main()
