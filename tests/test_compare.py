"""Run comparison: Bjøntegaard deltas against known answers and independent integrals,
regression gating through `bench compare`, protocol refusal, and `bench runs` filters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import fakes_bench
import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import PchipInterpolator

from bench.analysis.compare import (
    REGRESSION_EXIT,
    Curve,
    bd_metric,
    bd_rate,
    bjontegaard_delta,
    check_same_protocol,
    compare,
    compare_frames,
    protocol_differences,
)
from bench.cli import main
from bench.errors import ConfigError, ProtocolMismatchError
from bench.execution.runner import RunConfig, execute
from bench.storage.store import Store

RATES = np.array([0.1, 0.2, 0.4, 0.8])
PSNR = np.array([28.0, 31.0, 34.0, 36.5])
LPIPS = np.array([0.50, 0.40, 0.30, 0.22])


class TunableQuant(fakes_bench.QuantCodec):
    """QuantCodec with a deliberately worse setting: ``noise`` adds deterministic uniform
    noise of that amplitude (8-bit units) at the decoder, same bytes, lower quality."""

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = float(noise)

    def params(self) -> dict[str, Any]:
        return {"noise": self.noise}

    def decode(self, parts: Mapping[str, bytes]) -> np.ndarray:
        out = super().decode(parts)
        if not self.noise:
            return out
        rng = np.random.default_rng(0)
        noisy = out.astype(np.float64) + rng.uniform(-self.noise, self.noise, out.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


class NoisyQuant(TunableQuant):
    name = "noisy"

    def __init__(self, noise: float = 12.0) -> None:
        super().__init__(noise)


# -- Bjøntegaard deltas ------------------------------------------------------------------
def test_bd_rate_of_rates_scaled_by_0_9_is_minus_10_percent():
    anchor, test = Curve.from_points(RATES, PSNR), Curve.from_points(RATES * 0.9, PSNR)
    rate, note = bd_rate(anchor, test)
    assert note == "" and rate == pytest.approx(-10.0, abs=1e-9)
    # the other way round: 1/0.9 - 1 = +11.11 %
    assert bd_rate(test, anchor)[0] == pytest.approx((1 / 0.9 - 1) * 100, abs=1e-9)


def test_bd_rate_respects_lower_is_better_metrics():
    anchor, test = Curve.from_points(RATES, LPIPS), Curve.from_points(RATES * 0.9, LPIPS)
    assert bd_rate(anchor, test, higher_is_better=False)[0] == pytest.approx(-10.0, abs=1e-9)
    # treating LPIPS as higher-is-better is refused, not silently computed
    value, note = bd_rate(anchor, test, higher_is_better=True)
    assert math.isnan(value) and "not strictly increasing" in note
    # a better LPIPS curve (lower at every rate) has a negative BD-metric and negative BD-rate
    better = Curve.from_points(RATES, LPIPS - 0.05)
    result = bjontegaard_delta(anchor, better, higher_is_better=False)
    assert result.bd_metric == pytest.approx(-0.05, abs=1e-12) and result.bd_rate < 0


def test_bd_metric_of_a_constant_shift_is_the_shift():
    assert bd_metric(Curve.from_points(RATES, PSNR), Curve.from_points(RATES, PSNR + 0.5))[0] == pytest.approx(0.5)


def test_identical_curves_give_exactly_zero():
    c = Curve.from_points(RATES, PSNR)
    r = bjontegaard_delta(c, c)
    assert r.bd_rate == 0.0 and r.bd_metric == 0.0 and r.quality_overlap == 1.0 and r.notes == ()


def test_bd_rate_matches_an_independent_dense_integral():
    """PCHIP of log10(rate) over PSNR, integrated numerically on a fine grid (scipy only)."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        ra = np.sort(rng.uniform(0.05, 2.0, 5))
        qa = np.sort(rng.uniform(25, 40, 5))
        rb = ra * rng.uniform(0.7, 1.3, 5)
        rb.sort()
        qb = np.sort(qa + rng.normal(0, 0.5, 5))
        lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
        grid = np.linspace(lo, hi, 200001)
        fa, fb = PchipInterpolator(qa, np.log10(ra)), PchipInterpolator(qb, np.log10(rb))
        expected = (10 ** (np.trapezoid(fb(grid) - fa(grid), grid) / (hi - lo)) - 1) * 100
        got, _ = bd_rate(Curve.from_points(ra, qa), Curve.from_points(rb, qb))
        assert got == pytest.approx(expected, abs=1e-6)


