"""COCO Captions (Chen et al., 2015) with Karpathy's split -> xmodal's image-caption retrieval format.

Inputs: the COCO 2014 images (a folder holding ``train2014/`` and ``val2014/``) and Karpathy's
``dataset_coco.json`` (from ``caption_datasets.zip``): 113,287 train images (82,783 train + 30,504
restval), 5,000 val and 5,000 test (the "5k test"), five to seven captions each, all kept by
default (``--max-captions 5`` keeps five). Output: ``image.jsonl``, ``text.jsonl``, ``splits.json``
(over images), ``meta.json`` and ``files/images/`` (hard links or copies), read by
``xmodal.data.retrieval.RetrievalDataset``. See ``data_prep/karpathy.py`` for the details.

    python data_prep/coco_captions.py --src coco2014 --karpathy caption_datasets/dataset_coco.json \\
        --out data/coco_captions
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep import karpathy  # noqa: E402
from xmodal.apis.errors import cli_errors  # noqa: E402


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    return karpathy.main(argv, karpathy.COCO, __doc__)


if __name__ == "__main__":
    sys.exit(main())
