import numpy as np
import pytest
import soundfile as sf
import yaml

from asrcompress.banks import RirBankSpec, build_rir_bank, coloured_noise, measured_rt60, talkers_from_voices
from asrcompress.corpora.demo import VOCABULARY, Speaker, speakers_of
from asrcompress.manifest import read_manifest

from workflow_utils import REPO


@pytest.mark.parametrize("colour, slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_has_its_spectral_slope(colour, slope):
    wave = coloured_noise(2**16, colour, np.random.default_rng(0))
    assert np.sqrt(np.mean(wave**2)) == pytest.approx(1.0, rel=1e-5)
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave))
    band = (freqs > 0.005) & (freqs < 0.4)
    fitted = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)


def test_rir_bank_records_the_rt60_it_reached(tmp_path):
    records = build_rir_bank(RirBankSpec(rt60_s=0.4, n_rooms=2, sample_rate=16000, seed=0), tmp_path / "rir")
    assert [r.id for r in read_manifest(tmp_path / "rir" / "manifest.jsonl")] == ["rir-000", "rir-001"]
    for record in records:
        rir, rate = sf.read(record.path)
        assert rate == 16000
        measured = record.extra["rt60_measured_s"]
        assert measured == pytest.approx(measured_rt60(rir, 16000), rel=0.05)  # survives the PCM16 round trip
        assert 0.2 < measured < 1.0  # inverse Sabine misses the target, hence recorded


def test_measured_rt60_on_a_real_rir(real_data):
    rir, rate = sf.read(str(real_data / "rir" / "rir_clap_seminar_room.flac"))
    assert 0.1 < measured_rt60(rir, rate) < 2.0


def _build_in_fresh_process(out_dir, seed):
    """eSpeak NG carries synthesis state from one utterance to the next inside a process, so a
    split is reproducible as a whole, in its own process, as the workflow runs it. ``+f5`` is a
    breathy voice: its noise comes from eSpeak's generator, seeded per utterance."""
    import subprocess
    import sys

    code = (
        "import sys; from asrcompress.corpora.demo import DemoSplitSpec, build_split; "
        "build_split(DemoSplitSpec('test', 6, ['en-us+m3', 'en-us+f5'], [165], [50], (2, 4), 16000, seed=int(sys.argv[2])), sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(out_dir), str(seed)], check=True)
    return read_manifest(out_dir / "manifest.jsonl")


def test_demo_split_is_deterministic_and_well_formed(tmp_path):
    first = _build_in_fresh_process(tmp_path / "a", 7)
    second = _build_in_fresh_process(tmp_path / "b", 7)
    for a, b in zip(first, second, strict=True):
        assert a.text == b.text and a.speaker == b.speaker
        assert sf.read(a.path)[0].tobytes() == sf.read(b.path)[0].tobytes()
        words = a.text.split()
        assert 2 <= len(words) <= 4 and all(w.lower() in VOCABULARY for w in words)
        info = sf.info(a.path)
        assert info.samplerate == 16000 and info.channels == 1
        assert a.duration == pytest.approx(info.frames / 16000)
    other_seed = _build_in_fresh_process(tmp_path / "c", 8)
    assert [u.text for u in other_seed] != [u.text for u in first]


def test_default_config_keeps_test_voices_unheard():
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    splits = demo["corpus"]["demo"]["splits"]
    voices = {name: set(split["voices"]) for name, split in splits.items()}
    babble = set(demo["banks"]["noise"]["babble_voices"])
    assert not voices["test"] & (voices["train"] | voices["dev"] | babble)
    assert not voices["dev"] & voices["train"]
    assert len(VOCABULARY) == len(set(VOCABULARY))


def test_babble_talkers_cycle_through_voices():
    talkers = talkers_from_voices(["en-us+m5", "en-us+f5"], 4)
    assert [t.voice for t in talkers] == ["en-us+m5", "en-us+f5", "en-us+m5", "en-us+f5"]
    assert len({t.id for t in talkers}) == 4
    assert speakers_of(["v"], [1, 2], [3]) == [Speaker("v", 1, 3), Speaker("v", 2, 3)]
