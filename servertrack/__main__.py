"""``python -m servertrack``: same as the ``servertrack`` command."""

from .cli import run

if __name__ == "__main__":
    run()
