import numpy as np
import pytest
import soundfile as sf

from asrcompress.audio import read_audio, write_audio
from asrcompress.errors import AudioError


def test_reads_real_librispeech_file(librispeech_audio):
    wave = read_audio(librispeech_audio, 16000)
    assert wave.dtype == np.float32
    assert len(wave) == sf.info(str(librispeech_audio)).frames
    assert 0.01 < np.sqrt(np.mean(wave**2)) < 0.5


def _float_wav(path, data, rate=16000):
    sf.write(str(path), np.asarray(data, dtype=np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b"RIFF\x00\x00not really a wav file at all"), "cannot read"),
        (lambda p: _float_wav(p, np.zeros(0)), "no samples"),
        (lambda p: _float_wav(p, np.zeros(300)), "ms long"),
        (lambda p: _float_wav(p, np.r_[np.zeros(800), np.nan, np.zeros(800)]), "NaN"),
        (lambda p: _float_wav(p, np.zeros(8000), rate=8000), "sample rate is 8000"),
    ],
    ids=["corrupt", "empty", "too-short", "non-finite", "wrong-rate"],
)
def test_bad_audio_is_rejected_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        read_audio(path, 16000)
    assert str(path) in str(err.value)
    assert reason in str(err.value)


def test_resampling_on_request(tmp_path, librispeech_audio):
    wave = read_audio(librispeech_audio, 16000)
    path = tmp_path / "8k.wav"
    write_audio(path, wave[::2], 8000)
    resampled = read_audio(path, 16000, resample=True)
    assert abs(len(resampled) - 2 * len(wave[::2])) <= 2


def test_write_is_atomic_and_refuses_nan(tmp_path):
    path = tmp_path / "out.wav"
    with pytest.raises(AudioError):
        write_audio(path, np.array([0.0, np.nan] * 1000), 16000)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
