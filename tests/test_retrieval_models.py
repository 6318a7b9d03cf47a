"""DualEncoder (open_clip) and CrossEncoder (BLIP ITM) built offline from small configs and local files."""

import pytest
import torch

from xmodal.models import CrossEncoder, DualEncoder
from xmodal.models.dual_encoder import itc_loss

BLIP = dict(
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                       patch_size=8),
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                     vocab_size=49408, max_position_embeddings=32, encoder_hidden_size=32),
    image_text_hidden_size=16,
)


def _batch(n=4):
    torch.manual_seed(0)
    return dict(image=torch.rand(n, 3, 40, 40), text=["a red circle", "a blue square", "two stars", "a red disc"][:n],
                image_index=torch.tensor([0, 1, 2, 0][:n]), index=torch.arange(n))


def test_dual_encoder_outputs_unit_embeddings_and_records():
    model = DualEncoder("xmodal-tiny-clip").eval()
    out = model(**_batch())
    assert out["image_embedding"].shape == (4, 32) and out["text_embedding"].shape == (4, 32)
    torch.testing.assert_close(out["image_embedding"].norm(dim=1), torch.ones(4))
    records = model(mode="predict", **_batch())
    assert records[3]["image_index"] == 0 and records[3]["text_index"] == 3
    only_images = model(mode="predict", image=torch.rand(2, 3, 32, 32), index=torch.tensor([5, 6]))
    assert "text_embedding" not in only_images[0] and only_images[1]["image_index"] == 6


def test_itc_shares_the_target_between_captions_of_one_image():
    emb = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    # rows 0 and 2 are the same image: swapping their captions leaves the loss unchanged
    index = torch.tensor([0, 1, 0])
    texts = emb.clone()
    swapped = texts[[2, 1, 0]]
    assert itc_loss(emb, texts, torch.tensor(10.0), index).item() == pytest.approx(
        itc_loss(emb, swapped, torch.tensor(10.0), index).item(), rel=1e-5)


def test_dual_encoder_loads_local_weights_and_refuses_downloads(tmp_path):
    source = DualEncoder("xmodal-tiny-clip")
    path = tmp_path / "tiny.pt"
    torch.save(source.clip.state_dict(), path)
    loaded = DualEncoder("xmodal-tiny-clip", pretrained=str(path))
    assert all(torch.equal(a, b) for a, b in zip(source.clip.state_dict().values(), loaded.clip.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="does not download"):
        DualEncoder("ViT-B-32", pretrained="openai")
    with pytest.raises(KeyError, match="unknown open_clip model"):
        DualEncoder("no-such-model")


def test_cross_encoder_scores_pairs_like_the_full_itm_forward():
    model = CrossEncoder(config=BLIP, tokenizer=dict(type="clip", context_length=16)).eval()
    batch = _batch()
    with torch.no_grad():
        prepared = model.prepare(batch)
        scores = model.pair_scores(prepared, torch.tensor([0, 1, 3]), torch.tensor([2, 1, 0]))
        pixels = model.normalise(batch["image"][[0, 1, 3]])
        ids, mask = model.tokenize([batch["text"][i] for i in (2, 1, 0)])
        full = model.blip(input_ids=ids, attention_mask=mask, pixel_values=pixels, use_itm_head=True).itm_score
    torch.testing.assert_close(scores, full[:, 1] - full[:, 0], rtol=1e-4, atol=1e-5)
    losses = model.train()(mode="loss", **batch)
    assert set(losses) == {"loss_itc", "loss_itm"} and all(torch.isfinite(v) for v in losses.values())


def test_cross_encoder_from_a_local_directory_with_its_own_tokenizer(tmp_path):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "circle", "square", "two", "stars"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    blip_dir = tmp_path / "blip"
    small = dict(BLIP, text_config=dict(BLIP["text_config"], vocab_size=len(vocab)))
    from transformers import BlipConfig, BlipForImageTextRetrieval

    BlipForImageTextRetrieval(BlipConfig(**small)).save_pretrained(blip_dir)
    tokenizer.save_pretrained(blip_dir)
    model = CrossEncoder(pretrained=str(blip_dir), tokenizer=dict(type="hf", context_length=8)).eval()
    ids, mask = model.tokenize(["a red circle", "two blue stars"])
    assert ids.shape == (2, 8) and ids[0, 0].item() == vocab.index("[CLS]") and mask[0].sum().item() == 5
    with torch.no_grad():
        assert model.pair_scores(model.prepare(_batch(2)), torch.tensor([0]), torch.tensor([1])).shape == (1,)
    with pytest.raises(FileNotFoundError, match="does not download"):
        CrossEncoder(pretrained="Salesforce/blip-itm-base-coco")
    with pytest.raises(ValueError, match="vocab_size"):
        CrossEncoder(config=small, tokenizer=dict(type="clip"))
    with pytest.raises(ValueError, match="exactly one"):
        CrossEncoder()
