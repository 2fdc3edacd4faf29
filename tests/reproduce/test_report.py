"""The reproduction's docs machinery: tables, scarcity curve and strips figure from a
``reproduction.json`` dict (built here to the schema of ``Protocol.run``) and a strips folder."""
import json

import pytest
import torch
from PIL import Image

from benchmarks import report
from benchmarks.repro_figures import CURVE_SIZE, scarcity_curve, scarcity_points, strips_figure
from orster4d.data.dataset import write_png
from orster4d.reproduce.scoring import CONDITIONS
from orster4d.reproduce.tables import markdown_tables

SC = "single-channel (Diffusion4D-like)"


def _ci(mean, hw=None):
    n = 1 if hw is None else 2
    return {"mean": mean, "half_width": hw, "low": None if hw is None else mean - hw,
            "high": None if hw is None else mean + hw, "n": n}


def _summary(psnr, hw=None):
    s = {k: {"psnr": _ci(psnr + i, hw), "ssim": _ci(0.5, hw), "lpips": _ci(None), "fvd": _ci(None)}
         for i, k in enumerate(CONDITIONS)}
    s["absent"] = {"lpips": "LPIPS weights not found", "fvd": "I3D weights not found"}
    return s


def _row(name, table, seeds, psnr, hw=None, assets=False, scarce4d=None):
    r = {"name": name, "table": table, "status": "done", "seeds": seeds, "score": ["video"] + ["asset"] * assets,
         "note": None, "scarce4d": scarce4d, "summary": _summary(psnr, hw)}
    if assets:
        r["asset_summary"] = _summary(psnr - 5, hw)
    return r


@pytest.fixture
def result():
    return {
        "preset": "tiny", "seeds": [0, 1],
        "world": {"spec": {"seed": 0, "static3d": 2, "video": 2, "scarce4d": 2, "heldout": 2, "frames": 4,
                           "size": 32, "gaussians": 300, "views": 3}},
        "image_vae": {"heldout_psnr_db": 21.5, "run": "vae-0"}, "clip": {"pretrained": False},
        "settings": {"stage_steps": [2, 2, 2, 2], "teacher_steps": 2, "train_preset": "tiny",
                     "train_overrides": {"data.frames": 4}, "inference_steps": 2, "guidance_scale": 1.0,
                     "prior_steps": 1, "construct": {"coarse_iters": 4}},
        "throughput_samples_per_s": {"s1-a": {"stage": 1, "samples_per_s": 10.0},
                                     "s1-b": {"stage": 1, "samples_per_s": 30.0},
                                     "s2-a": {"stage": 2, "samples_per_s": 5.0}},
        "rows": [_row("ours", 1, [0, 1], 20.0, 1.0, assets=True), _row(SC, 1, [0, 1], 18.0, 0.5, assets=True),
                 _row("w/o disentangling", 2, [0], 17.0),
                 {"name": "w/o a switch", "table": 3, "status": "not expressible yet", "reason": "no such switch",
                  "score": ["video"], "note": None, "scarce4d": None},
                 _row("ours @ 4D n=1", 4, [0], 15.0, scarce4d=1), _row("ours @ 4D n=2", 4, [0, 1], 16.0, 0.8, scarce4d=2),
                 _row(f"{SC} @ 4D n=1", 4, [0], 14.0, scarce4d=1)],
        "events": [],
    }


def test_table1_shows_every_condition_seeds_intervals_and_not_run_rows(result):
    out = report.repro_table1(result)
    assert "| ours | 2 | image-to-4D | 20.00 ± 1.00 | 0.500 ± 1.000 | absent | absent |" in out
    assert "| ours | 2 | 3D-to-4D | 22.00 ± 1.00 |" in out and f"| {SC} | 2 | text-to-4D | 19.00 ± 0.50 |" in out
    assert out.count("| stage 1 only | - | ") == 6 and "| stage 1 only | - | image-to-4D | not run |" in out
    videos, assets = out.split("**Table 1, 4D assets")
    assert "| LPIPS | FVD |" in videos and "| LPIPS |\n" in assets and "| ours | 2 | image-to-4D | 15.00 ± 1.00 |" in assets
    assert "- LPIPS absent: LPIPS weights not found" in videos and "- FVD absent: I3D weights not found" in videos


