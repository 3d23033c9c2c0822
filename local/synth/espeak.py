"""eSpeak NG synthesis with phone timings, through libespeak-ng's C API (ctypes).

The espeak-ng command line prints no timings, but the library reports a
phoneme event (its mnemonic and its start in ms) for every phone it speaks.
This module synthesises one utterance at a time into memory, collects those
events, and maps espeak's English mnemonics onto the lowercase CMU/ARPAbet
phone set that flite and festival use, so every voice of the corpus shares one
phone set.

Only one synthesiser may exist per process: libespeak-ng keeps global state.
"""

import ctypes
import os
import pickle
import traceback
from typing import Dict, List, Sequence, Tuple

import numpy as np

LIBRARY_NAME = "libespeak-ng.so.1"

# From speak_lib.h (espeak-ng 1.51).
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
ESPEAK_EVENT_LIST_TERMINATED = 0
ESPEAK_EVENT_PHONEME = 7
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this espeak_Synth call
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

# espeak-ng English (en-us) phoneme mnemonic -> shared phones. Stress marks (' ,)
# and length/linking markers are stripped first (see `base_mnemonic`). espeak
# writes an r-coloured vowel or a syllabic consonant as ONE phoneme where the CMU
# set has two phones; those map to two phones that share its duration evenly
# (espeak gives no finer timing). The table was filled from every phoneme espeak
# speaks on the ~6,000 candidate WordNet sentences; an unmapped one fails loudly.
PHONE_MAP: Dict[str, Tuple[str, ...]] = {
    # pauses; `_!` is the short break espeak puts before a word-initial vowel
    "_": ("pau",), "_:": ("pau",), "_!": ("pau",), "_^_": ("pau",), "_|": ("pau",),
    # plosives, affricates
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",), "g": ("g",),
    "t2": ("t",), "d2": ("d",), "t#": ("t",), "d#": ("d",),  # US flap: CMU writes t / d
    "?": ("t",),  # glottal stop in "button": CMU writes t
    "tS": ("ch",), "dZ": ("jh",),
    # fricatives
    "f": ("f",), "v": ("v",), "T": ("th",), "D": ("dh",), "s": ("s",), "z": ("z",),
    "S": ("sh",), "Z": ("zh",), "h": ("hh",), "x": ("k",), "z#": ("z",), "s2": ("s",),
    # nasals, approximants
    "m": ("m",), "n": ("n",), "N": ("ng",), "l": ("l",), "r": ("r",), "j": ("y",), "w": ("w",),
    "r-": ("r",), "l/": ("l",), "l/2": ("l",), "n-": ("ax", "n"), "m-": ("ax", "m"), "@L": ("ax", "l"),
    # vowels
    "@": ("ax",), "@2": ("ax",), "@5": ("ax",), "@-": ("ax",), "a#": ("ax",), "I2": ("ih",), "I#": ("ih",),
    "a": ("ae",), "aa": ("ae",), "a2": ("ae",), "A:": ("aa",), "A": ("aa",), "0": ("aa",), "0#": ("aa",),
    "E": ("eh",), "E2": ("eh",), "I": ("ih",), "i": ("iy",), "i:": ("iy",), "V": ("ah",),
    "u:": ("uw",), "U": ("uh",), "O:": ("ao",), "O": ("ao",), "O2": ("ao",),
    "3": ("er",), "3:": ("er",), "@3": ("er",),
    # diphthongs
    "aI": ("ay",), "aU": ("aw",), "eI": ("ey",), "OI": ("oy",), "oU": ("ow",), "o": ("ow",), "u": ("uw",),
    # r-coloured vowels (one espeak phoneme, vowel + r in CMU)
    "A@": ("aa", "r"), "e@": ("eh", "r"), "i@": ("ih", "r"), "i@3": ("ih", "r"), "U@": ("uh", "r"),
    "O@": ("ao", "r"), "o@": ("ao", "r"), "aI@": ("ay", "er"), "aI3": ("ay", "er"),
    "aU@": ("aw", "er"), "aU3": ("aw", "er"), "VR": ("ah", "r"), "IR": ("ih", "r"), "3r": ("er",),
    # nasal vowel of French words ("Provence")
    "A~": ("aa", "n"), "O~": ("ao", "n"), "E~": ("eh", "n"),
    # `;` is the ~50 ms glide espeak puts between two vowels ("my arm", "the apple");
    # CMU has no phone there, so its time goes to the vowel before it.
    ";": (),
}

# Characters espeak adds to a mnemonic to mark stress, length or a linked
# phone; they do not change which phone it is.
_STRESS_AND_LENGTH_MARKS = "',%=;"


class UnmappedPhonemeError(ValueError):
    """An espeak phoneme with no entry in PHONE_MAP."""


def base_mnemonic(mnemonic: str) -> str:
    """Strip stress/linking marks: `'aI` -> `aI`, `n;` -> `n`; keeps `_:`, `i:`, `3:`."""
    return "".join(char for char in mnemonic if char not in _STRESS_AND_LENGTH_MARKS)


