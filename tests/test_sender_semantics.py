"""Semantic codecs' senders get ground truth or a segmenter's map of the original, recorded."""

from __future__ import annotations

import pytest

from bench.execution.runner import RunConfig, execute
from bench.registry import catalog
from bench.storage.store import Store


@pytest.fixture()
def cards(tmp_path, monkeypatch):
    (tmp_path / "cards" / "codecs").mkdir(parents=True)
    (tmp_path / "cards" / "codecs" / "semquant.yaml").write_text(
        "name: semquant\nentry: fakes_bench:SemanticQuantCodec\nrates: [16]\n")
    monkeypatch.setenv("BENCH_CARD_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "refcache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    catalog.reset()


def test_ground_truth_then_segmenter_are_recorded_and_not_mixed(cards, tmp_path):
    segmenter = {"name": "espnetv2", "scale": 0.5, "input_size": "512x256"}
    with Store(tmp_path / "s.sqlite") as store:
        gt_id = execute(RunConfig("demo", ["semquant"], ["psnr"], limit=2, workers=1), store, progress=False)
        seg_id = execute(RunConfig("demo", ["semquant"], ["psnr"], limit=2, workers=1, semantics_segmenter=segmenter,
                                   metric_options={"allow_random_weights": True}), store, progress=False)
        gt_rows, seg_rows = list(store.rows(gt_id)), list(store.rows(seg_id))
        seg_meta = store.run(seg_id)["meta"]
    assert gt_id != seg_id
    assert all(r.notes["semantics_source"] == "ground-truth" for r in gt_rows)
    assert all(r.notes["semantics_source"].startswith("segmenter:espnetv2") for r in seg_rows)
    assert all(r.notes["label_set"] == "cityscapes19" for r in gt_rows + seg_rows)
    assert seg_meta["semantics_source"].startswith("segmenter:espnetv2")
    # the label bytes come from different maps: the cache must not hand the GT rows to the segmenter run
    assert [r.bytes["labels"] for r in gt_rows] != [r.bytes["labels"] for r in seg_rows]


def test_missing_segmenter_weights_is_a_clear_error(cards, tmp_path):
    from bench.errors import UnavailableError

    with Store(tmp_path / "s.sqlite") as store, pytest.raises(UnavailableError, match="segmenter"):
        execute(RunConfig("demo", ["semquant"], ["psnr"], limit=1, semantics_segmenter={"name": "espnetv2"}),
                store, progress=False)
