"""Train a model or a distillation recipe: python tools/train.py CONFIG [--work-dir D] [--resume] ..."""

from xmodal.apis.train import main

if __name__ == "__main__":
    main()
