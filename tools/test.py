"""Evaluate a checkpoint on the test split: python tools/test.py CONFIG CHECKPOINT [--out results.json]"""

from xmodal.apis.test import main

if __name__ == "__main__":
    main()
