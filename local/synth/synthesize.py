#!/usr/bin/env python3
"""Synthesise one job's share of the synth corpus: audio plus phone alignments.

The items are every (speaker, sentence) pair; job J of N takes sentences
J, J+N, ... (in id order) with all their speakers, so every job gets the same
mix of engines, and a speed-warped voice reuses the engine output of its source
voice for the same sentence. For each item it writes

    <db-dir>/wav/<spk>/<spk>-<sentid>.wav    16 kHz, mono, 16-bit PCM
    <db-dir>/align/<spk>/<spk>-<sentid>.lab  `start end phone` lines (seconds)

Engines work in <db-dir>/tmp/synth.<J>/; finished files are moved into place
with rename(2), so a killed job leaves no half-written wav or lab, and a rerun
skips every item whose wav and lab both exist.

Example:
    python3 local/synth/synthesize.py --db-dir db/synth --speakers slt,ked,esf2 \
        --job 1 --num-jobs 2
"""

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import engines
import voices

# Sentences per festival process: big enough to pay its start-up once, small
# enough that progress shows and a failure loses little.
FESTIVAL_BATCH_SIZE = 50
LOG_EVERY = 50


class Item(NamedTuple):
    speaker: str
    sentence_id: str
    text: str

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}-{self.sentence_id}"


class CorpusLayout:
    """Paths of one corpus directory."""

    def __init__(self, db_dir: Path, job: int) -> None:
        self.db_dir = db_dir
        self.work_dir = db_dir / "tmp" / f"synth.{job}"

    def wav(self, item: Item) -> Path:
        return self.db_dir / "wav" / item.speaker / f"{item.utt_id}.wav"

    def lab(self, item: Item) -> Path:
        return self.db_dir / "align" / item.speaker / f"{item.utt_id}.lab"

    def is_done(self, item: Item) -> bool:
        return self.wav(item).is_file() and self.lab(item).is_file()


def read_sentences(path: Path) -> Dict[str, str]:
    """{sentence id: text} from `s0001 TEXT` lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run local/synth/get_corpus.sh (stage 0) first")
    sentences = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        sentence_id, _, text = line.partition(" ")
        if not sentence_id or not text.strip():
            raise ValueError(f"{path}:{line_number}: expected 'ID TEXT', got '{line}'")
        sentences[sentence_id] = text.strip()
    return sentences


def job_items(sentences: Dict[str, str], speakers: List[str], job: int, num_jobs: int) -> List[Item]:
    """This job's share: every speaker of sentences job, job+num_jobs, ... (sentence-major order)."""
    sentence_ids = sorted(sentences)[job - 1 :: num_jobs]
    return [Item(speaker, sentence_id, sentences[sentence_id]) for sentence_id in sentence_ids for speaker in speakers]


