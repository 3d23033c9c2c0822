"""Conversion pairs of a speaker-disjoint split whose targets a model knows (stage 1 of the real corpora).

In a speaker-disjoint split (LibriSpeech's subsets, VCTK's ``--split speaker``) no eval speaker is in
train, so a model that looks its target up in a speaker table cannot convert to one. The seen-target
pairs convert the unseen eval speakers' utterances to a few *train* speakers instead (spread over genders),
and a held-out slice of each target's utterances moves from train to eval: no training ever sees it, and
stage 9 takes the targets' references and speaker centroids from it.
"""

from __future__ import annotations

import argparse
import logging
from typing import Callable, Dict, List, Mapping, MutableMapping, Optional, Sequence, Tuple, TypeVar

from voiceswap.data.kaldi_dir import c_sorted

U = TypeVar("U")  # a corpus's utterance record, with .utt and .spk


logger = logging.getLogger(__name__)


class PairError(ValueError):
    """Pairs that cannot be made from the split; the message says which option to change."""


def pick_balanced(speakers: Sequence[str], genders: Mapping[str, str], count: int) -> List[str]:
    """``count`` speakers alternating genders in sorted order (deterministic); 0 or more than there are: all."""
    if count <= 0 or count >= len(speakers):
        return c_sorted(list(speakers))
    groups: Dict[str, List[str]] = {}
    for spk in c_sorted(list(speakers)):
        groups.setdefault(genders.get(spk, "?"), []).append(spk)
    picked: List[str] = []
    while len(picked) < count:
        for gender in sorted(groups):
            if groups[gender] and len(picked) < count:
                picked.append(groups[gender].pop(0))
    return c_sorted(picked)


def hold_out(train: Sequence[U], targets: Sequence[str], count: int,
             prefer: Callable[[U], bool] = lambda u: False) -> Tuple[List[U], List[U]]:
    """Move ``count`` utterances of each target speaker out of ``train``: those ``prefer`` picks first (e.g.
    sentences a source speaks too, for parallel references), then the last in sorted order.

    Returns (train without them, the held-out utterances). Each target keeps at least as many training
    utterances as it gives.
    """
    if count < 1:
        raise PairError(f"--num-target-ref-utts must be at least 1 (the targets' references), got {count}")
    held: List[U] = []
    for target in targets:
        mine = sorted((u for u in train if u.spk == target), key=lambda u: u.utt.encode())  # type: ignore[attr-defined]
        if len(mine) < 2 * count:
            raise PairError(f"target speaker {target} has {len(mine)} training utterance(s): holding out {count} "
                            f"would leave it too few to learn; ask for fewer (--num-target-ref-utts) or other targets")
        ranked = sorted(enumerate(mine), key=lambda item: (not prefer(item[1]), -item[0]))
        held.extend(u for _, u in ranked[:count])
    held_ids = {u.utt for u in held}  # type: ignore[attr-defined]
    return [u for u in train if u.utt not in held_ids], held  # type: ignore[attr-defined]


def seen_target_pairs(sources: Mapping[str, Sequence[str]], targets: Sequence[str],
                      reference_of: Callable[[str, str], Optional[str]] = lambda utt, target: None) -> List[str]:
    """``source_utt target_spk reference_utt`` lines (``-``: no reference): every source utterance (by source
    speaker) to every target; ``reference_of(source_utt, target)`` names the target's utterance of the same
    sentence where there is one."""
    lines = []
    for speaker in c_sorted(list(sources)):
        for utt in sources[speaker]:
            for target in targets:
                if target == speaker:
                    continue
                lines.append(f"{utt} {target} {reference_of(utt, target) or '-'}")
    return c_sorted(lines)


def add_seen_target_args(parser: argparse.ArgumentParser) -> None:
    """The options of the seen-target pairs, the same for every speaker-disjoint corpus."""
    parser.add_argument("--pair-targets", choices=("seen", "eval"), default="seen",
                        help="seen: train speakers with a held-out slice in eval; eval: the other eval speakers "
                        "(zero-shot)")
    parser.add_argument("--num-pair-targets", type=int, default=4,
                        help="seen targets: train speakers (gender-balanced)")
    parser.add_argument("--num-target-ref-utts", type=int, default=3,
                        help="seen targets: utterances of each moved from train to eval (references, centroid)")
    parser.add_argument("--num-target-dev-utts", type=int, default=2,
                        help="seen targets: utterances of each moved from train to dev (validation of models with a "
                        "speaker table, which cannot reconstruct the unseen dev speakers)")


def hold_out_targets(splits: MutableMapping[str, List[U]], targets: Sequence[str], args: argparse.Namespace,
                     prefer: Callable[[U], bool] = lambda u: False) -> None:
    """Move ``--num-target-ref-utts`` utterances of each target from ``splits["train"]`` to eval (``prefer``
    picks first) and ``--num-target-dev-utts`` to dev, keeping every split sorted by utterance id."""
    splits["train"], held = hold_out(splits["train"], targets, args.num_target_ref_utts, prefer)
    splits["eval"] = sorted(splits["eval"] + held, key=lambda u: u.utt.encode())  # type: ignore[attr-defined]
    if args.num_target_dev_utts > 0:
        splits["train"], held_dev = hold_out(splits["train"], targets, args.num_target_dev_utts)
        splits["dev"] = sorted(splits["dev"] + held_dev, key=lambda u: u.utt.encode())  # type: ignore[attr-defined]
    logger.info("seen targets %s: %d utterance(s) each held out of train into eval, %d into dev",
                " ".join(targets), args.num_target_ref_utts, args.num_target_dev_utts)


def speaker_references(items: Sequence[Tuple[str, str, Optional[str]]],
                       utt2spk: Mapping[str, str]) -> Tuple[Dict[str, List[str]], List[str]]:
    """Each speaker's reference utterances in an eval set: those no conversion item uses as a source or a
    parallel reference, so no output is judged against (or converted with) its own words.

    ``items``: ``(source_utt, target_spk, reference_utt or None)``; the speakers are the items' targets
    and sources. Returns ``{speaker: utterances}`` (byte order) and the speakers that have no utterance
    outside the items, who get all of theirs instead. Stage 9's speaker centroids and stage 8's
    references of any-to-any models are both these.
    """
    used = {source for source, _, _ in items} | {reference for _, _, reference in items if reference}
    speakers = {target for _, target, _ in items} | {utt2spk[source] for source, _, _ in items if source in utt2spk}
    references: Dict[str, List[str]] = {}
    for utt, speaker in utt2spk.items():
        if speaker in speakers and utt not in used:
            references.setdefault(speaker, []).append(utt)
    fallback = sorted(speakers - set(references), key=str.encode)
    for utt, speaker in utt2spk.items():
        if speaker in fallback:
            references.setdefault(speaker, []).append(utt)
    return {speaker: c_sorted(utts) for speaker, utts in references.items()}, fallback
