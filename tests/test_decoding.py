import torch

from asrcompress.decoding import greedy_ctc, ids_to_text, length_sorted_batches
from asrcompress.models import build_processor


def one_hot_logits(paths, vocab=6):
    width = max(len(p) for p in paths)
    logits = torch.full((len(paths), width, vocab), -10.0)
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            logits[b, t, token] = 10.0
    return logits


def test_greedy_merges_repeats_and_drops_blanks():
    # blank = 0: "1 1 0 1 2 2 0 0 3" -> 1 1 2 3 (a blank separates the two 1s)
    logits = one_hot_logits([[1, 1, 0, 1, 2, 2, 0, 0, 3]])
    assert greedy_ctc(logits, [9], blank=0) == [[1, 1, 2, 3]]


def test_greedy_ignores_padding_frames():
    logits = one_hot_logits([[4, 4, 5, 0], [2, 3, 3, 3]])
    assert greedy_ctc(logits, [2, 4], blank=0) == [[4], [2, 3]]
    assert greedy_ctc(logits, [0, 1], blank=0) == [[], [2]]


def test_ids_to_text_uses_word_delimiter():
    tokenizer = build_processor().tokenizer
    ids = tokenizer("HI YOU").input_ids
    assert ids_to_text(ids, tokenizer) == "HI YOU"


def test_length_sorted_batches_respect_budget_and_cover_everything():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, max_samples=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 10
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