def test_cubic_method_matches_vceg_m33_polyfit():
    """VCEG-M33: cubic polynomial fit of log-rate over PSNR, integrated analytically."""
    ra, qa = np.array([9487.76, 4593.60, 2486.44, 1358.24]), np.array([40.037, 38.615, 36.845, 34.851])
    rb, qb = np.array([9787.80, 4469.00, 2451.52, 1356.24]), np.array([40.121, 38.651, 36.970, 34.987])
    pa, pb = np.polyfit(qa, np.log(ra), 3), np.polyfit(qb, np.log(rb), 3)
    lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
    ia, ib = np.polyint(pa), np.polyint(pb)
    avg = ((np.polyval(ib, hi) - np.polyval(ib, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    expected = (math.exp(avg) - 1) * 100
    got, _ = bd_rate(Curve.from_points(ra, qa), Curve.from_points(rb, qb), method="cubic")
    assert got == pytest.approx(expected, abs=1e-6)
    assert got < 0  # the test codec is better: higher PSNR at about the same rates


def test_undefined_cases_are_nan_with_a_reason():
    one = Curve.from_points([0.5], [30.0])
    assert "1 rate point" in bd_rate(one, Curve.from_points(RATES, PSNR))[1]
    # one curve too short for both values: one reason, not the same one twice
    assert bjontegaard_delta(one, Curve.from_points(RATES, PSNR)).notes == (
        "anchor has 1 rate point(s); BD-rate and BD-metric need 2 or more",)
    far = Curve.from_points(RATES, PSNR + 20)
    assert math.isnan(bd_rate(Curve.from_points(RATES, PSNR), far)[0])
    wiggly = Curve.from_points(RATES, [30.0, 29.0, 33.0, 35.0])
    r = bjontegaard_delta(Curve.from_points(RATES, PSNR), wiggly)
    assert math.isnan(r.bd_rate) and math.isfinite(r.bd_metric) and "not strictly" in r.notes[0]


@pytest.mark.parametrize("bpp_b, psnr_b, verdict", [
    (1.0, 29.0, "worse"),    # same bits, lower quality
    (1.1, 30.0, "worse"),    # more bits, same quality
    (0.9, 29.0, "mixed"),    # a trade-off: not gated
    (0.9, 30.5, "better"),
    (1.005, 30.01, "same"),  # within 1 % and 0.05 dB
])
def test_single_rate_point_falls_back_to_per_point_verdicts(bpp_b, psnr_b, verdict):
    frame = lambda bpp, psnr: pd.DataFrame({"codec": ["c"], "rate": ["q1"], "n_ok": [2], "bpp": [bpp], "psnr": [psnr]})
    result = compare_frames(frame(1.0, 30.0), frame(bpp_b, psnr_b), [("c", "c")], ["psnr"])
    row = result.metrics.iloc[0]
    assert math.isnan(row["bd_rate_pct"]) and row["basis"] == "points" and row["verdict"] == verdict
    assert result.regressed == (verdict == "worse")
    if verdict == "worse":
        assert "psnr regressed" in result.regressions[0] and "rate point(s) q1" in result.regressions[0]


# -- protocol ----------------------------------------------------------------------------
def _run(protocol: dict, content: str = "c" * 64, metrics: dict | None = None) -> dict:
    return {"run_id": "r", "meta": {"dataset": {"protocol": protocol, "content_hash": content, "n_images": 3},
                                    "metrics": metrics or {}}}


def test_protocol_differences_name_what_differs():
    base = {"dataset": "cityscapes", "resolution": "256x512", "class_set": "cityscapes19"}
    seg = {"miou": {"segmenter": {"name": "espnetv2", "scale": 2.0}, "references": ["gt", "orig"]}}
    a = _run(base, metrics=seg)
    assert protocol_differences(a, _run(dict(base), metrics=seg), ["miou"]) == []
    diffs = protocol_differences(a, _run({**base, "resolution": "512x1024"}, metrics=seg), ["miou"])
    assert diffs == ["dataset.protocol.resolution: '256x512' vs '512x1024'"]
    other_seg = {"miou": {"segmenter": {"name": "espnetv2", "scale": 1.0}, "references": ["gt", "orig"]}}
    diffs = protocol_differences(a, _run(base, metrics=other_seg), ["miou"])
    assert diffs == ["metric miou.segmenter.scale: 2.0 vs 1.0"]
    assert protocol_differences(a, _run(base, metrics=other_seg), ["psnr"]) == []  # miou not compared
    diffs = protocol_differences(a, _run(base, content="d" * 64, metrics=seg))
    assert len(diffs) == 1 and "content_hash" in diffs[0]
    with pytest.raises(ProtocolMismatchError, match="class_set"):
        check_same_protocol(a, _run({**base, "class_set": "coco9"}, metrics=seg))


# -- runs through the real runner --------------------------------------------------------
@pytest.fixture()
def env(tmp_path, monkeypatch):
    fakes_bench.use_fakes(tmp_path, monkeypatch, 3, {
        "codecs/quant.yaml": "name: quant\nentry: test_compare:TunableQuant\nrates: [32, 16, 8, 4]\n",
        "codecs/noisy.yaml": "name: noisy\nentry: test_compare:NoisyQuant\nrates: [32, 16, 8, 4]\n"})
    return tmp_path


def _execute(store: Store, **kw: Any) -> str:
    cfg = dict(dataset="pngs", codecs=["quant"], metrics=["psnr"], workers=1)  # no process pool in tests
    cfg.update(kw)
    return execute(RunConfig(**cfg), store, progress=False)


def test_degraded_setting_makes_compare_exit_nonzero_and_name_the_metric(env, capsys):
    with Store(env / "bench.sqlite") as store:
        good = _execute(store, tag="good")
        bad = _execute(store, tag="bad", codec_params={"quant": {"noise": 12}})
        same = _execute(store, tag="again")
    code = main(["--out", str(env), "compare", good, bad])
    out = capsys.readouterr().out
    assert code == REGRESSION_EXIT
    assert "REGRESSION: quant: psnr regressed" in out and "BD-rate +" in out
    assert "settings differ" in out and "noise" in out  # the codec setting that changed is reported
    # the reverse direction is an improvement: exit 0
    assert main(["--out", str(env), "compare", bad, good]) == 0
    assert "no regression" in capsys.readouterr().out
    # a re-run with identical settings compares as exactly zero difference
    assert main(["--out", str(env), "compare", good, same]) == 0
    with Store(env / "bench.sqlite") as store:
        result = compare(store, good, same)
    assert result.metrics["bd_rate_pct"].tolist() == [0.0] and result.metrics["bd_metric"].tolist() == [0.0]
    assert (result.points["delta"] == 0).all() and (result.points["delta_bpp_pct"] == 0).all()
    assert not result.regressed
    # --no-gate reports without failing
    assert main(["--out", str(env), "compare", good, bad, "--no-gate"]) == 0


def test_two_codecs_of_one_run_and_per_point_values(env, capsys):
    with Store(env / "bench.sqlite") as store:
        run = _execute(store, codecs=["quant", "noisy"])
        result = compare(store, run, anchor="quant", test="noisy")
        rows = {(r.codec, r.rate, r.image_id): r for r in store.rows(run)}
    assert result.regressed and result.metrics.loc[0, "bd_rate_pct"] > 1
    # per-point deltas are the differences of the means of the stored per-image values
    p = result.points.set_index("rate").loc["16"]
    mean = lambda codec: np.mean([r.metrics["psnr"] for (c, rate, _), r in rows.items() if c == codec and rate == "16"])
    assert p["delta"] == pytest.approx(mean("noisy") - mean("quant"))
    assert p["delta_bpp_pct"] == pytest.approx(0.0)  # same bytes: only the decoder differs
    assert main(["--out", str(env), "compare", run, "--anchor", "quant", "--test", "noisy"]) == REGRESSION_EXIT
    assert "quant → noisy: psnr regressed" in capsys.readouterr().out
    with Store(env / "bench.sqlite") as store, pytest.raises(ConfigError, match="two codecs"):
        compare(store, run)


def test_different_protocols_are_refused(env, capsys):
    other = env / "other"
    fakes_bench.write_pngs(other, 3, seed=7)
    with Store(env / "bench.sqlite") as store:
        a = _execute(store)
        b = _execute(store, dataset_params={"root": str(other)})
        with pytest.raises(ProtocolMismatchError, match="content_hash"):
            compare(store, a, b)
    assert main(["--out", str(env), "compare", a, b]) == ProtocolMismatchError.exit_code
    assert "different protocols" in capsys.readouterr().err


def test_runs_lists_tags_and_filters(env, capsys):
    with Store(env / "bench.sqlite") as store:
        _execute(store, tag="ckpt-ep40")
        _execute(store, codecs=["noisy"])
    assert main(["--out", str(env), "runs", "--tag", "ckpt-ep40"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "quant@ckpt-ep40" in out[0] and "tag=ckpt-ep40" in out[0]
    assert main(["--out", str(env), "runs", "--codec", "noisy", "--dataset", "pngs"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "noisy" in out[0] and "tag=-" in out[0]
    assert main(["--out", str(env), "runs", "--tag", "nope"]) == 0
    assert "no run matches" in capsys.readouterr().out


def test_runs_lines_fit_100_columns_and_verbose_names_every_codec(env, capsys):
    with Store(env / "bench.sqlite") as store:
        _execute(store, codecs=["quant", "noisy"], tag="a-long-tag-naming-the-checkpoint-of-epoch-40")
    assert main(["--out", str(env), "runs"]) == 0
    line = capsys.readouterr().out.strip()
    assert len(line) == 100 and line.endswith("…"), line
    assert main(["--out", str(env), "runs", "-v"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("noisy@a-long-tag-naming-the-checkpoint-of-epoch-40,quant@a-long-tag-naming-the-checkpoint-of-epoch-40")


def test_console_text_fits_100_columns_with_reasons_as_numbered_footnotes(env, capsys):
    with Store(env / "bench.sqlite") as store:
        good = _execute(store, tag="good", codecs=["quant", "noisy"])
        bad = _execute(store, tag="bad", codecs=["quant", "noisy"], rates={"noisy": ["16"]},
                       codec_params={"quant": {"noise": 12}})
    assert main(["--out", str(env), "compare", good, bad, "--ci"]) == REGRESSION_EXIT
    out, err = capsys.readouterr()
    lines = out.splitlines()
    prose = [line for line in lines if not line.startswith(("REGRESSION", "SIGNIFICANT", "TOO FEW"))]
    assert max(map(len, prose)) <= 100, max(prose, key=len)  # a verdict stays one line, for grep
    assert "Warning" not in err and "Traceback" not in err, err
    # noisy has one rate point in run B: its BD row points at a footnote instead of a wide column
    row = next(line for line in lines if line.startswith("noisy") and "psnr" in line and "[" in line)
    number = row.split()[-1]
    assert number == "[1]" and any(line.startswith("[1] test has 1 rate point(s); BD-rate and BD-metric need 2")
                                   for line in lines)
    assert sum(line.startswith("[1] ") for line in lines) == 1  # one footnote per distinct reason
    assert any(line.startswith("REGRESSION: quant: psnr regressed") for line in lines)


def test_the_clean_reference_has_no_bd_row_and_is_compared_per_rate_point(env, capsys):
    """`original` has one rate point: no BD row with footnotes saying so twice, one line instead;
    its values are in the per-rate-point table."""
    with Store(env / "bench.sqlite") as store:
        a = _execute(store, tag="a", codecs=["quant", "original"])
        b = _execute(store, tag="b", codecs=["quant", "original"])
    assert main(["--out", str(env), "compare", a, b]) == 0
    lines = capsys.readouterr().out.splitlines()
    bd = lines[:lines.index("per rate point (B − A):")]
    assert not any(line.startswith("original") for line in bd if "psnr" in line)
    assert "original (the clean reference, one rate point): no BD values; compared per rate point below." in bd
    assert not any(line.startswith("[") for line in bd)  # no footnote left to explain it
    assert any(line.startswith("original") and "lossless" in line for line in lines[len(bd):])

