"""Merging reproduction reports of the same protocol made on two machines."""
import copy
import json

import pytest

from orster4d.reproduce.merge import main, merge_reports


def _seed_scores(psnr):
    return {"absent": {}, "conditions": {"image": {"mean": {"psnr": psnr, "ssim": 0.5, "lpips": None, "fvd": None},
                                                   "per_object": []}}}


def _row(name, seeds_done, psnr0=15.0, score=("video",)):
    runs = {str(s): {"stage1": f"s1-{name[:2]}{s}", "stage2": f"s2-{name[:2]}{s}"} for s in seeds_done}
    row = {"name": name, "table": 3, "note": None, "overrides": {}, "stage2_init": "stage1", "stages": [1, 2],
           "score": list(score), "construct": {}, "scarce4d": None}
    if not seeds_done:
        row.update(status="not run", seeds=[], missing_seeds={"0": "run s2-x not finished"})
        return row
    row.update(status="done", seeds=list(seeds_done), runs=runs, missing_seeds={})
    if "video" in score:
        row["per_seed"] = {str(s): _seed_scores(psnr0 + s) for s in seeds_done}
    return row


def _report(rows, **extra):
    r = {"preset": "small", "seeds": [0, 1, 2], "world": {"spec": {"seed": 0}, "root": "/x"},
         "image_vae": {"run": "vae-1"}, "clip": {}, "teachers": {"spatial": "s1-a", "temporal": "s1-b"},
         "settings": {"stage_steps": [1, 2, 3, 4]}, "throughput_samples_per_s": {}, "rows": rows, "events": [],
         "wall_s": 10.0, "jobs": 4, "tasks": None}
    r.update(extra)
    return r


def test_pools_seeds_and_rows_and_recomputes_the_summary():
    old = _report([_row("ours", [0, 1, 2]), _row("w/o Orster", [0])], gpu="G", calls=[{"call": 1}])
    new = _report([_row("ours", []), _row("w/o Orster", [1, 2], psnr0=16.0), _row("lambda_o = 0", [0])])
    out = merge_reports(old, new)
    rows = {r["name"]: r for r in out["rows"]}
    assert [r["name"] for r in out["rows"]] == ["ours", "w/o Orster", "lambda_o = 0"]
    assert rows["ours"]["status"] == "done" and rows["ours"]["seeds"] == [0, 1, 2]  # "not run" in new loses nothing
    assert rows["ours"]["missing_seeds"] == {}
    w = rows["w/o Orster"]
    assert w["seeds"] == [0, 1, 2] and set(w["runs"]) == {"0", "1", "2"}
    psnr = [w["per_seed"][s]["conditions"]["image"]["mean"]["psnr"] for s in ("0", "1", "2")]
    assert psnr == [15.0, 17.0, 18.0]
    assert w["summary"]["image"]["psnr"]["n"] == 3
    assert w["summary"]["image"]["psnr"]["mean"] == pytest.approx(50.0 / 3)
    assert out["merged_from"][0]["gpu"] == "G" and "wall_s" not in out
    third = _report([_row("lambda_o = 1", [0])], gpu="H", calls=[{"call": 9}])
    again = merge_reports(out, third)  # a merge of a merge stays one flat list of sessions
    assert [m.get("gpu") for m in again["merged_from"]] == ["G", None, "H"]
    assert all("merged_from" not in m for m in again["merged_from"])


def test_refuses_reports_of_different_protocols():
    a = _report([_row("ours", [0])])
    for change in ({"preset": "tiny"}, {"teachers": {"spatial": "s1-zzz", "temporal": "s1-b"}},
                   {"world": {"spec": {"seed": 1}, "root": "/x"}}, {"settings": {"stage_steps": [9]}},
                   {"image_vae": {"run": "vae-2"}}):
        b = copy.deepcopy(a)
        b.update(change)
        with pytest.raises(ValueError):
            merge_reports(a, b)
    b = copy.deepcopy(a)
    b["rows"][0]["runs"]["0"]["stage2"] = "s2-other"  # same row and seed, another configuration
    with pytest.raises(ValueError, match="different runs"):
        merge_reports(a, b)


def test_cli_writes_the_merged_report(tmp_path):
    pa, pb, po = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    pa.write_text(json.dumps(_report([_row("ours", [0])])))
    pb.write_text(json.dumps(_report([_row("ours", [1])])))
    assert main([str(pa), str(pb), "--out", str(po), "--set", "gpu=NVIDIA H200"]) == 0
    out = json.loads(po.read_text())
    assert out["gpu"] == "NVIDIA H200" and out["rows"][0]["seeds"] == [0, 1]


def test_settings_table_of_a_merged_report_sums_the_sessions_wall_time():
    from orster4d.reproduce.tables import settings_table

    a = _report([_row("ours", [0])], wall_s=600.0)
    b = _report([_row("ours", [1])], wall_s=300.0)
    twice = merge_reports(merge_reports(a, b), _report([_row("ours", [2])], wall_s=60.0))
    assert "| wall time (3 sessions) | 16.0 min |" in settings_table(twice)
    b.pop("wall_s")
    assert "| wall time | not recorded |" in settings_table(merge_reports(a, b))


def test_a_merged_report_keeps_every_sessions_image_vae_score():
    """Each session retrains the image VAE under the same name; its held-out PSNR differs from one
    machine to the next, and the settings table of a merge shows every session's, not just the last."""
    from orster4d.reproduce.tables import settings_table

    a = _report([_row("ours", [0])], image_vae={"run": "vae-1", "heldout_psnr_db": 22.86})
    b = _report([_row("ours", [1])], image_vae={"run": "vae-1", "heldout_psnr_db": 21.56})
    out = merge_reports(a, b)
    assert [m["image_vae_heldout_psnr_db"] for m in out["merged_from"]] == [22.86, 21.56]
    assert out["image_vae"]["heldout_psnr_db"] == 21.56
    assert ("| image VAE held-out PSNR | last session 21.56 dB; per session where recorded: 22.86, 21.56 dB |"
            in settings_table(out))
    assert "| image VAE held-out PSNR | 22.86 dB |" in settings_table(a)
