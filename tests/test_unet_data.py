"""The Landslide4Sense reader, the split, augmentation and the streamed statistics."""

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from common.errors import DatasetError
from unet.dataset import (
    check_samples,
    list_split,
    read_image,
    read_info,
    read_mask,
    train_val_split,
)
from unet.normalize import normalize_array, streamed_stats
from unet.pipeline import augment_pair, make_dataset

_spec = importlib.util.spec_from_file_location(
    "l4s_data", Path(__file__).parent / "data" / "l4s" / "data.py")
l4s_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(l4s_data)


def test_reads_float64_and_float32_and_testdata_without_masks(tmp_path):
    make = l4s_data.make_l4s
    root64 = make(tmp_path / "a", n_train=3, n_valid=2, n_test=2, dtype=np.float64)
    root32 = make(tmp_path / "b", n_train=3, n_valid=0, dtype=np.float32, convention="s2-x")
    with h5py.File(root64 / "TrainData/img/image_1.h5") as f:
        assert f["img"].dtype == np.float64
        raw = f["img"][()]
    x = read_image(root64 / "TrainData/img/image_1.h5")
    assert x.dtype == np.float32 and x.shape == (32, 32, 14)
    np.testing.assert_allclose(x, raw, rtol=1e-6)
    assert read_image(root32 / "TrainData/img/image_2.h5").dtype == np.float32
    test = list_split(root64, "TestData")
    assert [s.index for s in test] == [1, 2] and all(s.mask is None for s in test)
    assert all(s.mask is not None for s in list_split(root64, "TrainData"))
    assert read_info(root64).convention == "l4s-release"
    assert read_info(root64).bands[-2:] == ("slope", "DEM")
    assert read_info(root32).convention == "s2-x"


def test_masks_matched_by_number_and_missing_mask_is_an_error(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=11, n_valid=0)
    samples = list_split(root, "TrainData")
    assert [s.index for s in samples] == list(range(1, 12))  # numeric, not lexical, order
    assert all(s.mask.name == f"mask_{s.index}.h5" for s in samples)
    (root / "TrainData/mask/mask_10.h5").unlink()
    with pytest.raises(DatasetError, match="mask_10.h5"):
        list_split(root, "TrainData")


def test_validation_split_from_train_when_valid_has_no_masks(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=20, n_valid=4, valid_masks=False)
    train, val = train_val_split(root, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert not {s.index for s in train} & {s.index for s in val}
    assert [s.index for s in train_val_split(root, 0.25, seed=3)[1]] == [s.index for s in val]
    root2 = l4s_data.make_l4s(tmp_path / "v", n_train=6, n_valid=4)
    train2, val2 = train_val_split(root2, 0.25)
    assert len(train2) == 6 and all("ValidData" in str(s.image) for s in val2)


def test_augmentation_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    mask = (rng.random((16, 16)) < 0.3).astype(np.uint8)
    image = rng.standard_normal((16, 16, 4)).astype(np.float32)
    image[..., 2] = mask
    seen = set()
    for s in range(24):
        x, m = augment_pair(image, mask, np.array([7, s]))
        x, m = x.numpy(), m.numpy()
        np.testing.assert_array_equal(x[..., 2], m)
        seen.add(x.tobytes())
    assert len(seen) > 4  # it does transform


def test_pipeline_normalises_clips_and_shuffles_by_seed(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=6, n_valid=0)
    samples = list_split(root, "TrainData")
    mean, std = [1.0] * 14, [0.01] * 14
    ds = make_dataset(samples, mean, std, 10.0, 4, training=False, pad_to_batch=True)
    batches = list(ds)
    assert len(batches) == 2
    x, y, w = batches[0]
    ref = normalize_array(read_image(samples[0].image), mean, std, 10.0)
    np.testing.assert_allclose(x.numpy()[0], ref, rtol=1e-6)
    assert float(np.abs(x).max()) <= 10.0
    assert w.numpy().tolist() == [1, 1, 1, 1] and batches[1][2].numpy().tolist() == [1, 1, 0, 0]

    def order(epoch, seed=0):
        ds = make_dataset(samples, [0.0] * 14, [1.0] * 14, 10.0, 2, training=True,
                          augment=False, seed=seed, epoch=epoch)
        return [float(x[0, 0, 0, 0]) for x, _, _ in ds]

    assert order(1) == order(1)
    assert order(1) != order(2) or order(1) != order(3)


def test_streamed_statistics_equal_numpy(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=7, n_valid=0)
    paths = [s.image for s in list_split(root, "TrainData")]
    stats = streamed_stats(paths, read_image, q=(5, 50, 95), sample_pixels=2000, seed=1)
    allx = np.concatenate([read_image(p).reshape(-1, 14).astype(np.float64) for p in paths])
    np.testing.assert_allclose(stats.mean, allx.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.std, allx.std(axis=0), rtol=1e-10)
    assert stats.count == allx.shape[0]
    pct = np.asarray(stats.percentiles)
    assert pct.shape == (14, 3) and np.all(np.diff(pct, axis=1) >= 0)
    np.testing.assert_allclose(pct[:, 1], np.median(allx, axis=0), atol=0.05)
    again = streamed_stats(paths, read_image, q=(5, 50, 95), sample_pixels=2000, seed=1)
    assert again.percentiles == stats.percentiles


def test_bad_dataset_json_names_the_file(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=2, n_valid=0)
    (root / "dataset.json").write_text(json.dumps({"bands": []}))
    with pytest.raises(DatasetError, match="dataset.json"):
        read_info(root)


def _bad_patch(root, case):
    """Plant one bad patch of the given kind; returns (file at fault, words of the message)."""
    write = l4s_data.write_h5
    img = root / "ValidData/img/image_2.h5"
    good = read_image(img)
    if case == "garbage":
        img.write_bytes(b"not an h5 file")
        return img, "cannot read"
    if case == "nan":
        x = good.copy()
        x[3, 4, 5] = np.nan
        return write(img, "img", x), "1 non-finite value (NaN or inf), the first at row 3, " \
                                     "column 4, band B6"
    if case == "inf":
        x = good.copy()
        x[0, 0, 13] = np.inf
        return write(img, "img", x), "band DEM"
    if case == "bands":
        return write(img, "img", good[..., :13]), "13 bands, expected 14"
    if case == "size":
        return write(img, "img", good[:, :16]), "32x16 px, expected 32x32"
    mask = root / "TrainData/mask/mask_3.h5"
    if case == "mask255":
        m = np.zeros((32, 32), np.uint8)
        m[:2] = 255
        return write(mask, "mask", m), "only 0 and 1, found 255 in 64 pixels"
    if case == "mask_float":
        m = np.zeros((32, 32), np.float32)
        m[0, :3] = [1.0, 0.5, 2.0]
        return write(mask, "mask", m), "found 0.5, 2 in 2 pixels"
    if case == "mask_size":
        return write(mask, "mask", np.zeros((16, 32), np.uint8)), "16x32 px, expected 32x32"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["garbage", "nan", "inf", "bands", "size", "mask255",
                                  "mask_float", "mask_size"])
