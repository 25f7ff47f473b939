"""Word and character error rates with jiwer: per utterance, per test set and per corpus subset.

A scored test set leaves what an ASR researcher expects to find: a summary (S/D/I, WER, CER, sentence
error rate, bootstrap CIs; per subset when the test set joins several, e.g. test-clean and test-other),
the per-utterance table worst first, sclite-compatible ``ref.trn``/``hyp.trn``, and sclite-style
alignments (``.pra``) in the same worst-first order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import jiwer

from .errors import PipelineError
from .io import atomic_path, write_json
from .stats import bootstrap_rate_ci
from .text import normalize

ALL_SUBSETS = "all"


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


@dataclasses.dataclass
class ScoredUtterance:
    """One hypothesis against its reference: counts and the word alignment (sclite's REF/HYP lines)."""

    id: str
    speaker: str
    subset: str
    reference: str
    hypothesis: str
    counts: ErrorCounts
    ref_line: str
    hyp_line: str


def _alignment_lines(ref_words: Sequence[str], hyp_words: Sequence[str], chunks) -> tuple[str, str]:
    """sclite's convention: correct words lower case, errors upper case, *** for the missing side."""
    ref_out: list[str] = []
    hyp_out: list[str] = []
    for chunk in chunks:
        refs = list(ref_words[chunk.ref_start_idx:chunk.ref_end_idx])
        hyps = list(hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx])
        if chunk.type == "equal":
            pairs = [(r.lower(), h.lower()) for r, h in zip(refs, hyps)]
        elif chunk.type == "substitute":
            pairs = list(zip(refs, hyps))
        elif chunk.type == "delete":
            pairs = [(r, "*" * len(r)) for r in refs]
        else:  # insert
            pairs = [("*" * len(h), h) for h in hyps]
        for r, h in pairs:
            width = max(len(r), len(h))
            ref_out.append(r.ljust(width))
            hyp_out.append(h.ljust(width))
    return " ".join(ref_out).rstrip(), " ".join(hyp_out).rstrip()


def score_utterance(reference: str, hypothesis: str, id: str = "", speaker: str = "", subset: str = ALL_SUBSETS) -> ScoredUtterance:
    """Errors and alignment of one hypothesis, both sides normalised the same way."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        counts = ErrorCounts(0, 0, 0, len(hyp.split()), 0, len(hyp))
        return ScoredUtterance(id, speaker, subset, ref, hyp, counts, " ".join("*" * len(w) for w in hyp.split()), hyp)
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    counts = ErrorCounts(
        ref_words=len(ref.split()),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        ref_chars=len(ref),
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
    )
    ref_line, hyp_line = _alignment_lines(ref.split(), hyp.split(), words.alignments[0])
    return ScoredUtterance(id, speaker, subset, ref, hyp, counts, ref_line, hyp_line)


def count_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Errors of one normalised hypothesis against its normalised reference."""
    return score_utterance(reference, hypothesis).counts


def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    result = ZERO
    for item in counts:
        result = result + item
    return result


def summarize(scored: Sequence[ScoredUtterance], n_resamples: int, seed: int) -> dict[str, Any]:
    """Totals, rates and bootstrap 95% CIs of a set of scored utterances."""
    counts = [s.counts for s in scored]
    overall = total(counts)
    word_errors = [c.word_errors for c in counts]
    wer_ci = bootstrap_rate_ci(word_errors, [c.ref_words for c in counts], n_resamples, seed=seed)
    cer_ci = bootstrap_rate_ci([c.char_errors for c in counts], [c.ref_chars for c in counts], n_resamples, seed=seed)
    return {
        "n_utts": len(scored),
        "n_words": overall.ref_words,
        "n_chars": overall.ref_chars,
        "substitutions": overall.substitutions,
        "deletions": overall.deletions,
        "insertions": overall.insertions,
        "correct": overall.ref_words - overall.substitutions - overall.deletions,
        "wer": overall.wer,
        "wer_ci_low": wer_ci[0],
        "wer_ci_high": wer_ci[1],
        "cer": overall.cer,
        "cer_ci_low": cer_ci[0],
        "cer_ci_high": cer_ci[1],
        "ser": sum(e > 0 for e in word_errors) / len(scored),
    }


