import numpy as np
import pytest

from asrcompress.scoring import count_errors, score_hypotheses, total
from asrcompress.stats import bootstrap_rate_ci
from asrcompress.text import normalize


def test_identical_real_transcripts_have_no_errors(transcripts):
    counts = total(count_errors(row["text"], row["text"]) for row in transcripts)
    assert counts.word_errors == 0 and counts.char_errors == 0
    assert counts.ref_words == sum(len(row["text"].split()) for row in transcripts)


def test_counts_on_a_real_transcript():
    ref = "THE TWO STRAY KITTENS GRADUALLY MAKE THEMSELVES AT HOME"  # 1988-24833-0000, 9 words
    hyp = "the the two stray kitten gradually make themselves at"  # 1 insertion, 1 substitution, 1 deletion
    counts = count_errors(ref, hyp)
    assert counts.ref_words == 9
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 1)
    assert counts.wer == pytest.approx(3 / 9)
    assert counts.char_errors == len("THE ") + len("S") + len(" HOME")


def test_one_normalisation_for_reference_and_hypothesis():
    assert normalize("He's  in-charge, HERE!") == "HE'S IN CHARGE HERE"
    assert count_errors("HE'S IN CHARGE HERE", "he's in-charge, here!").word_errors == 0


def test_empty_hypothesis_is_all_deletions(transcripts):
    text = transcripts[0]["text"]
    counts = count_errors(text, "")
    assert counts.deletions == len(text.split()) and counts.wer == 1.0


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    totals = rng.integers(5, 20, size=200)
    errors = rng.binomial(totals, 0.2)
    low, high = bootstrap_rate_ci(errors, totals, seed=1)
    assert low < errors.sum() / totals.sum() < high
    assert high - low < 0.1
    assert (low, high) == bootstrap_rate_ci(errors, totals, seed=1)


def test_score_file_summary_and_worst_first(tmp_path, transcripts):
    import json

    import pandas as pd

    hyps = tmp_path / "hyps.jsonl"
    rows = [{"id": r["utt_id"], "reference": r["text"], "hypothesis": r["text"]} for r in transcripts[:5]]
    rows[2]["hypothesis"] = ""
    hyps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = score_hypotheses(str(hyps), str(tmp_path / "s.json"), str(tmp_path / "u.tsv"), n_resamples=200)
    n_words = sum(len(r["text"].split()) for r in transcripts[:5])
    assert summary["n_words"] == n_words
    assert summary["deletions"] == len(transcripts[2]["text"].split())
    assert summary["ser"] == pytest.approx(1 / 5)
    table = pd.read_csv(tmp_path / "u.tsv", sep="\t")
    assert table.iloc[0]["id"] == transcripts[2]["utt_id"]