def test_check_samples_refuses_a_bad_patch_naming_the_file(tmp_path, case):
    root = l4s_data.make_l4s(tmp_path, n_train=6, n_valid=3)
    train, valid = train_val_split(root)
    assert check_samples(train + valid, read_info(root).bands) == 32  # all good so far
    path, words = _bad_patch(root, case)
    with pytest.raises(DatasetError) as info:
        check_samples(train + valid, read_info(root).bands)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_check_samples_takes_the_common_tile_size_or_the_one_given(tmp_path):
    root = l4s_data.make_l4s(tmp_path, n_train=5, n_valid=0)
    samples = list_split(root, "TrainData")
    # The first patch is the odd one: the size most patches have wins, the first is named.
    l4s_data.write_h5(samples[0].image, "img", read_image(samples[0].image)[:16, :16])
    l4s_data.write_h5(samples[0].mask, "mask", np.zeros((16, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"image_1\.h5: 'img' is 16x16 px, expected 32x32"):
        check_samples(samples, read_info(root).bands)
    assert check_samples(samples[1:], read_info(root).bands) == 32
    with pytest.raises(DatasetError, match=r"image_2\.h5: 'img' is 32x32 px, expected 128x128"):
        check_samples(samples[1:], read_info(root).bands, tile_size=128)


def test_read_mask_refuses_values_other_than_0_and_1(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    m[0, 0], m[1, 1] = 1, 255
    path = l4s_data.write_h5(tmp_path / "mask_1.h5", "mask", m)
    with pytest.raises(DatasetError, match=r"mask_1\.h5: 'mask' must hold only 0 and 1, found 255"):
        read_mask(path)
    m[1, 1] = 1
    l4s_data.write_h5(path, "mask", m.astype(np.float64))
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.sum() == 2


def test_input_batches_turn_a_pipeline_failure_into_one_line(tmp_path):
    from unet.evaluation import input_batches

    root = l4s_data.make_l4s(tmp_path, n_train=4, n_valid=0)
    samples = list_split(root, "TrainData")
    ds = make_dataset(samples, [0.0] * 14, [1.0] * 14, 10.0, 2, training=False)
    assert len(list(input_batches(ds, root))) == 2
    samples[2].image.write_bytes(b"garbage")  # after the pipeline was built, as a disk fault
    with pytest.raises(DatasetError) as info:
        list(input_batches(ds, root))
    message = str(info.value)
    assert message.startswith(f"{samples[2].image}: cannot read dataset 'img'")
    assert "\n" not in message and "Traceback" not in message
