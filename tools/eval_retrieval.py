"""Image-text Recall@K of a retrieval checkpoint: python tools/eval_retrieval.py CONFIG CHECKPOINT [--split test]"""

from xmodal.apis.eval_retrieval import main

if __name__ == "__main__":
    main()
