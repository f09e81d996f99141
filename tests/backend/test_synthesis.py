"""The SynthSeg-style generator: label tables, packaged anatomy, determinism, geometry, L/R swap, priors, CLI."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from multimodalseg.cli import main
from multimodalseg.errors import UserError
from multimodalseg.synthesis import generate, load_anatomy, make_synth_case, priors
from multimodalseg.synthesis import labels as lt
from multimodalseg.synthesis.anatomy import PACKAGED
from multimodalseg.synthesis.spatial import SpatialRanges
from multimodalseg.synthesis.tumour import ED, ET, NCR
from multimodalseg.tasks import get_task
from scipy import ndimage

gen_module = importlib.import_module("multimodalseg.synthesis.generate")  # the package exports the function
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
# SynthSeg's generation_labels.npy (its 20 training maps hold these) and fsaverage's aseg values
SYNTHSEG_LABELS = (0, 14, 15, 16, 24, 72, 85, 502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530, 2, 3, 4, 5, 7,
                   8, 10, 11, 12, 13, 17, 18, 25, 26, 28, 30, 136, 137, 41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53,
                   54, 57, 58, 60, 62, 163, 164)
FSAVERAGE_LABELS = (0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28, 30, 31, 41, 42, 43, 44, 46,
                    47, 49, 50, 51, 52, 53, 54, 58, 60, 62, 63, 77, 85, 251, 252, 253, 254, 255)
TASKS = ("petmr-brain", "brain-tumor", "whole-heart", "spine")


def test_brain_table_sends_every_source_label_somewhere():
    table = lt.brain_table(SYNTHSEG_LABELS)
    assert set(table) == set(SYNTHSEG_LABELS)
    assert lt.OTHER not in table.values()  # every SynthSeg label is named by a rule
    assert table[136] == table[137] == 31 and table[163] == table[164] == 63
    assert table[25] == table[57] == 77
    assert table[24] == lt.OUTER_CSF  # SynthSeg's 24 is all outer CSF: painted, not the aseg structure
    assert {table[v] for v in lt.SYNTHSEG_EXTRA} == {v - 400 for v in lt.SYNTHSEG_EXTRA}
    fs = lt.brain_table(FSAVERAGE_LABELS)
    assert all(fs[v] == v for v in FSAVERAGE_LABELS)  # an aseg is already in task values
    assert set(lt.BRAIN_LABELS) == set(lt.BRAIN_LABELS) & set(range(256)) and len(lt.BRAIN_LABELS) == 45
    assert lt.brain_table([1003, 2017, 9999])[1003] == 3 and lt.brain_table([2017])[2017] == 42
    assert lt.brain_table([9999])[9999] == lt.OTHER
    with pytest.raises(KeyError):
        lt.apply_table(np.array([1, 2]), {1: 1})


def test_heart_and_spine_tables_reach_the_task_values():
    heart = get_task("whole-heart")
    assert set(lt.HEART_SOURCE.values()) == {lab.value for lab in heart.labels}
    assert heart.label("LV").value == lt.HEART_SOURCE[3] and heart.label("Myo").value == lt.HEART_SOURCE[1]
    spine = {lab.name: lab.value for lab in get_task("spine").labels}
    assert {lt.SPINE_OUTPUT[v] for v in lt.SPINE_VERTEBRA} == {spine["vertebra"]}
    assert lt.SPINE_OUTPUT[100] == spine["intervertebral disc"]
    painted = np.array([0, 41, 49, 62, 26, 100, 60, 61, 200, 201])
    assert lt.output_labels(painted, lt.SPINE_OUTPUT).tolist() == [0, 1, 1, 1, 1, 2, 0, 0, 0, 0]


def test_lateral_pairs_from_names():
    pairs = lt.lateral_pairs_from_names(get_task("petmr-brain").labels)
    assert (17, 53) in pairs and (4, 43) in pairs
    assert all(a < b for a, b in lt.brain_pairs())
    swap = lt.swap_table(lt.brain_pairs())
    assert swap[17] == 53 and swap[53] == 17 and swap[16] == 16


def test_packaged_anatomy_is_small_licensed_and_usable():
    total = sum(p.stat().st_size for p in PACKAGED.rglob("*") if p.is_file())
    assert total < 15e6
    counts = {"petmr-brain": 22, "whole-heart": 3, "spine": 3}
    for task, n in counts.items():
        maps = load_anatomy(task)
        assert len(maps) == n
        assert all(m.labels.max() > 0 for m in maps)
    for kind in ("brain", "heart", "spine"):
        assert len(list((PACKAGED / kind).glob("LICENSE*"))) >= 2
    assert (Path(__file__).resolve().parents[2] / "NOTICE").is_file()


def test_corpus_callosum_is_derived_posterior_to_anterior():
    brain = {m.name: m for m in load_anatomy("petmr-brain")}["training_seg_01"]  # SynthSeg: no CC of its own
    y = {}
    for v in lt.CC_VALUES:
        idx = np.argwhere(brain.labels == v)[:, ::-1].astype(float)
        assert len(idx) > 10
        y[v] = (np.asarray(brain.grid.origin) + idx @ brain.grid.matrix.T)[:, 1].mean()
    assert [y[v] for v in lt.CC_VALUES] == sorted(y.values(), reverse=True)  # LPS: y grows posterior


def _arrays(case):
    return {r: sitk.GetArrayFromImage(im) for r, im in case.images.items()}, sitk.GetArrayFromImage(case.label)


@pytest.mark.parametrize("task", TASKS)
def test_a_seed_reproduces_a_case_and_labels_are_the_tasks(task):
    modality = "mr" if task == "whole-heart" else None
    a = make_synth_case(task, 3, spacing=4.0, modality=modality)
    b = make_synth_case(task, 3, spacing=4.0, modality=modality)
    (ia, la), (ib, lb) = _arrays(a), _arrays(b)
    assert all(np.array_equal(ia[r], ib[r]) for r in ia) and np.array_equal(la, lb)
    if task == "spine":  # and another seed is another case
        ic, _ = _arrays(make_synth_case(task, 4, spacing=4.0))
        assert not np.array_equal(ia["ct"], ic["ct"])
    spec = get_task(task)
    spec.check_label_values(np.unique(la))
    assert set(a.images) == set(spec.roles)
    assert len(np.unique(la)) >= 2


def test_paired_inputs_share_a_grid_or_carry_their_transform():
    tumour = make_synth_case("brain-tumor", 1, spacing=3.0)
    geo = {(im.GetSize(), im.GetOrigin(), im.GetSpacing(), im.GetDirection()) for im in tumour.images.values()}
    assert len(geo) == 1 and tumour.label.GetSize() == tumour.images["t1ce"].GetSize()
    maps = load_anatomy("spine")
    s = generate("spine", maps[0], np.random.default_rng(2), spacing=2.0)
    t = s.transforms["mr"]
    moved = np.array([t.TransformPoint([float(v) for v in p]) for p in s.landmarks["ct"]])
    assert np.allclose(moved, s.landmarks["mr"])
    # the MR grid's labels, resampled onto the CT grid through T, agree with the CT grid's labels
    ct_grid, mr_grid = s.grids["ct"], s.grids["mr"]
    mr_lab = mr_grid.image(s.role_labels["mr"].astype(np.uint16))
    ref = ct_grid.image(np.zeros(ct_grid.shape, np.uint16))
    bone = np.isin(s.role_labels["ct"], lt.SPINE_VERTEBRA)

    def overlap(transform):
        back = sitk.GetArrayFromImage(sitk.Resample(mr_lab, ref, transform, sitk.sitkNearestNeighbor, 0))
        b2 = np.isin(back, lt.SPINE_VERTEBRA)
        return 2 * (bone & b2).sum() / (bone.sum() + b2.sum())

    assert overlap(t) > 0.6 and overlap(t) > overlap(sitk.Transform()) + 0.1


def test_pet_is_on_its_own_coarser_grid_with_its_transform():
    s = generate("petmr-brain", load_anatomy("petmr-brain")[0], np.random.default_rng(5), spacing=3.0)
    assert min(s.grids["pet"].spacing) > max(s.grids["t1"].spacing) - 1e-6 or s.grids["pet"].spacing[0] >= 3.75
    assert "pet" in s.transforms and s.info["pet"]["pet_fwhm_mm"] >= 4.0
    assert s.images["pet"].min() >= 0.0
    gm = np.isin(s.role_labels["pet"], (3, 42))
    csf = np.isin(s.role_labels["pet"], (4, 43))
    assert s.images["pet"][gm].mean() > 2 * s.images["pet"][csf].mean()  # FDG: grey matter hot, CSF cold


def test_left_right_flip_swaps_paired_labels(monkeypatch):
    brain = {m.name: m for m in load_anatomy("petmr-brain")}["fsaverage"]
    x = {}
    for flip in (0.0, 1.0):
        ranges = SpatialRanges(flip=flip, degrees=0.0, max_sigma_mm=0.0)
        monkeypatch.setitem(gen_module._RANGES, "petmr-brain", ranges)
        s = generate("petmr-brain", brain, np.random.default_rng(0), spacing=3.0)
        assert s.info["spatial"]["flipped"] is bool(flip)
        g = s.grids["t1"]
        for v in (17, 53, 4, 43):
            idx = np.argwhere(s.label == v)[:, ::-1].astype(float)
            x[(flip, v)] = (np.asarray(g.origin) + idx @ g.matrix.T)[:, 0].mean()
    for flip in (0.0, 1.0):  # LPS x grows to the patient's left: "Left-" labels stay on the left after a mirror
        assert x[(flip, 17)] > x[(flip, 53)] and x[(flip, 4)] > x[(flip, 43)]


def test_tumour_keeps_the_intensity_order_of_each_sequence():
    maps = load_anatomy("brain-tumor")
    measured = set()
    for seed in range(3):
        s = generate("brain-tumor", maps[seed], np.random.default_rng(seed), spacing=2.5)
        lab = s.role_labels["t1ce"]

        def inner(mask):  # the interior, away from partial volume at the borders; empty when too small to measure
            eroded = ndimage.binary_erosion(mask)
            return eroded if eroded.sum() >= 5 else np.zeros_like(mask)

        masks = {"wm": inner(np.isin(lab, (2, 41))), "ncr": inner(lab == NCR), "ed": inner(lab == ED),
                 "et": inner(lab == ET)}
        mean = {r: {k: float(img[m].mean()) if m.any() else None for k, m in masks.items()}
                for r, img in s.images.items()}
        assert (lab == ED).sum() > 100
        assert mean["flair"]["ed"] > mean["flair"]["wm"] and mean["t2"]["ed"] > mean["t2"]["wm"]
        if mean["t1ce"]["et"] is not None:
            assert mean["t1ce"]["et"] > mean["t1ce"]["wm"]
            measured.add("et")
        if mean["t1ce"]["ncr"] is not None:
            assert mean["t1ce"]["ncr"] < mean["t1ce"]["wm"]
            measured.add("ncr")
        assert set(np.unique(s.label)) <= {0, 1, 2, 4}
    assert measured == {"et", "ncr"}


def test_tumour_look_varies_per_case_and_is_coherent_across_sequences():
    """Each case draws one tumour look for all four sequences (``priors.tumour_appearance``): cystic cores are
    fluid-like (T2 brighter than the oedema, FLAIR darker), and the spread over cases is far wider than the
    table's 12 % jitter (real lesions differ that much)."""
    from multimodalseg.synthesis.priors import tumour_appearance, tumour_sequences

    looks = [tumour_appearance(np.random.default_rng(seed)) for seed in range(200)]
    flair_ncr = np.array([look["flair"][NCR][0] for look in looks])
    cystic = [look for look in looks if look["t2"][NCR][0] > 190 and look["flair"][NCR][0] < 95]
    assert 0.2 < len(cystic) / len(looks) < 0.5
    for look in cystic:
        assert look["flair"][NCR][0] < look["flair"][ED][0] and look["t2"][NCR][0] > look["t2"][ED][0]
    table = tumour_sequences()["flair"][NCR][0]
    assert flair_ncr.min() < 0.5 * table and flair_ncr.max() > 1.4 * table
    for look in looks:  # enhancement and oedema stay above white matter on their sequences
        assert look["t1ce"][ET][0] > 1.2 * tumour_sequences()["t1ce"][2][0]
        assert look["flair"][ED][0] > 1.4 * tumour_sequences()["flair"][2][0]

    def painted_oedema_over_wm() -> tuple[float, dict]:
        s = generate("brain-tumor", load_anatomy("brain-tumor")[0], np.random.default_rng(4), spacing=2.5)
        lab = s.role_labels["flair"]
        ed, wm = ndimage.binary_erosion(lab == ED), ndimage.binary_erosion(np.isin(lab, (2, 41)))
        return float(s.images["flair"][ed].mean() / s.images["flair"][wm].mean()), s.info["tumour_look"]

    ratio, look = painted_oedema_over_wm()
    assert set(look) == {"flair", "t1", "t1ce", "t2"} and set(look["t2"]) == {str(NCR), str(ED), str(ET)}
    # the painted case follows its drawn look: an extreme look (oedema 5x white matter on FLAIR; the table's is
    # 2.2x) shows in the image
    extreme = {role: {NCR: (50.0, 5.0), ED: (400.0 if role == "flair" else 100.0, 5.0), ET: (150.0, 5.0)}
               for role in ("flair", "t1", "t1ce", "t2")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("multimodalseg.synthesis.priors.tumour_appearance", lambda rng: extreme)
        bright, _ = painted_oedema_over_wm()
    assert ratio < 3.0 < bright


def test_tumour_cases_have_contrast_filled_vessels_that_are_background():
    brain = {m.name: m for m in load_anatomy("brain-tumor")}["training_seg_01"]
    s = generate("brain-tumor", brain, np.random.default_rng(2), spacing=2.5)
    lab = s.role_labels["t1ce"]
    vessel, csf = np.isin(lab, (30, 62)), np.isin(lab, (24, lt.OUTER_CSF))
    grey = np.isin(lab, (3, 42))
    assert s.info["vessel_ml"] > 1.0 and vessel.sum() > 50
    t1ce, t2 = s.images["t1ce"], s.images["t2"]
    kept = (t1ce > 0) & (t2 > 0)  # inside the skull-stripped outline (sulci, cisterns)
    vessel, csf = vessel & kept, csf & ~vessel & kept
    # bright on the contrast T1 (above cortex, which is above CSF), a flow void on T2
    assert t1ce[vessel].mean() > t1ce[grey].mean() > t1ce[csf].mean()
    assert t2[vessel].mean() < t2[csf].mean()
    assert set(np.unique(s.label)) <= {0, 1, 2, 4}  # vessels are painted, never labelled


def test_some_tumour_cases_keep_the_whole_head():
    brain = {m.name: m for m in load_anatomy("brain-tumor")}["training_seg_01"]
    seen = {}
    for seed in range(12):
        s = generate("brain-tumor", brain, np.random.default_rng(seed), spacing=3.0)
        seen.setdefault(s.info["whole_head"], s)
        if len(seen) == 2:
            break
    assert set(seen) == {True, False}
    for whole_head, s in seen.items():
        scalp = np.isin(s.role_labels["t1ce"], [v - 400 for v in lt.SYNTHSEG_EXTRA])
        assert scalp.sum() > 1000
        painted = (s.images["t1ce"][scalp] > 0).mean()
        assert painted > 0.9 if whole_head else painted == 0.0  # skull-stripped: exact zeros outside the brain


def test_the_whole_head_fraction_sets_how_many_tumour_cases_keep_the_head():
    brain = {m.name: m for m in load_anatomy("brain-tumor")}["training_seg_01"]
    heads = {f: [generate("brain-tumor", brain, np.random.default_rng(seed), spacing=4.0,
                          whole_head_fraction=f).info["whole_head"] for seed in range(6)] for f in (0.0, 1.0)}
    assert heads == {0.0: [False] * 6, 1.0: [True] * 6}
    # the default is WHOLE_HEAD_FRACTION, drawn the same way: the same seed makes the same case
    a = generate("brain-tumor", brain, np.random.default_rng(3), spacing=4.0)
    b = generate("brain-tumor", brain, np.random.default_rng(3), spacing=4.0,
                 whole_head_fraction=gen_module.WHOLE_HEAD_FRACTION)
    np.testing.assert_array_equal(a.images["t1ce"], b.images["t1ce"])
    with pytest.raises(UserError, match="whole-head-fraction"):
        generate("brain-tumor", brain, np.random.default_rng(0), whole_head_fraction=1.5)


def test_a_synthetic_brain_holds_the_aseg_labels_at_real_volumes():
    maps = load_anatomy("petmr-brain")
    brain = {m.name: m for m in maps}["training_seg_05"]
    s = generate("petmr-brain", brain, np.random.default_rng(1))
    present = [v for v in lt.BRAIN_LABELS if (s.label == v).any()]
    assert len(present) >= 40
    vox = float(np.prod(s.grids["t1"].spacing))
    real = lt.output_labels(brain.labels, lt.BRAIN_LABELS)
    real_vox = float(np.prod(brain.grid.spacing))
    for v in present:
        ratio = (s.label == v).sum() * vox / max((real == v).sum() * real_vox, 1.0)
        assert 1 / 3 <= ratio <= 3, (v, ratio)


def test_whole_heart_ct_has_thorax_tissues_in_hounsfield_units():
    s = generate("whole-heart", load_anatomy("whole-heart")[0], np.random.default_rng(3), spacing=3.0, modality="ct")
    img, lab = s.images["image"], s.role_labels["image"]
    assert img.dtype == np.int16
    hu = {name: float(np.median(img[lab == v])) for name, v in lt.THORAX.items() if (lab == v).sum() > 20}
    assert hu["lung"] < -600 and hu["fat"] < -50 and hu["bone"] > 250
    assert float(np.median(img[lab == 500])) > 150  # contrast-filled LV


def test_whole_heart_cases_are_framed_as_chest_scans_or_around_the_heart():
    anatomy = load_anatomy("whole-heart")[1]
    samples = [generate("whole-heart", anatomy, np.random.default_rng(seed), spacing=4.0, modality="ct")
               for seed in range(8)]
    framed = [s.info["field_of_view"] for s in samples]
    assert set(framed) == {"chest", "heart"}
    for s in samples:
        img, grid = s.images["image"], s.grids["image"]
        fov = np.asarray(img.shape[::-1]) * np.asarray(grid.spacing)
        body = np.argwhere(img > -500)[:, 1:].mean(0)  # (y, x) of the body, voxels
        off_mm = np.abs(body - (np.asarray(img.shape[1:]) - 1) / 2) * 4.0
        if s.info["field_of_view"] == "chest":  # the whole body width in view, the body centred
            assert fov[0] >= 270 and fov[1] >= 270 and off_mm.max() < 40, (fov, off_mm)
        else:  # a heart-centred box
            heart = np.argwhere(s.label > 0).mean(0)
            assert np.abs(heart - (np.asarray(img.shape) - 1) / 2).max() * 4.0 < 12


def test_whole_heart_ct_comes_in_every_contrast_phase():
    drawn = [priors.ct_phase(np.random.default_rng(seed)) for seed in range(400)]
    for phase, p in priors.CT_PHASES.items():
        assert abs(drawn.count(phase) / len(drawn) - p) < 0.08, phase
    anatomy = load_anatomy("whole-heart")[0]
    samples = (generate("whole-heart", anatomy, np.random.default_rng(seed), spacing=4.0, modality="ct")
               for seed in range(20))
    sample = next(s for s in samples if s.info["image"]["contrast"] == "non-contrast")
    img, lab = sample.images["image"], sample.role_labels["image"]
    blood, myo = float(np.median(img[lab == 500])), float(np.median(img[lab == 205]))
    assert 25 < blood < 60 and abs(myo - blood) < 20  # plain CT: blood and myocardium alike
    with pytest.raises(ValueError, match="unknown CT phase"):
        priors.heart_ct(np.random.default_rng(0), "portal")


def test_synth_command_writes_the_public_layout(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["synth", "--task", "spine", "--out", str(out), "--n", "2", "--seed", "7", "--spacing", "3",
            "--progress", "json"]
    assert main(args) == 0
    events = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert '"event": "finished"' in events[-1]
    for i in (1, 2):
        for name in ("ct.nii.gz", "mr.nii.gz", "label.nii.gz", "ct.mrk.json", "mr.mrk.json", "mr_to_ct.tfm"):
            assert (out / f"case_{i:03d}" / name).is_file()
    first = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_002" / "label.nii.gz")))
    assert main(args[:4] + [str(tmp_path / "again"), "--n", "1", "--seed", "8", "--spacing", "3",
                            "--progress", "none"]) == 0
    again = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "again" / "case_001" / "label.nii.gz")))
    assert np.array_equal(first, again)  # seed 8 is case 2 of the first run


