"""Small real models for tests: the demo architecture, shrunk."""

from __future__ import annotations

TINY_ARCHITECTURE = dict(
    conv_dim=[16, 32, 48], conv_kernel=[20, 8, 4], conv_stride=[10, 8, 4], feat_extract_norm="layer",
    do_stable_layer_norm=True, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.0,
)

# A few recovery steps on conftest's tiny_corpus (eval and checkpoints out of the way).
TINY_TRAINING = {"batch_seconds": 4.0, "eval_every": 100, "checkpoint_every": 100, "learning_rate": 1e-3, "warmup_steps": 1}


def tiny_model():
    from asrcompress.models import ModelSpec, build_model, build_processor

    processor = build_processor()
    return build_model(ModelSpec("tiny", "scratch", architecture=TINY_ARCHITECTURE), processor), processor
