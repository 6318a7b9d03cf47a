"""Compare distillation losses on one student: python tools/compare.py CONFIG [--seeds 3]"""

from xmodal.apis.compare import main

if __name__ == "__main__":
    main()