@pytest.mark.parametrize("extra, message", [
    (["--task", "nope"], "unknown task"),
    (["--task", "spine", "--n", "0"], "--n must be at least 1"),
    (["--task", "spine", "--anatomy", "EMPTY"], "no usable spine label maps"),
    (["--task", "spine", "--spacing", "-1"], "--spacing"),
    (["--task", "spine", "--whole-head-fraction", "0.5"], "for --task brain-tumor only"),
    (["--task", "brain-tumor", "--whole-head-fraction", "2"], "between 0 and 1"),
    (["--task", "spine", "--heart-at-edge-fraction", "0.5"], "for --task whole-heart only"),
    (["--task", "whole-heart", "--heart-at-edge-fraction", "-0.1"], "between 0 and 1"),
    (["--task", "brain-tumor", "--random-contrast-fraction", "0.5"], "not brain-tumor"),
    (["--task", "petmr-brain", "--random-contrast-fraction", "1.5"], "between 0 and 1"),
])
def test_synth_command_bad_arguments(tmp_path, capsys, extra, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no label maps here")
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    assert main(["synth", "--out", str(tmp_path / "out"), "--progress", "none", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.skipif(not (SHARED / "anatomy/spine-panoptica").is_dir(), reason="../shared/data is not here")
def test_full_resolution_anatomy_folder(tmp_path):
    maps = load_anatomy("spine", SHARED / "anatomy/spine-panoptica/examples/spine_seg/semantic")
    assert [m.name for m in maps] == ["ref"] or "ref" in [m.name for m in maps]
    s = generate("spine", maps[0], np.random.default_rng(0), spacing=3.0)
    assert set(np.unique(s.label)) == {0, 1, 2}


def test_synth_held_out_draws_only_the_demos_held_out_anatomies(tmp_path, capsys):
    """``--held-out`` (the Slicer sample data and ``demo``): every case comes from an anatomy held out of the demos'
    training, the same one ``demo`` picks for the seed; without it the packaged training anatomies are drawn too."""
    from multimodalseg.synthesis.anatomy import HELD_OUT, load_anatomy, split_anatomy

    maps = load_anatomy("spine")
    # a seed whose plain draw is a training anatomy (make_synth_case picks the map from the seed)
    seed = next(s for s in range(50) if maps[int(np.random.default_rng([s, 14]).integers(len(maps)))].name
                not in HELD_OUT["spine"])

    def drawn(*extra) -> list[str]:
        assert main(["synth", "--task", "spine", "--spacing", "4", "--progress", "none", *extra]) == 0
        return [line.split(" from ")[1].split(" (")[0] for line in capsys.readouterr().out.splitlines()]

    assert drawn("--out", str(tmp_path / "plain"), "--seed", str(seed))[0] not in HELD_OUT["spine"]
    held = drawn("--out", str(tmp_path / "held"), "--seed", str(seed), "--n", "3", "--held-out")
    assert len(held) == 3 and set(held) <= set(HELD_OUT["spine"])
    demo = make_synth_case("spine", seed, anatomy=split_anatomy("spine")[1], spacing=4.0)
    assert demo.info["anatomy"] == held[0]  # what 'demo' draws for the seed


def test_synth_held_out_refuses_a_kind_without_any_and_the_anatomy_option(tmp_path, capsys, monkeypatch):
    from multimodalseg.synthesis import anatomy

    monkeypatch.setitem(anatomy.HELD_OUT, "heart", ())
    args = ["synth", "--task", "whole-heart", "--out", str(tmp_path / "out"), "--progress", "none", "--held-out"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--held-out: no packaged heart anatomy is held out for task whole-heart" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(SystemExit) as exc:
        main([*args, "--anatomy", str(tmp_path)])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_random_contrast_fraction_sets_the_share_and_keeps_every_other_draw():
    """0 paints every T1 in the T1 prior, 1 every one in random contrast; the default (0.5) is the old draw, and
    the labels and the PET never change with it."""
    anatomy = load_anatomy("petmr-brain")[0]
    seen = {None: set(), 0.0: set(), 1.0: set()}
    for seed in range(8):
        runs = {f: generate("petmr-brain", anatomy, np.random.default_rng(seed), spacing=6.0,
                            random_contrast_fraction=f) for f in (None, 0.5, 0.0, 1.0)}
        assert np.array_equal(runs[None].images["t1"], runs[0.5].images["t1"])  # the default is 0.5
        for f in (0.0, 1.0):
            assert np.array_equal(runs[f].label, runs[None].label)
            assert np.array_equal(runs[f].images["pet"], runs[None].images["pet"])
        for f in seen:
            seen[f].add(runs[f].info["t1"]["contrast"])
    assert seen[0.0] == {"t1"} and seen[1.0] == {"random"}
    assert seen[None] == {"t1", "random"}
    with pytest.raises(UserError, match="not brain-tumor"):
        generate("brain-tumor", load_anatomy("brain-tumor")[0], np.random.default_rng(0), spacing=6.0,
                 random_contrast_fraction=0.5)