def test_ablations_list_every_row_of_tables_2_and_3_after_ours(result):
    out = report.repro_ablations(result)
    t2, t3 = out.split("**Table 3, generated")
    assert "| w/o disentangling | 1 | image-to-4D | 17.00 |" in t2 and "| w/o spatial channel | - | text-to-4D | not run |" in t2
    assert "| construction w/o spatial prior tokens | - | image-to-4D | not run |" in t2.split("4D assets")[1]
    for name in ("w/o Orster", "lambda_o = 0", "w/o Gaussian kernel", "w/o consistency stage"):
        assert f"| {name} | - | image-to-4D | not run |" in t3
    assert "| w/o a switch | - | image-to-4D | not expressible yet: no such switch |" in t3
    assert "| w/o construction training | - | 3D-to-4D | not run |" in t3.split("4D assets")[1]
    assert t2.count("| ours | 2 | image-to-4D | 20.00 ± 1.00 |") == 1  # the reference row, videos
    assert t2.count("| ours | 2 | image-to-4D | 15.00 ± 1.00 |") == 1  # and assets


def test_scarcity_table_has_both_series_at_every_size_of_the_preset(result):
    out = report.repro_scarcity(result)
    assert "| ours @ 4D n=1 | 1 | image-to-4D | 15.00 |" in out and "| ours @ 4D n=2 | 2 | image-to-4D | 16.00 ± 0.80 |" in out
    assert f"| {SC} @ 4D n=1 | 1 | image-to-4D | 14.00 |" in out and f"| {SC} @ 4D n=2 | - | image-to-4D | not run |" in out


def test_settings_table(result):
    out = report.repro_settings(result)
    assert "| image VAE held-out PSNR | 21.50 dB |" in out and "| wall time | not recorded |" in out
    assert "| training throughput, stage 1 | 20.0 samples/s (median of 2 runs; 10.0-30.0) |" in out
    assert "stages 1 / 2 / 3 / 4: 2 / 2 / 2 / 2 steps" in out and "random tiny CLIP" in out
    assert "| wall time | 1.50 h |" in report.repro_settings({**result, "wall_s": 5400.0})


def test_reproduction_md_keeps_its_sections(result):
    md = markdown_tables(result)
    assert "| ours | 2 |" in md and md.count("### 4D assets") == 1 and "## Scarcity curve" in md
    assert "not run" not in md  # reproduction.md lists what was run; the docs list what was not
    assert "| w/o a switch | - | image-to-4D | not expressible yet: no such switch |" in md


def test_scarcity_curve_is_a_png_of_the_expected_size_with_error_bars_only_for_several_seeds(result, tmp_path):
    pts = scarcity_points(result)
    assert pts["ours"] == [(1, 15.0, None, 1), (2, 16.0, 0.8, 2)] and pts[SC] == [(1, 14.0, None, 1)]
    png = tmp_path / "c.png"
    report.plot_repro_scarcity(result, png)
    with Image.open(png) as im:
        assert im.size == CURVE_SIZE and im.format == "PNG"
        px = im.convert("RGB").load()
        colours = {px[x, y] for x in range(im.width) for y in range(im.height)}
    assert (200, 40, 40) in colours and (30, 80, 200) in colours
    # the error bar of ours at n=2 reaches above its point: more red pixels than without it
    no_bars = {**result, "rows": [dict(r, seeds=[0]) for r in result["rows"]]}
    red = lambda img: sum(p == (200, 40, 40) for p in img.getdata())  # noqa: E731
    assert red(scarcity_curve(result)) > red(scarcity_curve(no_bars))
    empty = scarcity_curve({**result, "rows": result["rows"][:2]})
    assert empty.size == CURVE_SIZE


def _strip(path, gen_value, true_value, T=3, s=8):
    gen = torch.full((s, T * s, 3), gen_value)
    true = torch.full((s, T * s, 3), true_value)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, torch.cat([gen, true], 0))