def map_phoneme(mnemonic: str) -> Tuple[str, ...]:
    """Shared phones for one espeak mnemonic (maybe none); raises UnmappedPhonemeError naming it."""
    if mnemonic in PHONE_MAP:  # `;` alone is a phoneme, not a marker
        return PHONE_MAP[mnemonic]
    base = base_mnemonic(mnemonic)
    if base in PHONE_MAP:
        return PHONE_MAP[base]
    # A trailing ':' only lengthens a vowel (`aI:`) when the short form is known.
    if base.endswith(":") and base[:-1] in PHONE_MAP:
        return PHONE_MAP[base[:-1]]
    raise UnmappedPhonemeError(
        f"espeak phoneme '{mnemonic}' has no entry in PHONE_MAP of local/synth/espeak.py: add it there"
    )


def phoneme_events_to_segments(
    events: Sequence[Tuple[str, float]], duration: float
) -> List[Tuple[float, float, str]]:
    """Turn (mnemonic, start seconds) events into (start, end, phone) segments.

    The audio before the first phoneme is silence: it becomes a leading `pau`.
    Each phoneme lasts until the next one starts, the last one until `duration`.
    A phoneme mapping to several phones shares its span evenly between them;
    one mapping to none lends its span to the phoneme before it. Segments are
    not yet merged or rounded (see engines.normalise_segments).
    """
    mapped = [(map_phoneme(mnemonic), start) for mnemonic, start in events]
    # Drop phone-less events first, so the phone before them runs on to the next one.
    phone_events = [(phones, start) for phones, start in mapped if phones]
    segments: List[Tuple[float, float, str]] = []
    if not phone_events or phone_events[0][1] > 0:
        leading_silence_end = min(phone_events[0][1], duration) if phone_events else duration
        segments.append((0.0, leading_silence_end, "pau"))
    for index, (phones, event_start) in enumerate(phone_events):
        next_start = phone_events[index + 1][1] if index + 1 < len(phone_events) else duration
        start, end = min(event_start, duration), min(next_start, duration)
        step = (end - start) / len(phones)
        for part, phone in enumerate(phones):
            segments.append((start + part * step, start + (part + 1) * step, phone))
    return segments


class EspeakSynthesizer:
    """In-memory espeak-ng synthesis of one utterance at a time, with phoneme events."""

    _instance_exists = False

    def __init__(self, library: str = LIBRARY_NAME) -> None:
        if EspeakSynthesizer._instance_exists:
            raise RuntimeError("only one EspeakSynthesizer per process: libespeak-ng has global state")
        try:
            self._lib = ctypes.CDLL(library)
        except OSError as error:
            raise RuntimeError(
                f"cannot load {library} ({error}): install the Debian package libespeak-ng1"
            ) from None
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.sample_rate = self._lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, None, ESPEAK_INITIALIZE_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.sample_rate}): is espeak-ng-data installed?")
        self._chunks: List[np.ndarray] = []
        self._events: List[Tuple[str, float]] = []
        # Keep a reference: ctypes frees the C thunk when the Python object dies.
        self._callback = _SYNTH_CALLBACK(self._on_synth)
        self._lib.espeak_SetSynthCallback(self._callback)
        EspeakSynthesizer._instance_exists = True

    def _on_synth(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != ESPEAK_EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == ESPEAK_EVENT_PHONEME:
                mnemonic = event.id.string.decode("ascii", errors="replace")
                self._events.append((mnemonic, event.audio_position / 1000.0))
            index += 1
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: str) -> Tuple[np.ndarray, List[Tuple[str, float]]]:
        """Return (int16 samples at self.sample_rate, [(mnemonic, start seconds), ...]).

        The synthesis runs in a forked child, so this process's espeak stays
        as espeak_Initialize left it. espeak carries waveform state (oscillator
        phase, pitch flutter, rand()) from one utterance to the next, so
        without this an utterance's samples and timings would depend on which
        utterances its job spoke before it, i.e. on --nj.
        """
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, send the result, never return
            exit_code = 0
            try:
                os.close(read_fd)
                payload = pickle.dumps(self._synthesize_here(text, voice))
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(payload)
            except BaseException:  # anything: the child must reach os._exit, never return
                traceback.print_exc()
                exit_code = 1
            finally:
                os._exit(exit_code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            raise RuntimeError(f"espeak-ng failed (see the traceback above) on voice {voice}, text: {text}")
        return pickle.loads(payload)

    def _synthesize_here(self, text: str, voice: str) -> Tuple[np.ndarray, List[Tuple[str, float]]]:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise ValueError(f"espeak-ng has no voice '{voice}' (see `espeak-ng --voices=en`)")
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on text: {text}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return audio.astype(np.int16, copy=False), self._events


def espeak_version(library: str = LIBRARY_NAME) -> str:
    """Version of libespeak-ng (espeak_Info); loads the library without initialising it."""
    lib = ctypes.CDLL(library)
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    return lib.espeak_Info(None).decode()
