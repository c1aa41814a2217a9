"""Does aligning face crops on the eyes help the face net? And what does flip test-time augmentation buy?

    PYTHONPATH=src python scripts/experiments/face_alignment.py [--limit 0] [--data ../shared/data]

Every FER-2013 `val` face (48x48, never trained on) is pasted at 160 px into a 400x400 frame of its
own mean grey, upright and turned by a random angle of 10-25 degrees either way (seeded). YuNet
finds it (full resolution); then the bundled model's face net reads, on the faces found:
  - the crop the analysis used before YuNet (`crop_face`: the box with a 10% margin);
  - the FER-framed crop without rotation (`align_face(rotate=False)`);
  - the FER-framed crop turned so the eyes are level when they tilt by at least 0, 5, 10 or 15
    degrees (`align_face(min_degrees=...)`; the analysis uses ALIGN_MIN_DEGREES).
Also the FER images themselves, with and without flip test-time augmentation. Prints accuracies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from emofusion.data import default_data_root
from emofusion.features import align_face, crop_face, normalize_faces
from emofusion.media.faces import FaceDetector
from emofusion.media.scenes import place_face
from emofusion.models import load_model


def accuracy(model, crops: list[np.ndarray], labels: list[int]) -> float:
    cfg = model.config.face_preprocess
    probs = np.concatenate([model.face_probs(normalize_faces(np.stack(crops[i : i + 256]), cfg))
                            for i in range(0, len(crops), 256)])
    return float(np.mean(probs.argmax(1) == np.array(labels)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="faces (0: all)")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    model = load_model("default", load_text_encoder=False)
    model.prepare_inference()
    cfg = model.config.face_preprocess
    index = {label: k for k, label in enumerate(model.labels)}
    names = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "neutral": "neutral",
             "sad": "sad", "surprise": "surprised"}
    paths = sorted(((args.data or default_data_root()) / "fer2013" / "val").glob("*/*.jpg"))
    if args.limit:
        paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    labels = [index[names[p.parent.name]] for p in paths]
    face_part = model.config.face  # config.json's `face` part: tta_flip is one of its keys
    tta = model.config.face_net.tta_flip
    print(f"FER val as is ({len(images)} faces), flip TTA {tta}: {accuracy(model, images, labels):.4f}")
    model.config.face = {**face_part, "tta_flip": not tta}
    print(f"  flip TTA {not tta}: {accuracy(model, images, labels):.4f}")
    model.config.face = face_part
    detector = FaceDetector("yunet")
    rng = np.random.default_rng(0)
    for pose in ("upright", "turned 10-25 degrees"):
        kinds: dict[str, list[np.ndarray]] = {"box + 10% margin (before)": [], "FER-framed, not turned": [],
                                              **{f"FER-framed, eyes levelled when tilted >= {d} degrees": []
                                                 for d in (0, 5, 10, 15)}}
        found_labels, same_images = [], []
        for img, label in zip(images, labels):
            frame = np.full((400, 400), int(img.mean()), np.uint8)
            angle = 0.0 if pose == "upright" else float(rng.uniform(10, 25) * rng.choice([-1, 1]))
            place_face(frame, img, (200, 200), 160, angle=angle)
            faces = detector.detect(frame)
            if not faces:
                continue
            f = faces[0]
            kinds["box + 10% margin (before)"].append(crop_face(frame, f.box, cfg))
            kinds["FER-framed, not turned"].append(align_face(frame, f.box, f.landmarks, cfg, rotate=False))
            for d in (0, 5, 10, 15):
                kinds[f"FER-framed, eyes levelled when tilted >= {d} degrees"].append(
                    align_face(frame, f.box, f.landmarks, cfg, min_degrees=d))
            found_labels.append(label)
            same_images.append(img)
        print(f"{pose}: found {len(found_labels)}/{len(images)}; the same faces as is: {accuracy(model, same_images, found_labels):.4f}")
        for name, crops in kinds.items():
            print(f"  {name}: {accuracy(model, crops, found_labels):.4f}")


if __name__ == "__main__":
    main()
