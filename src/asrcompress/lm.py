"""Word n-gram language models for CTC beam search: built with KenLM's ``lmplz``, or given as a file.

The demo builds its LM from the training transcripts (so the test sentences, drawn from the same
grammar, are predictable but never seen verbatim); the paper configs point at the LibriSpeech LM
(OpenSLR 11). ``lmplz`` is KenLM's own estimator (modified Kneser-Ney); ``make install`` builds it
into the virtual environment (``envs/build_kenlm.sh``).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import ConfigError, PipelineError
from .io import atomic_path, write_json
from .manifest import read_manifest
from .text import normalize

LM_FILE = "lm.arpa"
BINARY_FILE = "lm.bin"  # KenLM's binary (probing) format: memory-mapped, loads in seconds where an ARPA takes minutes


@dataclasses.dataclass(frozen=True)
class LanguageModelSpec:
    """``decode.language_models.<name>``: where the n-gram comes from and how it is estimated."""

    name: str
    source: str  # "train": the training split's transcripts; "text": a text file; "arpa": a ready ARPA/binary file
    order: int = 3
    path: str | None = None  # the text or ARPA file for source text/arpa
    prune: tuple[int, ...] = ()  # lmplz --prune thresholds per order (empty: keep every n-gram)

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> "LanguageModelSpec":
        key = f"decode.language_models.{name}"
        source = entry.get("source", "train")
        if source not in ("train", "text", "arpa"):
            raise ConfigError(f"{key}.source", f"must be train, text or arpa, not {source!r}")
        path = entry.get("path")
        if source in ("text", "arpa") and not path:
            raise ConfigError(f"{key}.path", f"source {source!r} needs the path of the {source} file")
        if source == "train" and path:
            raise ConfigError(f"{key}.path", "source 'train' builds from the training split; drop path or set source")
        order = int(entry.get("order", 3))
        prune = tuple(int(p) for p in entry.get("prune", ()))
        if prune and len(prune) > order:
            raise ConfigError(f"{key}.prune", f"{len(prune)} thresholds for an order-{order} model")
        return cls(name, source, order, path, prune)


def find_kenlm_tool(name: str, explicit: str | None = None) -> str:
    """A KenLM program (lmplz, build_binary): ``explicit``, else on PATH, else beside this interpreter (the venv's bin/)."""
    candidates = [explicit] if explicit else [name, str(Path(sys.executable).parent / name)]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise PipelineError(
        f"KenLM's {name} not found ({', '.join(candidates)}): run `make install` (builds it with envs/build_kenlm.sh), "
        "or install KenLM and put its programs on PATH (or give decode.lmplz)"
    )


def find_lmplz(explicit: str | None = None) -> str:
    return find_kenlm_tool("lmplz", explicit)


def build_binary(arpa: str | os.PathLike[str], out_binary: str | os.PathLike[str], lmplz: str | None = None) -> None:
    """KenLM's binary format of ``arpa`` (atomic); build_binary is looked up beside lmplz first."""
    sibling = str(Path(lmplz).parent / "build_binary") if lmplz else None
    tool = find_kenlm_tool("build_binary", sibling if sibling and shutil.which(sibling) else None)
    with atomic_path(out_binary) as tmp:
        done = subprocess.run([tool, "-s", str(arpa), str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise PipelineError(f"{arpa}: build_binary failed ({done.returncode}): {done.stderr.decode()[-2000:]}")


def lm_sentences(texts: Iterable[str]) -> list[str]:
    """One normalised sentence per transcript, in the vocabulary the decoder emits (upper case, no punctuation)."""
    return [sentence for sentence in (normalize(t) for t in texts) if sentence]


def run_lmplz(sentences: Iterable[str], out_arpa: str | os.PathLike[str], order: int, prune: Sequence[int] = (),
              lmplz: str | None = None, memory: str = "20%") -> int:
    """Estimate a modified Kneser-Ney ``order``-gram from ``sentences`` into ``out_arpa`` (atomic).

    The sentences are streamed to lmplz (LibriSpeech's LM text is 800M words); returns how many there were.
    """
    command = [find_lmplz(lmplz), "--order", str(order), "--memory", memory, "--skip_symbols",
               # Small corpora lack the count-of-counts that Kneser-Ney's discounts are estimated from.
               "--discount_fallback"]
    if prune:
        command += ["--prune", *(str(p) for p in prune)]
    n_sentences = 0
    with atomic_path(out_arpa) as tmp, open(tmp, "wb") as arpa, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=arpa, stderr=errors)
        try:
            for sentence in sentences:
                process.stdin.write(sentence.encode() + b"\n")
                n_sentences += 1
        except BrokenPipeError:
            pass  # lmplz stopped early: its exit status and message say why
        finally:
            process.stdin.close()
            returncode = process.wait()
        if n_sentences == 0:
            raise PipelineError(f"{out_arpa}: no sentences to estimate a language model from")
        if returncode != 0:
            errors.seek(0)
            raise PipelineError(f"{out_arpa}: lmplz failed ({returncode}): {errors.read().decode()[-2000:]}")
    return n_sentences


def read_text_corpus(path: str | os.PathLike[str]) -> Iterator[str]:
    """The sentences of a plain or gzipped text file, one per line (LibriSpeech's librispeech-lm-norm.txt.gz, say),
    read lazily; a missing file is reported at once, not when the first sentence is asked for."""
    if not Path(path).is_file():
        raise PipelineError(f"{path}: language-model text file not found")
    opener = gzip.open if str(path).endswith(".gz") else open

    def sentences() -> Iterator[str]:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                sentence = normalize(line)
                if sentence:
                    yield sentence

    return sentences()


def copy_arpa(source: str | os.PathLike[str], out_arpa: str | os.PathLike[str]) -> None:
    """A ready ARPA file (plain or .gz), checked for the ARPA header and copied in unpacked."""
    if not Path(source).is_file():
        raise PipelineError(f"{source}: language-model file not found (decode.language_models.*.path)")
    opener = gzip.open if str(source).endswith(".gz") else open
    with opener(source, "rb") as handle, atomic_path(out_arpa) as tmp:
        head = handle.read(4096)
        if b"\\data\\" not in head:
            raise PipelineError(f"{source}: not an ARPA language model (no \\data\\ header in its first 4 kB)")
        with open(tmp, "wb") as out:
            out.write(head)
            shutil.copyfileobj(handle, out, 1 << 20)


def arpa_counts(path: str | os.PathLike[str]) -> dict[int, int]:
    """The n-gram counts the ARPA header declares, {order: count}."""
    counts: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("ngram "):
                order, count = line[len("ngram "):].split("=")
                counts[int(order)] = int(count)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def build_language_model(spec: LanguageModelSpec, out_dir: str | os.PathLike[str], train_manifest: str | None = None,
                         lmplz: str | None = None, memory_mb: int | None = None) -> dict[str, Any]:
    """``<out_dir>/lm.arpa`` (the words the decoder may emit are its unigrams), ``lm.bin`` (what decoding loads)
    and ``summary.json`` for one configured language model.

    ``memory_mb``: the job's memory; lmplz sorts in 80% of it (default: 20% of the machine's, which on a shared
    cluster node can exceed what the scheduler granted the job)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arpa = out / LM_FILE
    if spec.source == "arpa":
        copy_arpa(spec.path, arpa)
        n_sentences = None
    else:
        if spec.source == "train":
            if not train_manifest:
                raise PipelineError(f"language model {spec.name}: source 'train' needs the training split")
            sentences = lm_sentences(u.text for u in read_manifest(train_manifest))
        else:
            sentences = read_text_corpus(spec.path)
        memory = f"{int(memory_mb * 0.8)}M" if memory_mb else "20%"
        n_sentences = run_lmplz(sentences, arpa, spec.order, spec.prune, lmplz, memory)
    build_binary(arpa, out / BINARY_FILE, lmplz)
    summary = {"name": spec.name, "source": spec.source, "path": spec.path, "order": spec.order,
               "prune": list(spec.prune), "n_sentences": n_sentences, "ngrams": arpa_counts(arpa)}
    write_json(out / "summary.json", summary)
    return summary


def kenlm_model_file(arpa: str | os.PathLike[str]) -> str:
    """What KenLM should load for this ARPA file: its binary beside it when built, else the ARPA itself."""
    binary = Path(arpa).with_name(BINARY_FILE)
    return str(binary if binary.is_file() else arpa)


def unigrams(path: str | os.PathLike[str]) -> list[str]:
    """The words of an ARPA model's 1-gram section (pyctcdecode uses them to score partial words)."""
    words: list[str] = []
    in_unigrams = False
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("\\1-grams:"):
                in_unigrams = True
                continue
            if in_unigrams:
                if not line.strip() or line.startswith("\\"):
                    break
                fields = line.split("\t")
                if len(fields) >= 2 and fields[1].strip() not in ("<s>", "</s>", "<unk>"):
                    words.append(fields[1].strip())
    return words