class Synthesizer:
    """Runs the engines for items and moves finished files into the corpus."""

    def __init__(self, layout: CorpusLayout) -> None:
        self.layout = layout
        self._espeak = None  # started on the first espeak item: it loads a C library
        # Engine outputs of the current sentence: (engine, engine voice) -> output. A voice and its
        # speed-warped variants say one sentence one after the other (items are sentence-major), so
        # the variants reuse the plain voice's output instead of a second synthesis (the engines
        # are deterministic).
        self._cache_text = ""
        self._cache: Dict[Tuple[str, str], Any] = {}
        self.max_label_end_mismatch: Dict[str, float] = {}

    def _cached(self, engine: str, voice: voices.Voice, text: str) -> Any:
        if text != self._cache_text:
            self._cache_text, self._cache = text, {}
        return self._cache.get((engine, voice.engine_voice))

    def _remember(self, engine: str, voice: voices.Voice, text: str, output: Any) -> None:
        if text != self._cache_text:
            self._cache_text, self._cache = text, {}
        self._cache[(engine, voice.engine_voice)] = output

    def _finish(self, item: Item, tmp_wav: Path, segments: List[engines.Segment], raw_label_end: float) -> None:
        """Normalise labels to the audio and move wav and lab into the corpus atomically."""
        duration = engines.check_wav(tmp_wav, item.utt_id)
        mismatch = abs(raw_label_end - duration)
        self.max_label_end_mismatch[item.speaker] = max(self.max_label_end_mismatch.get(item.speaker, 0.0), mismatch)
        segments = engines.normalise_segments(segments, duration, item.utt_id)
        tmp_lab = tmp_wav.with_suffix(".lab")
        tmp_lab.write_text(engines.format_lab(segments))
        wav_path, lab_path = self.layout.wav(item), self.layout.lab(item)
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        # The lab goes last: an item counts as done only when both are in place.
        engines.replace_atomically(tmp_wav, wav_path)
        engines.replace_atomically(tmp_lab, lab_path)

    def _finish_16k(self, item: Item, voice: voices.Voice, engine_wav: Path,
                    phone_ends: List[Tuple[str, float]]) -> None:
        """Finish an item from a 16 kHz engine wav (left in place) and its phone end times: a plain voice
        takes a copy of the wav, a speed-warped one a sox warp of it with every time divided by the speed."""
        tmp_wav = self.layout.work_dir / f"{item.utt_id}.wav"
        if voice.speed is None:
            shutil.copyfile(engine_wav, tmp_wav)
        else:
            # `speed` stretches time by 1/speed, so every label time does too.
            engines.sox_to_16k(engine_wav, tmp_wav, item.utt_id, speed=voice.speed)
            phone_ends = [(phone, end / voice.speed) for phone, end in phone_ends]
        segments = engines.segments_from_end_times(phone_ends)
        self._finish(item, tmp_wav, segments, segments[-1][1] if segments else 0.0)

    def flite(self, item: Item, voice: voices.Voice) -> None:
        flite_wav = self.layout.work_dir / f"{item.utt_id}.flite.wav"
        cached = self._cached("flite", voice, item.text)
        if cached is not None:
            audio_bytes, phone_ends = cached
            flite_wav.write_bytes(audio_bytes)
        else:
            phone_ends = engines.flite(item.text, voice.engine_voice, flite_wav, item.utt_id)
            self._remember("flite", voice, item.text, (flite_wav.read_bytes(), phone_ends))
        self._finish_16k(item, voice, flite_wav, phone_ends)
        flite_wav.unlink()

    def festival(self, items: List[Item], engine_voice: str) -> Iterator[Item]:
        """Synthesise the items of one festival voice and its speed-warped variants in batches of
        sentences, one festival process per batch and one synthesis per sentence; yields each finished item."""
        work = self.layout.work_dir
        by_sentence: Dict[str, List[Item]] = {}
        for item in items:
            by_sentence.setdefault(item.sentence_id, []).append(item)
        sentence_ids = list(by_sentence)
        for first in range(0, len(sentence_ids), FESTIVAL_BATCH_SIZE):
            batch = sentence_ids[first : first + FESTIVAL_BATCH_SIZE]
            jobs = [(by_sentence[sid][0].text, work / f"festival.{sid}.wav", work / f"festival.{sid}.segs")
                    for sid in batch]
            what = f"{engine_voice} batch {batch[0]}..{batch[-1]}"
            engines.festival_batch(engine_voice, jobs, work / "batch.scm", what)
            for sid, (_, festival_wav, segs_path) in zip(batch, jobs):
                phone_ends = engines.read_festival_segs(segs_path)
                segs_path.unlink()
                for item in by_sentence[sid]:
                    self._finish_16k(item, voices.VOICES[item.speaker], festival_wav, phone_ends)
                    yield item
                festival_wav.unlink()

    def espeak(self, item: Item, voice: voices.Voice) -> None:
        import espeak  # only jobs with espeak items load libespeak-ng

        cached = self._cached("espeak", voice, item.text)
        if cached is not None:
            samples, events = cached
        else:
            try:
                if self._espeak is None:
                    self._espeak = espeak.EspeakSynthesizer()
                samples, events = self._espeak.synthesize(item.text, voice.engine_voice)
            except RuntimeError as error:
                raise engines.EngineError(f"{item.utt_id}: {error}") from None
            self._remember("espeak", voice, item.text, (samples, events))
        sample_rate = self._espeak.sample_rate
        tmp_wav = self.layout.work_dir / f"{item.utt_id}.wav"
        engines.sox_raw_to_16k(samples, sample_rate, tmp_wav, item.utt_id, speed=voice.speed)
        duration = len(samples) / sample_rate
        if voice.speed is not None:  # the warp stretches time by 1/speed
            duration /= voice.speed
            events = [(mnemonic, start / voice.speed) for mnemonic, start in events]
        try:
            segments = espeak.phoneme_events_to_segments(events, duration)
        except espeak.UnmappedPhonemeError as error:
            raise engines.EngineError(f"{item.utt_id} ('{item.text}'): {error}") from None
        # The last phone runs to the end of espeak's own audio, so the mismatch
        # left is only what resampling to 16 kHz changed in the length.
        self._finish(item, tmp_wav, segments, duration)


