"""Offline face detection and 5-point alignment (``tools/align.py``).

Not imported by ``dmue_mm`` itself (MTCNN comes from the heavy
``facenet-pytorch``); import it explicitly::

    from dmue_mm.alignment import align_face, load_rgb
    faces = align_face(load_rgb('photo.jpg'))   # largest face first
    crop = faces[0].image                        # 256x256 RGB, DMUE framing
"""
from .aligner import (MODES, AlignedFace, AlignResult, FaceAligner, align_face,
                      mirror_landmarks, multiview_landmarks)
from .detector import (Detection, FaceDetector, PreparedImage, group_by_shape,
                       prepare_for_detection)
from .geometry import (box_crop_transform, compose, invert,
                       similarity_transform, transform_points, warp_image)
from .imageio import (IMAGE_EXTENSIONS, ImageReadError, load_rgb,
                      sample_photos, to_rgb_uint8)
from .pipeline import (AlignSettings, AlignSummary, crop_record, output_names,
                       read_records, run_alignment)
from .sources import (FOLDER_LAYOUTS, Record, Source, from_layout,
                      list_affectnet, list_file, list_folder, list_rafdb)
from .template import (DMUE_TEMPLATE, WFLW_TEMPLATE_800, FaceTemplate,
                       derive_template, original_two_pass, template_transform)

__all__ = [
    'MODES', 'AlignedFace', 'AlignResult', 'FaceAligner', 'align_face',
    'mirror_landmarks', 'multiview_landmarks', 'Detection', 'FaceDetector',
    'PreparedImage', 'group_by_shape', 'prepare_for_detection',
    'box_crop_transform', 'compose', 'invert', 'similarity_transform',
    'transform_points', 'warp_image', 'IMAGE_EXTENSIONS', 'ImageReadError',
    'load_rgb', 'sample_photos', 'to_rgb_uint8',
    'AlignSettings', 'AlignSummary', 'crop_record', 'output_names',
    'read_records', 'run_alignment',
    'FOLDER_LAYOUTS', 'Record', 'Source', 'from_layout', 'list_affectnet',
    'list_file', 'list_folder', 'list_rafdb', 'DMUE_TEMPLATE',
    'WFLW_TEMPLATE_800', 'FaceTemplate', 'derive_template',
    'original_two_pass', 'template_transform'
]
