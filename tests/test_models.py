import torch

from asrcompress.models import ModelSpec, build_model, build_processor, load_pretrained_dir, save_model_dir

from helpers import TINY_ARCHITECTURE


def test_pretrained_checkpoint_gets_our_character_head(tmp_path):
    """The from_pretrained path, on a checkpoint folder made here (as downloaded from a hub): the
    encoder weights are kept and the CTC head is rebuilt for our vocabulary."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    foreign = Wav2Vec2ForCTC(Wav2Vec2Config(**TINY_ARCHITECTURE, vocab_size=50))
    foreign.save_pretrained(str(tmp_path / "hub"))
    processor = build_processor()
    model = build_model(ModelSpec("w2v2", "pretrained", pretrained_id=str(tmp_path / "hub")), processor)
    assert model.lm_head.out_features == len(processor.tokenizer)
    assert model.config.pad_token_id == processor.tokenizer.pad_token_id == 0
    encoder = "wav2vec2.encoder.layers.0.attention.k_proj.weight"
    assert torch.equal(model.state_dict()[encoder], foreign.state_dict()[encoder])
    save_model_dir(model, processor, tmp_path / "saved")
    reloaded, reloaded_processor = load_pretrained_dir(tmp_path / "saved")
    assert torch.equal(reloaded.state_dict()[encoder], foreign.state_dict()[encoder])
    assert reloaded_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
