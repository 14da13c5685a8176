"""Loaders for the face data-set layouts facecloak trains and evaluates on.

Users download CelebA, GFSG2 and LFW themselves (none is on a package registry), so these
readers work on the layouts those data sets ship in:

* LFW: ``ROOT/<Name>/<Name>_0001.jpg`` plus ``pairs.txt`` (View 2: a header ``"10 300"``,
  then for each of the 10 folds 300 genuine lines ``name n1 n2`` followed by 300 impostor
  lines ``name1 n1 name2 n2``).
* any ``person/image`` folder (the offline ORL faces, VGGFace2-style sets);
* CelebA: ``img_align_celeba/`` with ``list_eval_partition.txt`` (``000001.jpg 0``);
* any folder of images (GFSG2, a user's photos).

Every listing is sorted and every random choice takes a ``seed``, so protocols are
reproducible from the arguments alone.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".webp", ".tif", ".tiff"})

# CelebA as the paper splits it: 202,599 images, 3,000 of them drawn at random for validation.
CELEBA_SIZE = 202_599
CELEBA_VAL = 3_000


@dataclass(frozen=True)
class Pair:
    """Two face images and whether they show the same person. ``fold`` is the LFW fold (0-based)."""

    path1: Path
    path2: Path
    same: bool
    fold: int = 0


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """All image files under ``root`` (by extension, hidden files skipped), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if is_image(p) and not _hidden(p, root))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def read_identity_folder(root: str | Path, min_images: int = 1) -> dict[str, list[Path]]:
    """``{person: [images]}`` for a ``root/<person>/<image>`` layout, people and images sorted.

    People with fewer than ``min_images`` images are left out; images nested deeper inside a
    person's folder count for that person.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity folder {root} does not exist")
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = list_images(d)
        if len(imgs) >= min_images:
            out[d.name] = imgs
    return out


# ---------------------------------------------------------------------------------- LFW


def lfw_image_path(images_root: Path, name: str, n: int) -> Path:
    """LFW names files ``<Name>/<Name>_<n:04d>.jpg`` with ``n`` counted from 1."""
    return images_root / name / f"{name}_{n:04d}.jpg"


def read_lfw_pairs(path: str | Path, images_root: str | Path | None = None) -> list[Pair]:
    """Parse an LFW ``pairs.txt`` into :class:`Pair` records, in file order.

    The header is ``"<folds> <n>"`` (View 2: ``"10 300"``) or a single ``"<n>"`` (View 1's
    ``pairsDevTrain.txt``: one fold). Each fold holds ``n`` genuine lines (3 fields) then
    ``n`` impostor lines (4 fields). ``images_root`` defaults to the folder beside
    ``pairs.txt`` that holds the people's folders (``.``, ``lfw``, ``lfw-deepfunneled``,
    ``lfw_funneled``). Malformed files raise ``ValueError`` naming the line.
    """
    path = Path(path)
    lines = [ln.split() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError(f"{path} is empty")
    n_folds, per_fold = _lfw_header(lines[0], path)
    body = lines[1:]
    if len(body) != n_folds * 2 * per_fold:
        raise ValueError(
            f"{path}: header {' '.join(lines[0])!r} promises {n_folds * 2 * per_fold} pair lines, "
            f"found {len(body)}"
        )
    root = Path(images_root) if images_root is not None else _guess_lfw_root(path, body[0][0])
    pairs = []
    for i, fields in enumerate(body):
        fold, within = divmod(i, 2 * per_fold)
        pairs.append(_lfw_pair(fields, root, fold, genuine=within < per_fold, where=f"{path}:{i + 2}"))
    return pairs


def _lfw_header(fields: list[str], path: Path) -> tuple[int, int]:
    try:
        nums = [int(x) for x in fields]
    except ValueError:
        raise ValueError(f"{path}:1: header must be '<folds> <pairs>' or '<pairs>', got {fields}") from None
    if len(nums) == 1:
        return 1, nums[0]
    if len(nums) == 2:
        return nums[0], nums[1]
    raise ValueError(f"{path}:1: header must be '<folds> <pairs>' or '<pairs>', got {fields}")


def _lfw_pair(fields: list[str], root: Path, fold: int, genuine: bool, where: str) -> Pair:
    try:
        if genuine and len(fields) == 3:
            name, a, b = fields
            return Pair(lfw_image_path(root, name, int(a)), lfw_image_path(root, name, int(b)), True, fold)
        if not genuine and len(fields) == 4:
            n1, a, n2, b = fields
            return Pair(lfw_image_path(root, n1, int(a)), lfw_image_path(root, n2, int(b)), False, fold)
    except ValueError:
        pass
    kind = "genuine 'name n1 n2'" if genuine else "impostor 'name1 n1 name2 n2'"
    raise ValueError(f"{where}: expected a {kind} line, got {' '.join(fields)!r}")


def _guess_lfw_root(pairs_path: Path, first_name: str) -> Path:
    base = pairs_path.parent
    for cand in (base, base / "lfw", base / "lfw-deepfunneled", base / "lfw_funneled"):
        if (cand / first_name).is_dir():
            return cand
    return base


@dataclass(frozen=True)
class IdentificationSets:
    """The paper's 1-to-N protocol data: ``sets[k]`` holds one ``(person, path)`` per person.

    Iterating, indexing and ``len`` act on ``sets``, so it can be used as the list of lists.
    ``n_people`` is how many people were drawn; it is less than ``n_requested`` when the
    folder has too few people with enough images, and ``note`` then says so.
    """

    sets: list[list[tuple[str, Path]]]
    n_people: int
    n_requested: int
    note: str = ""

    @property
    def scaled_down(self) -> bool:
        return self.n_people < self.n_requested

    def __iter__(self) -> Iterator[list[tuple[str, Path]]]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, k: int) -> list[tuple[str, Path]]:
        return self.sets[k]


def lfw_identification_sets(
    root: str | Path, n_people: int = 200, per_person: int = 3, seed: int = 0
) -> IdentificationSets:
    """Draw ``n_people`` people with >= ``per_person`` images and split them into ``per_person`` sets.

    Paper protocol: 200 random LFW people x 3 images = 600 images in 3 sets of 200, one image
    per person per set; two sets at a time serve as probe and gallery (6 ordered combinations).
    Works on any ``person/image`` folder. People are drawn with ``random.Random(seed)`` from the
    sorted list of eligible people, then ``per_person`` of each one's sorted images, so the
    result depends only on the folder contents and the arguments.
    """
    ids = read_identity_folder(root, min_images=per_person)
    if not ids:
        raise ValueError(f"{root}: no person has {per_person} or more images")
    rng = random.Random(seed)
    k = min(n_people, len(ids))
    people = sorted(rng.sample(sorted(ids), k))
    sets: list[list[tuple[str, Path]]] = [[] for _ in range(per_person)]
    for person in people:
        for s, img in zip(sets, rng.sample(ids[person], per_person)):
            s.append((person, img))
    note = ""
    if k < n_people:
        note = f"only {k} people have >= {per_person} images in {root}; using {k} instead of {n_people}"
    return IdentificationSets(sets, k, n_people, note)


# ------------------------------------------------------------------------ generic pairs


def make_pairs(
    identities: dict[str, list[Path]], n_genuine: int, n_impostor: int, seed: int = 0
) -> list[Pair]:
    """Genuine and impostor pairs for verification on a non-LFW ``{person: images}`` set.

    Genuine: every within-person pair when there are at most ``n_genuine`` of them, otherwise a
    seeded sample. Impostor: image pairs of two different people, likewise all or a sample of
    ``n_impostor`` distinct pairs. Genuine pairs come first; all have ``fold=0``.
    """
    rng = random.Random(seed)
    people = sorted(p for p, imgs in identities.items() if imgs)
    genuine = [
        (a, b) for p in people for a, b in itertools.combinations(sorted(identities[p]), 2)
    ]
    if len(genuine) > n_genuine:
        genuine = rng.sample(genuine, n_genuine)
    impostor = _impostor_pairs({p: sorted(identities[p]) for p in people}, n_impostor, rng)
    return [Pair(a, b, True) for a, b in genuine] + [Pair(a, b, False) for a, b in impostor]


def _impostor_pairs(ids: dict[str, list[Path]], n: int, rng: random.Random) -> list[tuple[Path, Path]]:
    people = list(ids)
    sizes = [len(ids[p]) for p in people]
    # Number of cross-person image pairs: ((sum n_i)^2 - sum n_i^2) / 2.
    total = (sum(sizes) ** 2 - sum(s * s for s in sizes)) // 2
    if total <= n:
        return [
            (a, b) for p, q in itertools.combinations(people, 2) for a in ids[p] for b in ids[q]
        ]
    chosen: dict[frozenset, tuple[Path, Path]] = {}
    while len(chosen) < n:  # rejection sampling; total > n guarantees it ends
        p, q = rng.sample(people, 2)
        a, b = rng.choice(ids[p]), rng.choice(ids[q])
        chosen.setdefault(frozenset((a, b)), (a, b))
    return list(chosen.values())


# ------------------------------------------------------------------------------ CelebA


def celeba_split(
    root: str | Path, official: bool = True, n_val: int | None = None, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """``(train, val)`` image lists for a CelebA folder.

    With ``official`` and a ``list_eval_partition.txt`` (or Kaggle's ``.csv``) present, its
    labels decide: 0 = train, 1 = val, 2 = test (held out: in neither list). Otherwise the
    paper's split: a seeded random validation set of 3,000 of the 202,599 images, scaled to
    ``round(N * 3000 / 202599)`` (at least 1) when the folder holds fewer; ``n_val`` overrides.
    """
    root = Path(root)
    images_dir = _celeba_images_dir(root)
    part = _celeba_partition_file(root)
    if official and part is not None:
        return _official_split(part, images_dir)
    imgs = list_images(images_dir)
    if len(imgs) < 2:
        raise ValueError(f"{images_dir}: need at least 2 images to split, found {len(imgs)}")
    if n_val is None:
        n_val = CELEBA_VAL if len(imgs) >= CELEBA_SIZE else max(1, round(len(imgs) * CELEBA_VAL / CELEBA_SIZE))
    val = set(random.Random(seed).sample(imgs, n_val))
    return [p for p in imgs if p not in val], sorted(val)


def _celeba_images_dir(root: Path) -> Path:
    # Google Drive: Img/img_align_celeba; torchvision: img_align_celeba; Kaggle nests it twice.
    for cand in (
        root / "img_align_celeba" / "img_align_celeba",
        root / "img_align_celeba",
        root / "Img" / "img_align_celeba",
    ):
        if cand.is_dir():
            return cand
    return root


def _celeba_partition_file(root: Path) -> Path | None:
    for cand in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt",
                 root / "list_eval_partition.csv"):
        if cand.is_file():
            return cand
    return None


def _official_split(part: Path, images_dir: Path) -> tuple[list[Path], list[Path]]:
    train, val = [], []
    for i, line in enumerate(part.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0] == "image_id":  # blank line or the Kaggle CSV header
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{part}:{i}: expected '<file> <0|1|2>', got {line!r}")
        img = images_dir / fields[0]
        if not img.is_file():  # partial downloads keep what is there
            continue
        if fields[1] == "0":
            train.append(img)
        elif fields[1] == "1":
            val.append(img)
    if not train and not val:
        raise ValueError(f"none of the images listed in {part} exist under {images_dir}")
    return sorted(train), sorted(val)