def test_strips_figure_rows_are_ours_single_channel_truth_per_object(tmp_path):
    for obj in ("obj_00000", "obj_00001", "obj_00002", "obj_00003"):
        _strip(tmp_path / "ours" / "seed0" / f"{obj}_image.png", 1.0, 0.0)
    _strip(tmp_path / "single_channel_diffusion4d_like" / "seed0" / "obj_00000_image.png", 0.5, 0.0)
    img = strips_figure(tmp_path, max_objects=3, scale=2, label_width=100)
    fh = 16  # one 8-pixel frame row, doubled
    assert img.size == (100 + 3 * 8 * 2, 24 + 9 * (fh + 2) + 2 * 6)
    mid = lambda row: img.getpixel((100 + 5, 24 + row * (fh + 2) + fh // 2))  # noqa: E731
    assert mid(0) == (255, 255, 255) and mid(1) == (128, 128, 128) and mid(2) == (0, 0, 0)
    assert img.getpixel((100 + 2, 24 + 4 * (fh + 2) + 6 + 2)) == (200, 200, 200)  # obj_00001: no single-channel strip
    with pytest.raises(FileNotFoundError, match="--strips"):
        strips_figure(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="text"):
        strips_figure(tmp_path, kind="text")
    out = tmp_path / "fig" / "f.png"
    assert report.main(["figure", "--strips", str(tmp_path), "--out", str(out), "--max-objects", "1"]) == 0
    assert Image.open(out).size[1] == 24 + 3 * (fh + 2)


def test_docs_blocks_render_not_run_then_tables_and_figures(result, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "p.md"
    page.write_text("a\n<!-- report: repro_table1 r/repro.json -->\n<!-- end report -->\n"
                    "<!-- report: repro_scarcity_plot r/repro.json -->\n<!-- end report -->\n"
                    "<!-- report: repro_strips strips -->\n<!-- end report -->\nb\n")
    assert report.docs(check=False, root=tmp_path) == 0
    text = page.read_text()
    assert text.count("*Not run yet: `r/repro.json` is not in the repository.*") == 2 and "`strips`" in text
    assert "not in the repository" in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "repro.json").write_text(json.dumps(result))
    _strip(tmp_path / "strips" / "ours" / "seed0" / "obj_00000_image.png", 1.0, 0.0)
    assert report.docs(check=True, root=tmp_path) == 1
    assert report.docs(check=False, root=tmp_path) == 0
    text = page.read_text()
    assert "| ours | 2 | image-to-4D | 20.00 ± 1.00 |" in text
    assert "![Scarcity curve" in text and "(figures/repro_scarcity.png)" in text and "(figures/strips_strips.png)" in text
    assert Image.open(tmp_path / "docs" / "figures" / "repro_scarcity.png").size == CURVE_SIZE
    assert (tmp_path / "docs" / "figures" / "strips_strips.png").is_file()
    assert report.docs(check=True, root=tmp_path) == 0
    Image.new("RGB", CURVE_SIZE).save(tmp_path / "docs" / "figures" / "repro_scarcity.png")
    assert report.docs(check=True, root=tmp_path) == 1  # a stale figure is stale
    with pytest.raises(ValueError, match="unknown report kind"):
        report.render_docs("<!-- report: repro_nope r/repro.json -->\n<!-- end report -->", tmp_path)


def test_a_report_without_scarcity_rows_gets_no_empty_curve_in_the_docs(result, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "r").mkdir()
    result = dict(result, rows=[r for r in result["rows"] if r["table"] != 4])
    (tmp_path / "r" / "repro.json").write_text(json.dumps(result))
    page = tmp_path / "docs" / "p.md"
    page.write_text("<!-- report: repro_scarcity_plot r/repro.json -->\n<!-- end report -->\n")
    assert report.docs(check=False, root=tmp_path) == 0
    assert "holds nothing for this figure" in page.read_text()
    assert not (tmp_path / "docs" / "figures").exists() or not any((tmp_path / "docs" / "figures").iterdir())
