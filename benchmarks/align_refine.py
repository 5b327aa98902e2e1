"""Does the refinement pass of the aligner help on small faces?

The real photos that ship with matplotlib (Grace Hopper, eye distance about
89 px) and scikit-image (the astronaut, about 43 px), their mirror images
and +-15 degree rotations are down-scaled (INTER_AREA) until the eye
distance is ``--eyes`` pixels; on each copy the aligner runs with and
without the refinement pass, and its five landmarks are compared with those
found at full resolution, scaled down the same way (pixel-centre
convention). Two full-resolution references:

* ``single``: one MTCNN pass on the full-resolution view (it shares MTCNN's
  left-right bias with the first pass);
* ``views``: the median over MTCNN passes on 0.75x, 1x and 1.25x copies and
  their mirror images (bias cancelled, noise averaged).

Errors are the mean distance over the five points, as a fraction of the
reference eye distance. The table gives, per eye distance, the mean error
without and with refinement and the fraction of copies where refinement is
closer to the reference.

Usage::

    python benchmarks/align_refine.py \
        --out benchmarks/results/align_refine/align_refine.json
"""
import argparse
import statistics
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

EYES = (12, 16, 20, 24, 28, 33, 40, 48, 64, 80)
REFERENCES = ('single', 'views')


def views(img: np.ndarray, angles: Sequence[float] = (-15, 15)):
    """The photo, its mirror image and its rotations (same canvas)."""
    height, width = img.shape[:2]
    out = [img, np.ascontiguousarray(img[:, ::-1])]
    for angle in angles:
        mat = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        out.append(cv2.warpAffine(img, mat, (width, height)))
    return out


def full_resolution_references(img: np.ndarray,
                               detector) -> Dict[str, np.ndarray]:
    """The ``single`` and ``views`` landmarks of the largest face."""
    from dmue_mm.alignment import multiview_landmarks
    det = detector.detect([img])[0]
    if not len(det):
        raise ValueError('no face at full resolution')
    single = det.landmarks[0]
    many = multiview_landmarks([img],
                               detector,
                               single,
                               scales=(0.75, 1.0, 1.25))[0]
    return dict(single=single, views=many)


def refinement_errors(img: np.ndarray, eyes: Sequence[int],
                      detector) -> List[dict]:
    """Landmark errors of a photo's down-scaled copies, without and with
    the refinement pass.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB photo with one face.
        eyes (Sequence[int]): Eye distances (pixels) of the copies; those
            above the photo's own are skipped.
        detector (FaceDetector): The MTCNN detector.

    Returns:
        list[dict]: Per copy, ``eye`` (its reference eye distance) and, for
        ``first`` (no refinement) and ``refined``, a dict reference name ->
        (5,) errors in eye distances (None where no face was found), and
        ``used_refinement`` (whether the aligner kept the refined points).
    """
    from dmue_mm.alignment import FaceAligner
    refs = full_resolution_references(img, detector)
    full_eye = float(np.linalg.norm(refs['views'][1] - refs['views'][0]))
    plain = FaceAligner(detector, refine=False)
    refining = FaceAligner(detector, refine=True)
    rows = []
    for eye in eyes:
        scale = eye / full_eye
        if scale > 1:
            continue
        size = (int(round(img.shape[1] * scale)),
                int(round(img.shape[0] * scale)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        f = np.array([size[0] / img.shape[1], size[1] / img.shape[0]])
        row = dict(eye=float(eye), used_refinement=None)
        for name, aligner in (('first', plain), ('refined', refining)):
            faces = aligner.align_batch([small])[0].faces
            row[name] = {}
            for ref_name, ref in refs.items():
                truth = (ref + 0.5) * f - 0.5
                dist = np.linalg.norm(truth[1] - truth[0])
                row[name][ref_name] = None if not faces else (np.linalg.norm(
                    faces[0].landmarks - truth, axis=1) / dist).tolist()
            if name == 'refined' and faces:
                row['used_refinement'] = bool(faces[0].refined)
        rows.append(row)
    return rows


def summarize(rows: List[dict]) -> Dict[str, dict]:
    """Per eye distance and reference: mean errors and win fraction."""
    out: Dict[str, dict] = {}
    for eye in sorted({r['eye'] for r in rows}):
        found = [
            r for r in rows if r['eye'] == eye and r['first']['views'] and
            r['refined']['views']
        ]
        entry = dict(copies=len(found))
        for ref in REFERENCES:
            first = [float(np.mean(r['first'][ref])) for r in found]
            refined = [float(np.mean(r['refined'][ref])) for r in found]
            entry[ref] = dict(
                first=statistics.fmean(first) if found else None,
                refined=statistics.fmean(refined) if found else None,
                refined_closer=(statistics.fmean(
                    float(b < a) for a, b in zip(first, refined))
                                if found else None))
        out[f'{eye:g}'] = entry
    return out


def print_table(summary: Dict[str, dict]) -> None:
    from dmue_mm.evaluation.report import format_markdown_table
    header = ['eye px', 'copies']
    for ref in REFERENCES:
        header += [f'{ref}: first', f'{ref}: refined', f'{ref}: closer']
    rows = []
    for eye, entry in summary.items():
        row = [eye, str(entry['copies'])]
        for ref in REFERENCES:
            e = entry[ref]
            row += ([f'{e["first"]:.3f}', f'{e["refined"]:.3f}',
                     f'{e["refined_closer"]:.2f}']
                    if e['first'] is not None else ['-'] * 3)
        rows.append(row)
    print(format_markdown_table(header, rows))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--eyes',
                        type=int,
                        nargs='+',
                        default=list(EYES),
                        help='eye distances of the down-scaled copies')
    parser.add_argument('--no-rotations',
                        action='store_true',
                        help='only the photos and their mirror images')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', help='JSON result file')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    from dmue_mm.alignment import FaceDetector, sample_photos
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    detector = FaceDetector()
    rows = []
    for name, img in sample_photos().items():
        for index, view in enumerate(
                views(img, () if args.no_rotations else (-15, 15))):
            for row in refinement_errors(view, args.eyes, detector):
                rows.append(dict(row, photo=name, view=index))
    summary = summarize(rows)
    print_table(summary)
    result = dict(setup=dict(eyes=args.eyes,
                             rotations=not args.no_rotations,
                             threads=args.threads),
                  summary=summary,
                  copies=rows)
    if args.out:
        from dmue_mm.utils.fileio import write_json
        write_json(args.out, result)
        print(f'-> {args.out}')
    return result


if __name__ == '__main__':
    main()