def read_hypotheses(hyps_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    records = []
    with open(hyps_path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record["id"], record["reference"], record["hypothesis"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise PipelineError(f"{hyps_path}:{line_no}: not a hypothesis record (id, reference, hypothesis): {err}")
            records.append(record)
    if not records:
        raise PipelineError(f"{hyps_path}: no hypotheses to score")
    return records


def worst_first(scored: Sequence[ScoredUtterance]) -> list[ScoredUtterance]:
    return sorted(scored, key=lambda s: (-s.counts.wer, -s.counts.word_errors, s.id))


def _trn_line(text: str, utterance: ScoredUtterance) -> str:
    # sclite's trn: the transcript, then "(speaker-utterance)"; -i rm groups by the part before the first '-'.
    return f"{text} ({utterance.speaker or 'spk'}-{utterance.id})\n"


def write_trn(scored: Sequence[ScoredUtterance], ref_path: str | os.PathLike[str], hyp_path: str | os.PathLike[str]) -> None:
    """sclite-compatible reference and hypothesis files (``sclite -r ref.trn trn -h hyp.trn trn -i rm``)."""
    for path, attribute in ((ref_path, "reference"), (hyp_path, "hypothesis")):
        with atomic_path(path) as tmp:
            Path(tmp).write_text("".join(_trn_line(getattr(s, attribute), s) for s in scored), encoding="utf-8")


def write_alignments(scored: Sequence[ScoredUtterance], path: str | os.PathLike[str]) -> None:
    """Per-utterance alignments worst first, in sclite's ``.pra`` layout."""
    blocks = []
    for s in worst_first(scored):
        c = s.counts
        correct = c.ref_words - c.substitutions - c.deletions
        blocks.append(
            f"id: ({s.speaker or 'spk'}-{s.id})\n"
            f"Scores: (#C #S #D #I) {correct} {c.substitutions} {c.deletions} {c.insertions}\n"
            f"REF:  {s.ref_line}\nHYP:  {s.hyp_line}\n"
        )
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(blocks), encoding="utf-8")


def write_utterance_table(scored: Sequence[ScoredUtterance], path: str | os.PathLike[str]) -> None:
    import pandas as pd

    table = pd.DataFrame(
        [
            {"id": s.id, "subset": s.subset, "words": s.counts.ref_words, "sub": s.counts.substitutions,
             "del": s.counts.deletions, "ins": s.counts.insertions, "wer": round(s.counts.wer, 4),
             "reference": s.reference, "hypothesis": s.hypothesis}
            for s in worst_first(scored)
        ]
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def score_hypotheses(hyps_path: str, summary_path: str, per_utt_path: str, n_resamples: int = 1000, seed: int = 0,
                     ref_trn: str | None = None, hyp_trn: str | None = None, alignments: str | None = None) -> dict:
    """Score one decoded test set.

    Writes a JSON summary (with ``subsets``: the same figures per corpus subset, when the test set joins
    several), the per-utterance TSV worst
    first, and, when their paths are given, sclite trn files and ``.pra`` alignments.
    """
    scored = [
        score_utterance(r["reference"], r["hypothesis"], str(r["id"]), str(r.get("speaker", "")), str(r.get("subset") or ALL_SUBSETS))
        for r in read_hypotheses(hyps_path)
    ]
    summary = summarize(scored, n_resamples, seed)
    # A test set drawn from one subset gets no per-subset copy of its own figures.
    subsets = sorted({s.subset for s in scored} - {ALL_SUBSETS})
    subsets = subsets if len(subsets) > 1 else []
    summary["subsets"] = {name: summarize([s for s in scored if s.subset == name], n_resamples, seed) for name in subsets}
    write_utterance_table(scored, per_utt_path)
    if ref_trn and hyp_trn:
        write_trn(scored, ref_trn, hyp_trn)
    if alignments:
        write_alignments(scored, alignments)
    write_json(summary_path, summary)
    return summary


@dataclasses.dataclass(frozen=True)
class ScoreJob:
    """One decoded test set to score and the files its scoring writes (``score_hypotheses``' arguments)."""

    hyps_path: str
    summary_path: str
    per_utt_path: str
    ref_trn: str | None = None
    hyp_trn: str | None = None
    alignments: str | None = None

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "ScoreJob":
        return cls(**entry)


def score_test_sets(jobs: Sequence[ScoreJob], n_resamples: int = 1000, seed: int = 0) -> list[dict]:
    """Score several decoded test sets in one process (``score.one_job_per: variant``): the interpreter and
    jiwer start once instead of once per test set. Each writes what its own job would."""
    return [score_hypotheses(job.hyps_path, job.summary_path, job.per_utt_path, n_resamples, seed,
                             ref_trn=job.ref_trn, hyp_trn=job.hyp_trn, alignments=job.alignments) for job in jobs]
