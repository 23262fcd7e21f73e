"""`python -m reasonlens ...` is the `reasonlens` command (what `accelerate launch -m` runs)."""

from reasonlens.cli import main

if __name__ == "__main__":
    main()
