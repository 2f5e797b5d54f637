"""A DatasetMapper whose errors name the image that caused them."""
from detectron2.data import DatasetMapper

__all__ = ["SafeDatasetMapper", "ImageReadError"]


class ImageReadError(RuntimeError):
    """An image of the dataset could not be read or decoded."""


class SafeDatasetMapper(DatasetMapper):
    """
    :class:`DatasetMapper` that turns the deep traceback of an unreadable, truncated or missing
    image (PIL / OSError raised inside a data-loader worker) into an :class:`ImageReadError` that
    names the file, so a corrupt image in a 100k-image dataset is found at once.
    """

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except (OSError, SyntaxError) as e:  # missing, truncated or undecodable image files
            name = dataset_dict.get("file_name", "<no file_name>")
            raise ImageReadError(f"cannot read image {name}: {type(e).__name__}: {e}") from e
