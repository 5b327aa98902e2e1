from .errors import CLIError, DataError, DMUEError
from .synthetic import make_pattern_images, write_image_folder

__all__ = [
    'CLIError', 'DataError', 'DMUEError', 'make_pattern_images',
    'write_image_folder'
]
