"""Benchmarks: which aligned faces, which verification pairs, which identification sets.

Three layouts:

* ``lfw``: the official LFW tree (``DIR/<Name>/<Name>_0001.jpg``) with ``pairs.txt``: 10 folds of
  300 genuine + 300 impostor pairs; 1:N uses 200 people with >= 3 images, 3 images each,
  chosen with a fixed seed (paper section 4.1).
* ``orl``: the offline evaluation identities of ``facecloak.data.offline`` (ORL s31-s40 and
  the labelled colour faces), never seen in training, with the scaled protocol of
  ``scaled_benchmark``.
* ``folder``: any ``person/image`` tree, with the same scaled protocol as ``orl``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_dir


@dataclass
class Benchmark:
    name: str
    crops: dict[str, Path]  # key -> canonical 256 crop
    identity: dict[str, str]  # key -> person
    pairs: list[tuple[str, str, bool]]  # (key1, key2, same person); key1 is de-identified
    id_sets: list[list[str]]  # 3 sets of keys, one image per person each
    description: str = ""
    dropped: list[str] = field(default_factory=list)  # images without a usable face
    photos: dict[str, Path] = field(default_factory=dict)  # key -> the photo its crop came from (end-to-end mode)

    def describe(self) -> dict:
        g = sum(s for _, _, s in self.pairs)
        return {
            "benchmark": self.name, "images": len(self.crops), "people": len(set(self.identity.values())),
            "genuine_pairs": g, "impostor_pairs": len(self.pairs) - g,
            "identification_people": len(self.id_sets[0]) if self.id_sets else 0,
            "dropped_no_face": len(self.dropped), "protocol": self.description,
        }


def _key(person: str, path: Path) -> str:
    return f"{person}/{path.stem}"


def source_photos(identities: dict[str, list[Path]], crops: dict[str, Path]) -> dict[str, Path]:
    """key -> source photo, for every image that has a crop."""
    return {_key(person, p): p for person, paths in identities.items() for p in paths if _key(person, p) in crops}


def align_identities(identities: dict[str, list[Path]], tag: str, device: str = "cpu") -> tuple[dict[str, Path], list[str]]:
    """Canonical crops of every image, cached under ``cache/eval-crops/<tag>/<person>/``."""
    from ..detect import FaceDetector, prepare_images

    root = cache_dir() / "eval-crops" / tag
    crops: dict[str, Path] = {}
    dropped: list[str] = []
    detector = None
    for person, paths in sorted(identities.items()):
        dst = root / person
        for p in paths:
            out = _find_crop(dst, p)
            if out is None and not (dst / f".noface-{p.stem}").exists():
                detector = detector or FaceDetector(device)
                written, _ = prepare_images([p], dst, detector, min_face=12)
                out = written[0] if written else None
                if out is None:
                    dst.mkdir(parents=True, exist_ok=True)
                    (dst / f".noface-{p.stem}").touch()
            if out is None:
                dropped.append(str(p))
            else:
                crops[_key(person, p)] = out
    return crops, dropped


def _find_crop(dst: Path, src: Path) -> Path | None:
    hits = sorted(dst.glob(f"*{src.stem}.png")) if dst.exists() else []
    return hits[0] if hits else None


def _tag(root: Path | str) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]


def scaled_benchmark(name: str, identities: dict[str, list[Path]], tag: str, seed: int = 0, device: str = "cpu") -> Benchmark:
    """The paper's protocols scaled to a small labelled set, so a CPU can run every method.

    1:N as in the paper: people with >= 3 images, 3 of them drawn per person (seeded) into 3 sets.
    1:1: the de-identified images are the same probes (the 3 drawn images per person, or the
    first image of people with 2); every probe is paired with every *other* image of its person
    (genuine), plus as many seeded impostor pairs (calibration only). So each method
    de-identifies about 3 faces per person instead of one per genuine pair.
    """
    import random

    from ..data.datasets import make_pairs

    crops, dropped = align_identities(identities, tag, device)
    ids: dict[str, list[str]] = {}
    for k in sorted(crops):
        ids.setdefault(k.split("/", 1)[0], []).append(k)
    rng = random.Random(seed)
    sets: list[list[str]] = [[], [], []]
    probes: dict[str, list[str]] = {}
    for p in sorted(ids):
        if len(ids[p]) >= 3:
            pick = rng.sample(ids[p], 3)
            for s in range(3):
                sets[s].append(pick[s])
            probes[p] = pick
        elif len(ids[p]) == 2:
            probes[p] = ids[p][:1]
    genuine = [(a, b, True) for p, ks in probes.items() for a in ks for b in ids[p] if b != a]
    impostor = make_pairs({p: [Path(k) for k in ks] for p, ks in ids.items()}, 0, len(genuine), seed=seed)
    pairs = genuine + [(str(x.path1), str(x.path2), False) for x in impostor if not x.same]
    n_probe = sum(len(v) for v in probes.values())
    return Benchmark(
        name, crops, {k: k.split("/", 1)[0] for k in crops}, pairs, sets,
        description=f"scaled: {n_probe} probes (3 per person with >= 3 images, 1 per person with 2) de-identified; "
        f"{len(genuine)} genuine pairs (each probe vs every other image of its person) + {len(pairs) - len(genuine)} seeded "
        f"impostor pairs for the threshold; 1:N over the {len(sets[0])} people with >= 3 images (3 sets, 6 ordered pairs)",
        dropped=dropped, photos=source_photos(identities, crops),
    )


def orl_benchmark(seed: int = 0, device: str = "cpu") -> Benchmark:
    from ..data.offline import eval_identities

    return scaled_benchmark("orl", eval_identities(), "offline-eval", seed, device)


def folder_benchmark(root: Path, seed: int = 0, device: str = "cpu") -> Benchmark:
    from ..data.datasets import read_identity_folder

    return scaled_benchmark("folder", read_identity_folder(root), _tag(root), seed, device)


def lfw_benchmark(root: Path, pairs_file: Path | None = None, seed: int = 0, n_people: int = 200, device: str = "cpu") -> Benchmark:
    """The paper's LFW protocol; ``root`` holds the per-person folders and ``pairs.txt``."""
    from ..data.datasets import lfw_identification_sets, read_lfw_pairs

    root = Path(root)
    pairs_file = pairs_file or next((p for p in (root / "pairs.txt", root.parent / "pairs.txt") if p.exists()), None)
    if pairs_file is None:
        raise FileNotFoundError(f"no pairs.txt in {root} or its parent; download it from the LFW site")
    images = root / "lfw" if (root / "lfw").is_dir() else root
    pairs = read_lfw_pairs(pairs_file, images)
    sets = lfw_identification_sets(images, n_people=n_people, per_person=3, seed=seed)
    identities: dict[str, set[Path]] = {}
    for pr in pairs:
        for path in (pr.path1, pr.path2):
            identities.setdefault(Path(path).parent.name, set()).add(Path(path))
    for s in sets:
        for person, path in s:
            identities.setdefault(person, set()).add(Path(path))
    crops, dropped = align_identities({p: sorted(v) for p, v in identities.items()}, "lfw-" + _tag(images), device)
    key = lambda path: _key(Path(path).parent.name, Path(path))  # noqa: E731
    kept = [(key(p.path1), key(p.path2), p.same) for p in pairs if key(p.path1) in crops and key(p.path2) in crops]
    id_sets = [[key(path) for _, path in s] for s in sets]
    people_ok = set.intersection(*[{k.split("/")[0] for k in s if k in crops} for s in id_sets])
    id_sets = [[k for k in s if k.split("/")[0] in people_ok] for s in id_sets]
    return Benchmark(
        "lfw", crops, {k: k.split("/", 1)[0] for k in crops}, kept, id_sets,
        description=f"LFW pairs.txt ({len(kept)} of {len(pairs)} pairs with detectable faces); 1:N: "
        f"{len(id_sets[0])} people x 3 images, seed {seed}",
        dropped=dropped, photos=source_photos({p: sorted(v) for p, v in identities.items()}, crops),
    )
