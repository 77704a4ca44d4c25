"""Speech for training and evaluating SimVQ speech tokenizers: the embedded default (sentences spoken by espeak-ng,
offline), a folder of audio files, or a `datasets` dataset; all cut into fixed-length clips with a padding mask.

The default data comes from the `espeakng-loader` wheel (libespeak-ng and its voice data, driven through ctypes):
generated sentences in several English voices, speeds and pitches, rendered on first use at espeak's 22,050 Hz,
resampled to the model's rate and cached. Validation uses voices and sentences that training never sees, so its
numbers measure generalisation, not memory.
"""

import ctypes
import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

# espeak-ng voice variants ("language+variant"), disjoint between the splits.
TRAIN_VOICES = ("en-us+m1", "en-us+f1", "en+m3", "en+f2", "en-gb-scotland+m2", "en-us+f4", "en+klatt", "en-029+m5")
VALIDATION_VOICES = ("en-us+m7", "en+f5", "en-gb-x-rp+m4")
_SUBJECTS = (
    "the old captain",
    "a quiet student",
    "my neighbour",
    "the small dog",
    "every farmer",
    "our teacher",
    "the tired pilot",
    "a young painter",
    "the baker",
    "her brother",
    "the musician",
    "a careful driver",
)
_VERBS = ("carried", "painted", "found", "watched", "described", "repaired", "forgot", "borrowed", "counted", "sold")
_OBJECTS = (
    "seven green bottles",
    "the broken clock",
    "a heavy wooden chair",
    "three letters",
    "the yellow kite",
    "an empty basket",
    "the silver key",
    "a map of the city",
    "fresh bread",
    "the morning paper",
)
_ENDINGS = (
    "before the storm",
    "near the river",
    "on a cold Monday",
    "without a word",
    "at the station",
    "in the garden",
    "after dinner",
    "by the window",
    "during the long winter",
    "under the bridge",
)
ESPEAK_RATE, ESPEAK_PITCH = 1, 3  # espeak_PARAMETER values
AUDIO_FILE_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("HF_SIMVQ_CACHE", Path.home() / ".cache" / "hf_simvq"))


def generated_sentences(num_sentences: int, seed: int) -> list[str]:
    """`num_sentences` distinct sentences "subject verb object ending", drawn from `seed`."""
    rng = random.Random(seed)
    sentences: dict[str, None] = {}
    while len(sentences) < num_sentences:
        words = [rng.choice(part) for part in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)]
        sentences[(" ".join(words) + ".").capitalize()] = None
    return list(sentences)


