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


def test_bootstrap_interval_shrinks_with_more_utterances():
    rng = np.random.default_rng(3)
    widths = []
    for n in (50, 400, 3200):
        totals = rng.integers(5, 20, size=n)
        errors = rng.binomial(totals, 0.15)
        low, high = bootstrap_rate_ci(errors, totals, seed=0)
        assert low <= errors.sum() / totals.sum() <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 4  # ~sqrt(64) = 8 in theory


def test_paired_test_of_identical_systems_finds_nothing():
    from asrcompress.stats import paired_bootstrap

    rng = np.random.default_rng(0)
    totals = rng.integers(5, 20, size=300)
    errors = rng.binomial(totals, 0.2)
    result = paired_bootstrap(errors, errors, totals, seed=0)
    assert result.delta == 0 and result.ci_low == 0 and result.ci_high == 0
    assert result.p_value == pytest.approx(1.0)


def test_paired_test_is_symmetric_and_detects_a_real_difference():
    from asrcompress.stats import paired_bootstrap

    rng = np.random.default_rng(1)
    totals = rng.integers(5, 20, size=300)
    better = rng.binomial(totals, 0.10)
    worse = better + rng.binomial(totals, 0.05)  # worse on the same utterances
    ab = paired_bootstrap(worse, better, totals, seed=7)
    ba = paired_bootstrap(better, worse, totals, seed=7)
    assert ab.delta == pytest.approx(-ba.delta) and ab.delta > 0
    assert ab.p_value == ba.p_value
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-ba.ci_high, -ba.ci_low))
    assert ab.p_value < 0.01 and ab.ci_low > 0
    # A small difference on few utterances is not significant.
    noisy = paired_bootstrap(better[:20] + (rng.random(20) < 0.1), better[:20], totals[:20], seed=7)
    assert noisy.p_value > 0.05


def test_paired_test_needs_the_same_utterances():
    from asrcompress.stats import paired_bootstrap

    with pytest.raises(ValueError, match="same utterances"):
        paired_bootstrap([1, 2], [1], [5, 5])


def test_sclite_files_alignments_and_subsets(tmp_path, transcripts):
    import json

    rows = [{"id": r["utt_id"], "speaker": r["utt_id"].split("-")[0], "reference": r["text"], "hypothesis": r["text"],
             "subset": "librispeech/test-clean" if i % 2 else "librispeech/test-other"}
            for i, r in enumerate(transcripts[:6])]
    words = rows[1]["reference"].split()
    rows[1]["hypothesis"] = " ".join(["UH", *words[:1], "XYZ", *words[2:-1]])  # 1 insertion, 1 substitution, 1 deletion
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {name: str(tmp_path / name) for name in ("s.json", "u.tsv", "ref.trn", "hyp.trn", "a.pra")}
    summary = score_hypotheses(str(hyps), out["s.json"], out["u.tsv"], n_resamples=100, ref_trn=out["ref.trn"],
                               hyp_trn=out["hyp.trn"], alignments=out["a.pra"])
    clean = summary["subsets"]["librispeech/test-clean"]
    other = summary["subsets"]["librispeech/test-other"]
    assert clean["n_utts"] + other["n_utts"] == summary["n_utts"] == 6
    assert (clean["substitutions"], clean["deletions"], clean["insertions"]) == (1, 1, 1)
    assert other["wer"] == 0 and clean["n_words"] + other["n_words"] == summary["n_words"]
    assert summary["correct"] == summary["n_words"] - 2
    ref_lines = open(out["ref.trn"]).read().splitlines()
    hyp_lines = open(out["hyp.trn"]).read().splitlines()
    speaker, utt = rows[1]["speaker"], rows[1]["id"]
    assert ref_lines[1] == f"{normalize(rows[1]['reference'])} ({speaker}-{utt})"
    assert hyp_lines[1].endswith(f"({speaker}-{utt})") and len(ref_lines) == len(hyp_lines) == 6
    first = open(out["a.pra"]).read().split("\n\n")[0].splitlines()  # the worst utterance comes first
    assert first[0] == f"id: ({speaker}-{utt})"
    assert first[1] == f"Scores: (#C #S #D #I) {len(words) - 2} 1 1 1"
    ref_line, hyp_line = first[2][len("REF:  "):], first[3][len("HYP:  "):]
    assert ref_line.split()[0].startswith("*") and hyp_line.split()[0] == "UH"  # the insertion
    assert hyp_line.split()[-1].startswith("*") and ref_line.split()[-1] == words[-1]  # the deletion
    assert len(ref_line) == len(hyp_line)  # columns line up
