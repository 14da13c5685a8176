"""Before/after crops of the example faces, in fast and strong mode, with what --verify says.

Run: python benchmarks/figure_examples.py [--out benchmarks/results/examples_before_after.png]

Each row is one face of ``examples/``: the original, fast mode and strong mode (`medium`, as
`--mode strong --verify` runs it: faces a black box still matches are retried, marked
"retried"), cropped around the detected face at 2x; under each protected crop, the black-box
verdicts of ``--verify`` (cos to the original and whether it still matches at the shipped threshold).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
CELL = 224


def face_crop(rgb: np.ndarray, box, scale: float = 1.6) -> Image.Image:
    """Square crop of side ``scale`` x the box's longer side, centred on the box, resized to CELL."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale / 2
    return Image.fromarray(rgb).crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize((CELL, CELL), Image.LANCZOS)


def verdict(face) -> str:
    if not face.verify:
        return "not verified"
    return " ".join(f"{k}:{'MATCH' if v['still_matches'] else 'no'}({v['cos']:.2f})" for k, v in sorted(face.verify.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/examples_before_after.png"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from facecloak.cloak import CloakConfig, Cloaker
    from facecloak.imageio import load_image

    # two_faces.jpg is the other two examples side by side: the same rows again
    photos = [p for p in sorted((ROOT / "examples").glob("*.jpg")) if p.name != "two_faces.jpg"]
    cloakers = {m: Cloaker.from_pretrained(device=args.device, config=CloakConfig(mode=m), verify=True) for m in ("fast", "strong")}
    rows, log = [], []
    for p in photos:
        rgb = load_image(p).rgb
        res = {m: c.protect(rgb) for m, c in cloakers.items()}
        for k, face in enumerate(res["fast"].faces):
            cells = [face_crop(rgb, face.box)] + [face_crop(res[m].rgb, face.box) for m in ("fast", "strong")]
            strong = res["strong"].faces[k]
            notes = ["original", f"fast  {res['fast'].faces[k].psnr or 0:.1f} dB",
                     f"strong  {strong.psnr or 0:.1f} dB{'  (retried)' if strong.retried else ''}"]
            verdicts = ["", verdict(res["fast"].faces[k]), verdict(res["strong"].faces[k])]
            rows.append((cells, notes, verdicts))
            log.append({"photo": p.name, "face": k, **{m: {"psnr": res[m].faces[k].psnr, "retried": res[m].faces[k].retried,
                                                            "verify": res[m].faces[k].verify} for m in res}})
    line = 14
    sheet = Image.new("RGB", (3 * CELL, len(rows) * (CELL + 3 * line)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (cells, notes, verdicts) in enumerate(rows):
        y = r * (CELL + 3 * line)
        for c, (im, note, ver) in enumerate(zip(cells, notes, verdicts)):
            sheet.paste(im, (c * CELL, y))
            draw.text((c * CELL + 4, y + CELL + 1), note, fill="black")
            draw.text((c * CELL + 4, y + CELL + line), ver[:40], fill="black")
            draw.text((c * CELL + 4, y + CELL + 2 * line - 2), ver[40:80], fill="black")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(log, indent=2))
    print(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
