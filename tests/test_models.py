import pytest
import torch

from asrcompress.errors import ConfigError, PipelineError
from asrcompress.models import ModelSpec, build_processor, fetch_pretrained, load_checkpoint, load_pretrained_dir, save_model_dir

from helpers import TINY_ARCHITECTURE, tiny_model

ENCODER_KEY = "encoder.layers.0.attention.k_proj.weight"


def _tiny_ssl_model(kind: str):
    """A pretrained-only SSL model (no CTC head) of each family, as a hub checkpoint would hold."""
    import transformers

    config_cls, model_cls = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
        "hubert": ("HubertConfig", "HubertModel"),
        "wavlm": ("WavLMConfig", "WavLMModel"),
        "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    }[kind]
    architecture = dict(TINY_ARCHITECTURE)
    if kind == "data2vec-audio":  # its conv frontend has no norm choice and a different positional layer
        architecture.pop("do_stable_layer_norm")
        architecture.pop("feat_extract_norm")
        architecture.pop("num_conv_pos_embedding_groups")
        architecture["num_conv_pos_embeddings"] = 5
    torch.manual_seed(0)
    return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**architecture))


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_ssl_only_checkpoint_gets_our_character_vocabulary_and_a_fresh_ctc_head(tmp_path, kind):
    ssl = _tiny_ssl_model(kind)
    ssl.save_pretrained(str(tmp_path / "hub"))  # no tokenizer, no preprocessor config: SSL-only
    spec = ModelSpec.from_config("m", {"init": "pretrained", "pretrained_id": str(tmp_path / "hub")})
    assert spec.is_local and spec.source == str(tmp_path / "hub")
    model, processor = load_checkpoint(spec, spec.source, 16000)
    assert type(model).__name__.endswith("ForCTC")
    assert model.lm_head.out_features == len(processor.tokenizer)
    assert model.config.pad_token_id == processor.tokenizer.pad_token_id == 0
    base = getattr(model, model.base_model_prefix)
    assert torch.equal(base.state_dict()[ENCODER_KEY], ssl.state_dict()[ENCODER_KEY])  # encoder kept
    with torch.no_grad():
        logits = model(torch.randn(1, 8000)).logits
    assert logits.shape[-1] == len(processor.tokenizer)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_fine_tuned_checkpoint_keeps_its_own_tokenizer_and_feature_extractor(tmp_path, kind):
    """A CTC checkpoint of each family, saved with save_pretrained and re-loaded from its local path, keeps everything."""
    import transformers

    ssl = _tiny_ssl_model(kind)
    processor = build_processor()
    ctc_class = getattr(transformers, type(ssl).__name__.replace("Model", "ForCTC"))
    torch.manual_seed(1)
    model = ctc_class(ssl.config.__class__(**{**ssl.config.to_dict(), "vocab_size": len(processor.tokenizer),
                                              "pad_token_id": processor.tokenizer.pad_token_id}))
    processor.feature_extractor.do_normalize = False  # a setting only the checkpoint knows
    save_model_dir(model, processor, tmp_path / "ft")
    spec = ModelSpec.from_config("ft", {"init": "pretrained", "pretrained_id": str(tmp_path / "ft"), "finetune": False})
    loaded, loaded_processor = load_checkpoint(spec, spec.source, 16000)
    assert type(loaded) is ctc_class
    assert loaded_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert loaded_processor.feature_extractor.do_normalize is False
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    reloaded, _ = load_pretrained_dir(tmp_path / "ft")
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)


def test_checkpoint_errors_name_the_model_key(tmp_path):
    spec = ModelSpec.from_config("m", {"init": "pretrained", "pretrained_id": str(tmp_path / "absent")})
    assert not spec.is_local and spec.source == "resources/models/m"  # not a folder: a hub id, fetched there
    with pytest.raises(ConfigError, match="models.m.pretrained_id"):
        load_checkpoint(spec, tmp_path / "absent", 16000)
    with pytest.raises(ConfigError, match="models.m.pretrained_id"):
        ModelSpec.from_config("m", {"init": "pretrained"})
    with pytest.raises(ConfigError, match="models.m.finetune"):
        ModelSpec.from_config("m", {"init": "scratch", "finetune": False})
    model, processor = tiny_model()
    save_model_dir(model, processor, tmp_path / "ft")
    with pytest.raises(ConfigError, match="expects 16000 Hz"):
        load_checkpoint(spec, tmp_path / "ft", 8000)


def test_offline_hub_fetch_fails_clearly_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "resources" / "models" / "robust"
    with pytest.raises(PipelineError, match=r"cannot fetch model 'facebook/wav2vec2-large-robust-ft-libri-960h'.*hf download"):
        fetch_pretrained("facebook/wav2vec2-large-robust-ft-libri-960h", out)
    assert not out.exists() and not list(out.parent.iterdir())


def test_build_processor_is_character_level():
    processor = build_processor()
    assert processor.tokenizer.pad_token_id == 0
    assert processor.tokenizer.decode(processor.tokenizer("HE'S IN").input_ids) == "HE'S IN"


def test_hub_checkpoint_is_fetched_once_into_resources_and_loads(tmp_path, monkeypatch):
    """fetch_pretrained against a loopback stand-in of the hub (HF_ENDPOINT), then from_pretrained on it."""
    import huggingface_hub.constants as constants

    from fake_hub import FakeHub

    _tiny_ssl_model("hubert").save_pretrained(str(tmp_path / "repo"))
    (tmp_path / "repo" / "pytorch_model.bin").write_bytes(b"the same weights again, in the old format")
    with FakeHub("facebook/hubert-tiny", tmp_path / "repo") as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        out = tmp_path / "resources" / "models" / "hubert"
        fetch_pretrained("facebook/hubert-tiny", out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "repo" / "model.safetensors").read_bytes()
    assert any(path.endswith("/resolve/" + "0123456789abcdef0123456789abcdef01234567/model.safetensors")
               for _, path in hub.requests)
    spec = ModelSpec.from_config("hubert", {"init": "pretrained", "pretrained_id": "facebook/hubert-tiny"})
    model, _ = load_checkpoint(spec, out, 16000)
    assert type(model).__name__ == "HubertForCTC"


def test_evaluating_an_ssl_only_checkpoint_as_it_is_is_refused(tmp_path):
    _tiny_ssl_model("wav2vec2").save_pretrained(str(tmp_path / "ssl"))
    spec = ModelSpec.from_config("m", {"init": "pretrained", "pretrained_id": str(tmp_path / "ssl"), "finetune": False})
    with pytest.raises(ConfigError, match="models.m.finetune.*no trained CTC head"):
        load_checkpoint(spec, spec.source, 16000)


@pytest.mark.parametrize("norm, mask", [("group", False), ("layer", True)])
def test_attention_mask_follows_the_front_end_norm_without_a_preprocessor_config(tmp_path, norm, mask):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(**{**TINY_ARCHITECTURE, "feat_extract_norm": norm, "do_stable_layer_norm": norm == "layer"})
    Wav2Vec2Model(config).save_pretrained(str(tmp_path / "ssl"))
    spec = ModelSpec.from_config("m", {"init": "pretrained", "pretrained_id": str(tmp_path / "ssl")})
    _, processor = load_checkpoint(spec, spec.source, 16000)
    assert processor.feature_extractor.return_attention_mask is mask
