"""Flickr30K (Young et al., TACL 2014) with Karpathy's split -> xmodal's image-caption retrieval format.

Inputs: the Flickr30K image folder (``flickr30k-images/``, 31,783 ``<id>.jpg``) and Karpathy's
``dataset_flickr30k.json`` (from ``caption_datasets.zip``): 29,000 train, 1,014 val and 1,000 test
images with five captions each. Output: ``image.jsonl``, ``text.jsonl``, ``splits.json`` (over
images), ``meta.json`` and ``files/images/`` (hard links or copies), read by
``xmodal.data.retrieval.RetrievalDataset``. See ``data_prep/karpathy.py`` for the details.

    python data_prep/flickr30k.py --src flickr30k-images --karpathy caption_datasets/dataset_flickr30k.json \\
        --out data/flickr30k
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
    return karpathy.main(argv, karpathy.FLICKR30K, __doc__)


if __name__ == "__main__":
    sys.exit(main())