class EspeakSynthesizer:
    """libespeak-ng of the `espeakng-loader` wheel: text → 16-bit waveform at `sampling_rate` (22,050 Hz)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise ImportError(
                "The default speech data is spoken by espeak-ng from the `espeakng-loader` wheel: "
                "pip install espeakng-loader (or pip install 'hf-simvq[train]'), or give --train_data_dir / "
                "--dataset_name."
            ) from error
        self._library = ctypes.CDLL(espeakng_loader.get_library_path())
        output_synchronous = 2
        self.sampling_rate = self._library.espeak_Initialize(
            output_synchronous, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.sampling_rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialise (espeak_Initialize returned an error).")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # kept alive: the library holds only the pointer
        self._library.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0

    def speak(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        """The waveform of `text` as float32 in [-1, 1]."""
        if self._library.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}.")
        self._library.espeak_SetParameter(ESPEAK_RATE, rate, 0)
        self._library.espeak_SetParameter(ESPEAK_PITCH, pitch, 0)
        self._chunks.clear()
        encoded = text.encode()
        self._library.espeak_Synth(ctypes.c_char_p(encoded), len(encoded) + 1, 0, 0, 0, 0, None, None)
        self._library.espeak_Synchronize()
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def resample(waveform: np.ndarray, original_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy), float32."""
    if original_rate == target_rate:
        return waveform.astype(np.float32)
    from scipy.signal import resample_poly

    factor = gcd(original_rate, target_rate)
    return resample_poly(waveform, target_rate // factor, original_rate // factor).astype(np.float32)


@dataclass(frozen=True)
class SpokenSplit:
    """What to render for one split: its voices, how many sentences (from which seed), and the speed/pitch ranges."""

    voices: tuple[str, ...]
    num_sentences: int
    sentence_seed: int
    rates: tuple[int, int] = (130, 210)
    pitches: tuple[int, int] = (25, 75)


DEFAULT_SPLITS = {
    "train": SpokenSplit(TRAIN_VOICES, num_sentences=96, sentence_seed=0),
    "validation": SpokenSplit(VALIDATION_VOICES, num_sentences=16, sentence_seed=1),
}


def spoken_utterances(split: str, sampling_rate: int, cache_dir: Path | None = None) -> list[np.ndarray]:
    """The default speech of `split` at `sampling_rate`: every sentence spoken once, each by a voice, speed and pitch
    drawn from a seeded generator; rendered once and cached as `.npz`. Validation sentences never occur in training."""
    spec = DEFAULT_SPLITS[split]
    key = hashlib.sha256(json.dumps([asdict(spec), sampling_rate, 1]).encode()).hexdigest()[:16]
    path = (cache_dir or default_cache_dir()) / "speech" / f"espeak-{split}-{sampling_rate}-{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return [stored[name] for name in sorted(stored.files, key=int)]
    sentences = generated_sentences(spec.num_sentences, spec.sentence_seed)
    if split != "train":
        seen = set(generated_sentences(DEFAULT_SPLITS["train"].num_sentences, DEFAULT_SPLITS["train"].sentence_seed))
        sentences = [sentence for sentence in sentences if sentence not in seen]
    synthesizer = EspeakSynthesizer()
    rng = random.Random(spec.sentence_seed)
    waveforms = []
    for index, sentence in enumerate(sentences):
        voice = spec.voices[index % len(spec.voices)]
        spoken = synthesizer.speak(sentence, voice, rng.randint(*spec.rates), rng.randint(*spec.pitches))
        waveforms.append(resample(spoken, synthesizer.sampling_rate, sampling_rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **{str(index): waveform for index, waveform in enumerate(waveforms)})
    temporary.replace(path)  # atomic: another process never reads half a file
    logger.info(f"Rendered {len(waveforms)} {split} utterances with espeak-ng into {path}")
    return waveforms


def folder_utterances(data_dir: str, sampling_rate: int) -> list[np.ndarray]:
    """Every audio file under `data_dir` (sorted), decoded with soundfile, mixed to mono and resampled."""
    import soundfile

    files = sorted(path for path in Path(data_dir).rglob("*") if path.suffix.lower() in AUDIO_FILE_SUFFIXES)
    if not files:
        raise ValueError(
            f"No audio files ({', '.join(sorted(AUDIO_FILE_SUFFIXES))}) under --train_data_dir {data_dir}."
        )
    waveforms = []
    for path in files:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        waveforms.append(resample(samples.mean(axis=1), rate, sampling_rate))
    return waveforms


def dataset_utterances(
    dataset_name: str,
    split: str,
    audio_column: str,
    sampling_rate: int,
    config_name: str | None = None,
    cache_dir: str | None = None,
) -> list[np.ndarray]:
    """The `audio_column` of a `datasets` dataset, decoded at `sampling_rate` by `datasets.Audio`."""
    import datasets

    dataset = datasets.load_dataset(dataset_name, config_name, split=split, cache_dir=cache_dir)
    if audio_column not in dataset.column_names:
        raise ValueError(
            f"--audio_column {audio_column!r} is not a column of {dataset_name}: it has {dataset.column_names}."
        )
    try:
        dataset = dataset.cast_column(audio_column, datasets.Audio(sampling_rate=sampling_rate))
        return [np.asarray(example["array"], dtype=np.float32).reshape(-1) for example in dataset[audio_column]]
    except ImportError as error:
        raise ImportError(
            f"datasets decodes audio with torchcodec (and FFmpeg's libraries), which this machine lacks ({error}). "
            "Install them (pip install torchcodec; apt-get install ffmpeg), or save the audio files to a folder and "
            "give --train_data_dir, which reads them with soundfile."
        ) from error


def clips(utterances: list[np.ndarray], clip_samples: int) -> dict[str, torch.Tensor]:
    """Consecutive `clip_samples` pieces of every utterance; the last, shorter piece is zero-padded and masked.

    Returns `{"input_values": (N, 1, clip_samples), "padding_mask": (N, clip_samples)}` (1 = audio).
    """
    values, masks = [], []
    for waveform in utterances:
        for start in range(0, len(waveform), clip_samples):
            piece = torch.from_numpy(np.ascontiguousarray(waveform[start : start + clip_samples]))
            mask = torch.zeros(clip_samples, dtype=torch.long)
            mask[: len(piece)] = 1
            values.append(torch.nn.functional.pad(piece, (0, clip_samples - len(piece))))
            masks.append(mask)
    if not values:
        raise ValueError("The speech data holds no samples.")
    return {"input_values": torch.stack(values)[:, None], "padding_mask": torch.stack(masks)}


class ClipDataset(torch.utils.data.Dataset):
    """Fixed clips `{"input_values": (1, samples), "padding_mask": (samples,)}`: the same at every epoch, so a
    resumed run sees exactly the batches of an uninterrupted one."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["input_values"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: tensor[index] for name, tensor in self.tensors.items()}


def speech_datasets(
    sampling_rate: int,
    clip_seconds: float,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | None = None,
    audio_column: str = "audio",
    validation_split: str = "validation",
    validation_fraction: float = 0.1,
    cache_dir: str | None = None,
) -> tuple[ClipDataset, ClipDataset]:
    """Training and validation clips of `clip_seconds` at `sampling_rate`, from one of the three sources.

    A folder has no validation split: its last `validation_fraction` of files (sorted) is held out.
    """
    clip_samples = round(clip_seconds * sampling_rate)
    if clip_samples <= 0:
        raise ValueError(f"--clip_seconds must be positive, got {clip_seconds}.")
    if dataset_name:
        train = dataset_utterances(dataset_name, "train", audio_column, sampling_rate, dataset_config_name, cache_dir)
        validation = dataset_utterances(
            dataset_name, validation_split, audio_column, sampling_rate, dataset_config_name, cache_dir
        )
    elif train_data_dir:
        utterances = folder_utterances(train_data_dir, sampling_rate)
        held_out = max(1, round(len(utterances) * validation_fraction))
        if len(utterances) <= held_out:
            raise ValueError(f"--train_data_dir {train_data_dir} needs at least 2 audio files (one for validation).")
        train, validation = utterances[:-held_out], utterances[-held_out:]
    else:
        cache = Path(cache_dir) if cache_dir else None
        train = spoken_utterances("train", sampling_rate, cache)
        validation = spoken_utterances("validation", sampling_rate, cache)
    return ClipDataset(clips(train, clip_samples)), ClipDataset(clips(validation, clip_samples))


__all__ = [
    "ClipDataset",
    "EspeakSynthesizer",
    "clips",
    "generated_sentences",
    "resample",
    "speech_datasets",
    "spoken_utterances",
]
