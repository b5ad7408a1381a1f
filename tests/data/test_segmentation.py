"""Segmentation loaders on the real VOC and Cityscapes samples, and their one-line errors."""

import numpy as np
import pytest
from PIL import Image

from cacl_cli.data.segmentation import (
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    cityscapes,
    cityscapes_train_ids,
    folder,
    read_index_png,
    voc,
)
from cacl_cli.errors import CaclError

# From ../shared/data/README.md
VOC_IDS = {"2011_000003": {0, 5, 15}, "2011_000006": {0, 9, 15, 18}, "2011_000025": {0, 6, 7}}


def test_voc_mini_reads_palette_masks_as_class_ids(shared_data):
    train, val = voc(shared_data / "voc-mini", "train"), voc(shared_data / "voc-mini", "val")
    assert len(train) == 2 and len(val) == 1 and train.num_classes == 21
    for dataset in (train, val):
        for i, name in enumerate(dataset.ids):
            image, mask = dataset[i]
            assert image.shape[:2] == mask.shape and image.shape[2] == 3
            assert set(np.unique(mask).tolist()) - {255} == VOC_IDS[name]
    assert VOC_CLASSES[15] == "person" and VOC_CLASSES[7] == "car"


def test_reading_a_voc_mask_as_colours_would_not_give_these_ids(shared_data):
    import cv2

    path = shared_data / "voc-mini" / "SegmentationClass" / "2011_000025.png"
    colours = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert colours.ndim == 3  # OpenCV returns the palette's colours ...
    assert set(np.unique(read_index_png(path)).tolist()) - {255} == VOC_IDS["2011_000025"]


def test_cityscapes_train_ids_are_derived_from_label_ids(shared_data):
    root = shared_data / "cityscapes-mini"
    dataset = cityscapes(root, "val")
    assert len(dataset) == 1 and dataset.num_classes == 19 == len(CITYSCAPES_CLASSES)
    image, mask = dataset[0]
    shipped = np.array(Image.open(next((root / "gtFine" / "val").rglob("*_labelTrainIds.png"))))
    assert image.shape[:2] == mask.shape
    # The sample's two label files were downsampled separately, so they disagree on a few
    # boundary pixels (77 of 32768); everywhere else our mapping reproduces labelTrainIds.
    assert (mask == shipped).mean() > 0.995
    assert set(np.unique(mask).tolist()) - {255} <= set(range(19))


def test_label_id_table():
    ids = np.array([[7, 8, 26, 33], [0, 6, 34, 255]], np.uint8)
    assert cityscapes_train_ids(ids).tolist() == [[0, 1, 13, 18], [255, 255, 255, 255]]


def test_wrong_roots_and_missing_lists_are_one_line_errors(tmp_path, shared_data):
    with pytest.raises(CaclError, match="is not a VOC 2012 folder"):
        voc(tmp_path, "train")
    with pytest.raises(CaclError, match=r"ImageSets/Segmentation/test.txt is missing"):
        voc(shared_data / "voc-mini", "test")
    with pytest.raises(CaclError, match="Cityscapes images of split 'train'"):
        cityscapes(shared_data / "cityscapes-mini", "train")


def _own_folder(root, mask_size=(8, 6)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.ones(mask_size[::-1], np.uint8), mode="L").save(root / "masks" / "a.png")
    (root / "classes.txt").write_text("sky\nground\n")
    (root / "train.txt").write_text("a\n")


def test_own_folder_layout(tmp_path):
    _own_folder(tmp_path)
    dataset = folder(tmp_path, "train")
    image, mask = dataset[0]
    assert dataset.classes == ["sky", "ground"] and mask.shape == (6, 8) and mask.max() == 1


def test_image_mask_size_mismatch_names_the_mask(tmp_path):
    _own_folder(tmp_path, mask_size=(5, 5))
    with pytest.raises(CaclError, match=r"a.png: mask is 5x5 but its image a.png is 8x6"):
        folder(tmp_path, "train")[0]


def test_colour_masks_are_refused(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(CaclError, match="holds colours, not class ids"):
        read_index_png(path)


@pytest.mark.parametrize("listed", ["../../../outside/secret", "sub/a", "..", "/etc/passwd"])
def test_a_split_list_that_names_a_path_is_refused_with_its_line(tmp_path, listed):
    """A VOC ImageSets list and a folder dataset's <split>.txt name image ids, never paths."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(outside / "secret.png")
    root = tmp_path / "data" / "mine"
    _own_folder(root)
    (root / "train.txt").write_text(f"a\n{listed}\n")
    with pytest.raises(CaclError, match=f"train.txt, line 2: '{listed}' is not an image id"):
        folder(root, "train")
    voc_root = tmp_path / "VOC2012"
    (voc_root / "JPEGImages").mkdir(parents=True)
    (voc_root / "SegmentationClass").mkdir()
    (voc_root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc_root / "ImageSets" / "Segmentation" / "val.txt").write_text(f"{listed}\n")
    with pytest.raises(CaclError, match=f"val.txt, line 1: '{listed}' is not an image id"):
        voc(tmp_path, "val")


def test_a_class_id_beyond_the_class_list_names_the_mask(tmp_path):
    _own_folder(tmp_path)  # two classes: ids 0 and 1, 255 ignored
    mask = np.ones((6, 8), np.uint8)
    mask[0, 0], mask[1, 1] = 255, 7
    Image.fromarray(mask, mode="L").save(tmp_path / "masks" / "a.png")
    with pytest.raises(CaclError, match=r"a.png: class id 7, but the dataset has 2 classes"):
        folder(tmp_path, "train")[0]
    mask[1, 1] = 1
    Image.fromarray(mask, mode="L").save(tmp_path / "masks" / "a.png")
    assert folder(tmp_path, "train")[0][1].max() == 255


def test_a_mask_header_past_pils_pixel_limit_is_a_one_line_error(tmp_path):
    from tests.conftest import huge_png

    with pytest.raises(CaclError, match="huge.png is not a readable mask PNG"):
        read_index_png(huge_png(tmp_path / "huge.png", colour_type=0))
