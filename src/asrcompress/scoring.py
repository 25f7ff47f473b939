"""Word and character error rates with jiwer, per utterance and per test set."""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jiwer

from .text import normalize


@dataclasses.dataclass
class ErrorCounts:
    """Edit-distance counts; rates are derived so that sums over utterances stay exact."""

    ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    ref_chars: int
    char_errors: int

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.word_errors / self.ref_words if self.ref_words else float(self.word_errors > 0)

    @property
    def cer(self) -> float:
        return self.char_errors / self.ref_chars if self.ref_chars else float(self.char_errors > 0)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


ZERO = ErrorCounts(0, 0, 0, 0, 0, 0)


def count_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Errors of one normalised hypothesis against its normalised reference."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        n_hyp_words = len(hyp.split())
        return ErrorCounts(0, 0, 0, n_hyp_words, 0, len(hyp))
    words = jiwer.process_words(ref, hyp if hyp else "")
    chars = jiwer.process_characters(ref, hyp if hyp else "")
    return ErrorCounts(
        ref_words=len(ref.split()),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        ref_chars=len(ref),
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
    )


def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    result = ZERO
    for item in counts:
        result = result + item
    return result


def score_hypotheses(hyps_path: str, summary_path: str, per_utt_path: str, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Score one decoded test set: a JSON summary with WER/CER, S/D/I, sentence error rate and
    bootstrap 95% CIs, and a per-utterance TSV (worst first) for error analysis."""
    import json

    import pandas as pd

    from .io import atomic_path, write_json
    from .stats import bootstrap_rate_ci

    rows = []
    with open(hyps_path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                counts = count_errors(record["reference"], record["hypothesis"])
                rows.append((record, counts))
    if not rows:
        raise ValueError(f"{hyps_path}: no hypotheses to score")
    overall = total(c for _, c in rows)
    word_errors = [c.word_errors for _, c in rows]
    wer_ci = bootstrap_rate_ci(word_errors, [c.ref_words for _, c in rows], n_resamples, seed=seed)
    cer_ci = bootstrap_rate_ci([c.char_errors for _, c in rows], [c.ref_chars for _, c in rows], n_resamples, seed=seed)
    summary = {
        "n_utts": len(rows),
        "n_words": overall.ref_words,
        "n_chars": overall.ref_chars,
        "substitutions": overall.substitutions,
        "deletions": overall.deletions,
        "insertions": overall.insertions,
        "wer": overall.wer,
        "wer_ci_low": wer_ci[0],
        "wer_ci_high": wer_ci[1],
        "cer": overall.cer,
        "cer_ci_low": cer_ci[0],
        "cer_ci_high": cer_ci[1],
        "ser": sum(e > 0 for e in word_errors) / len(rows),
    }
    table = pd.DataFrame(
        [
            {
                "id": r["id"], "words": c.ref_words, "sub": c.substitutions, "del": c.deletions, "ins": c.insertions,
                "wer": round(c.wer, 4), "reference": normalize(r["reference"]), "hypothesis": normalize(r["hypothesis"]),
            }
            for r, c in rows
        ]
    ).sort_values(["wer", "id"], ascending=[False, True])
    with atomic_path(per_utt_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    write_json(summary_path, summary)
    return summary
