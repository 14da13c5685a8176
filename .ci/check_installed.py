"""CI check, run by the fresh venv's python after `facecloak protect EXAMPLES --out OUT --report REPORT`.

Asserts that facecloak and its weights came from the installed wheel (not the repo), that every
example photo got an output, and that the faces in it were protected (pixels changed).
Usage: check_installed.py EXAMPLES REPORT
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import facecloak
from facecloak.zoo.registry import resolve

FACES = {"astronaut.jpg": 1, "grace_hopper.jpg": 1, "two_faces.jpg": 2, "coffee.jpg": 0}

examples, report = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
site = Path(facecloak.__file__).resolve().parents[1]
assert Path(sys.prefix).resolve() in site.parents, f"facecloak imported from {site}, not from this venv ({sys.prefix})"
weights = resolve("hiding_net", download=False).resolve()
assert weights.parent == site / "facecloak" / "weights", f"hiding network loaded from {weights}"

records = {Path(r["input"]).name: r for r in json.loads(report.read_text())["records"]}
photos = sorted(p.name for p in examples.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
assert sorted(records) == photos, f"report covers {sorted(records)}, examples are {photos}"
for name, rec in records.items():
    assert rec["status"] in ("ok", "no_face"), f"{name}: {rec['status']} {rec['message']}"
    assert rec["output"] and Path(rec["output"]).is_file(), f"{name}: no output {rec['output']}"
    protected = [f for f in rec["faces"] if f["status"] == "protected"]
    if name in FACES:
        assert len(protected) == FACES[name], f"{name}: {len(protected)} faces protected, expected {FACES[name]}"
    if protected:
        a = np.asarray(Image.open(examples / name).convert("RGB"))
        b = np.asarray(Image.open(rec["output"]).convert("RGB"))
        assert a.shape == b.shape and np.any(a != b), f"{name}: output unchanged"
faces = sum(len(r["faces"]) for r in records.values())
print(f"installed wheel OK: facecloak {facecloak.__version__} from {site}; {len(records)} photos, {faces} faces protected")
