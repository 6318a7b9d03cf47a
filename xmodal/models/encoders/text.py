"""Text encoder: a small BERT-style transformer built from a ``transformers`` config (no download)."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.registry import MODELS


@MODELS.register_module()
class TinyTextEncoder(nn.Module):
    """Token ids (B, L), 0 = padding -> the [CLS] position's hidden state (B, hidden_size).

    ``checkpoint``: a local directory saved with ``save_pretrained`` to start from trained weights.
    """

    def __init__(self, vocab_size: int = 1000, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                 max_length: int = 64, pad_token_id: int = 0, checkpoint: str | None = None) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        if checkpoint:
            self.bert = BertModel.from_pretrained(checkpoint, local_files_only=True, add_pooling_layer=False)
        else:
            config = BertConfig(
                vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
                max_position_embeddings=max_length, pad_token_id=pad_token_id,
            )
            self.bert = BertModel(config, add_pooling_layer=False)
        self.pad_token_id = pad_token_id
        self.out_dim = self.bert.config.hidden_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != self.pad_token_id).long()
        return self.bert(input_ids=tokens.long(), attention_mask=mask).last_hidden_state[:, 0]