class Progress:
    """A tqdm bar on a terminal; otherwise a log line every LOG_EVERY items (run.pl logs)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.time()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="utt")

    def update(self, item: Item) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.done % LOG_EVERY == 0 or self.done == self.total:
            rate = self.done / max(time.time() - self.start, 1e-6)
            logging.info(f"{self.done}/{self.total} utterances ({rate:.1f}/s), last {item.utt_id}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def synthesize_items(layout: CorpusLayout, items: List[Item]) -> Dict[str, float]:
    """Synthesise every item not yet done; returns the max raw label-end mismatch per speaker."""
    todo = [item for item in items if not layout.is_done(item)]
    logging.info(f"{len(items) - len(todo)} of {len(items)} utterances already exist; synthesising {len(todo)}")
    if layout.work_dir.exists():  # leftovers of a killed run
        shutil.rmtree(layout.work_dir)
    layout.work_dir.mkdir(parents=True)
    synthesizer = Synthesizer(layout)
    progress = Progress(len(todo))
    festival_items: Dict[str, List[Item]] = {}  # by festival voice: a voice and its warps share a synthesis
    for item in todo:
        voice = voices.VOICES[item.speaker]
        if voice.engine == "festival":
            festival_items.setdefault(voice.engine_voice, []).append(item)
            continue
        if voice.engine == "flite":
            synthesizer.flite(item, voice)
        elif voice.engine == "espeak":
            synthesizer.espeak(item, voice)
        else:
            raise ValueError(f"voice {voice.speaker} has an unknown engine '{voice.engine}'")
        progress.update(item)
    for engine_voice, voice_items in festival_items.items():
        for item in synthesizer.festival(voice_items, engine_voice):
            progress.update(item)
    progress.close()
    shutil.rmtree(layout.work_dir)
    try:  # <db-dir>/tmp goes with the last job to finish
        layout.work_dir.parent.rmdir()
    except OSError:
        pass
    return synthesizer.max_label_end_mismatch


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--db-dir", type=Path, required=True, help="corpus directory (holds sentences.txt)")
    parser.add_argument("--sentences", type=Path, default=None, help="sentences file (default: <db-dir>/sentences.txt)")
    parser.add_argument("--speakers", default=voices.DEFAULT_SPEAKERS,
                        help="speaker ids, separated by spaces or commas")
    parser.add_argument("--job", type=int, default=1, help="this job's number, 1..num-jobs")
    parser.add_argument("--num-jobs", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if not 1 <= args.job <= args.num_jobs:
        sys.exit(f"{sys.argv[0]}: --job {args.job} is outside 1..{args.num_jobs} (--num-jobs)")
    try:
        speakers = voices.parse_speakers(args.speakers)
        sentences = read_sentences(args.sentences or args.db_dir / "sentences.txt")
        items = job_items(sentences, speakers, args.job, args.num_jobs)
        start = time.time()
        mismatch = synthesize_items(CorpusLayout(args.db_dir, args.job), items)
    except (FileNotFoundError, ValueError, engines.EngineError) as error:
        sys.exit(f"{sys.argv[0]}: {error}")
    for speaker, seconds in sorted(mismatch.items()):
        logging.info(f"{speaker}: engine labels ended at most {seconds * 1000:.1f} ms from the audio end")
    logging.info(f"job {args.job}/{args.num_jobs}: {len(items)} utterances done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
