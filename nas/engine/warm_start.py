"""Warm start: the architectures a study evaluates before its sampler proposes any (`[[seed_archs]]`).

A search that starts from the best known hand design can only improve on it: those candidates go
through the same screening and training as sampled ones and sit on the fronts if they earn it.
They are queued once (a resumed study does not queue them again) as trials that carry their Arch
(`Attr.SEED_ARCH`); the evaluator uses it instead of sampling.
"""

from __future__ import annotations

from pathlib import Path

from memory_models import evaluate
from memory_models.errors import InputError
from nas.config.study import Study
from search_spaces import Arch, graph
from search_spaces.families import family, member, scaled_to

from .record import Attr, TrialRecord


def seed_archs(study: Study) -> list[Arch]:
    """The study's seed architectures, in file order, each once; family members scaled to every
    device's budget (the widest that fit at each weight bit-width), or the listed widths that fit."""
    shapes = study.dataset_shapes()
    out: dict[str, Arch] = {}
    for i, entry in enumerate(study.cfg.seed_archs):
        where = f"{study.path}: seed_archs[{i}]"
        if entry.file is not None:
            path = Path(entry.file)
            path = path if path.is_absolute() else study.path.parent / path
            if not path.is_file():
                raise InputError(f"{where}.file: no such file {path}")
            arch = Arch.from_json(path.read_text(encoding="utf-8"), str(path))
            _check_matches(arch, shapes, f"{where}.file ({path.name})")
            archs = [arch]
        else:
            bits = tuple(entry.bits) if entry.bits else (8, 4)
            if entry.widths:
                members = [
                    member(entry.family, shapes["modalities"], shapes["classes"], w, b)
                    for w in entry.widths
                    for b in bits
                ]
            else:
                members = family(entry.family, shapes["modalities"], shapes["classes"])
            archs = []
            for name, dev in study.devices.items():
                target = study.targets[name]
                fits = lambda a, d=dev, t=target: evaluate(graph(a), d, t).fits  # noqa: E731
                if entry.widths:
                    archs += [a for a in members if fits(a)]
                else:
                    archs += scaled_to(members, fits, bits=bits)
        for arch in archs:
            out.setdefault(arch.key(), arch)
    return list(out.values())


def _check_matches(arch: Arch, shapes: dict, where: str) -> None:
    inputs, classes = shapes["modalities"], shapes["classes"]
    problems = [
        f"modality {b.modality!r} with input shape {list(b.input_shape)} (the dataset: "
        f"{list(inputs[b.modality]) if b.modality in inputs else 'no such modality'})"
        for b in arch.branches
        if b.modality not in inputs or (b.used and tuple(b.input_shape) != tuple(inputs[b.modality]))
    ]
    if arch.classes != classes:
        problems.append(f"{arch.classes} classes (the dataset has {classes})")
    if problems:
        raise InputError(f"{where}: the arch does not fit the study's dataset: {'; '.join(problems)}")


def enqueue_seed_archs(study: Study, ostudy) -> int:
    """Queue the seed architectures not yet in the storage; returns how many were queued."""
    archs = seed_archs(study)
    if not archs:
        return 0
    known = set()
    for t in ostudy.get_trials(deepcopy=False):
        rec = TrialRecord(t)
        known.add(rec.arch_key)
        seeded = t.user_attrs.get(Attr.SEED_ARCH)
        if seeded is not None:
            known.add(Arch.from_dict(seeded, "stored seed arch").key())
    queued = 0
    for arch in archs:
        if arch.key() in known:
            continue
        ostudy.enqueue_trial({}, user_attrs={Attr.SEED_ARCH: arch.to_dict()}, skip_if_exists=False)
        queued += 1
    return queued
