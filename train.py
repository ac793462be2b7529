"""Train a CLIP classifier: edit cfg.py, then `python train.py` (flags and --config override CFG)."""

import sys

from cfg import CFG
from clipcls.commands.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], CFG))
