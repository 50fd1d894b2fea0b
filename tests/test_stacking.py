"""Candidates against a per-video loop oracle; the K-fold GBT stacker end to end on tiny stores."""

import json
import os

import numpy as np
import pytest

from yt8m_tf.data import folds
from yt8m_tf.stacking import candidates, stacker
from yt8m_tf.stores import candidates as candidate_store
from yt8m_tf.stores import predictions
from yt8m_tf.stores.soft_labels import SoftLabelStore, VideoGroupedStoreBuilder

NUM_CLASSES = 30


def _fixture(tmp_path, num_videos=300, models=("alpha", "beta"), top_k=8, seed=0):
  """Two prediction stores whose scores are noisy versions of the labels, plus the labels."""
  rng = np.random.default_rng(seed)
  ids = np.array([f"v{i:05d}".encode() for i in range(num_videos)])
  labels = {v: np.sort(rng.choice(NUM_CLASSES, rng.integers(1, 4), replace=False)) for v in ids}
  truth = np.zeros((num_videos, NUM_CLASSES), np.float32)
  for row, v in enumerate(ids):
    truth[row, labels[v]] = 1
  stores, dense = {}, {}
  for m, name in enumerate(models):
    logits = 2.5 * truth + rng.normal(scale=1.0 + 0.5 * m, size=truth.shape)
    probabilities = 1 / (1 + np.exp(-logits))
    writer = predictions.PredictionWriter(str(tmp_path / name), NUM_CLASSES, store_top_k=top_k, part_size=70)
    for start in range(0, num_videos, 50):  # parts of 70 videos from batches of 50: chunks re-slice
      writer.add(ids[start : start + 50], probabilities[start : start + 50])
    writer.close()
    stores[name] = str(tmp_path / name)
    dense[name] = probabilities  # the store ranks these, then keeps float16 scores
  return ids, labels, stores, dense


def _oracle_rows(ids, labels, dense, prior, top_k, top_n):
  """Per video loop over the definition in candidates.py."""
  rows = []
  for row, video in enumerate(ids):
    tops = {}
    for name, p in dense.items():
      order = np.argsort(-p[row], kind="stable")[:top_k]
      stored = p[row].astype(np.float16).astype(np.float32)
      tops[name] = {int(c): (stored[c], rank + 1) for rank, c in enumerate(order)}
    union = sorted(set().union(*[[c for c, (_, r) in t.items() if r <= top_n] for t in tops.values()]))
    for c in union:
      features = {"class_id": c}
      for name, t in tops.items():
        features[f"score_{name}"], features[f"rank_{name}"] = t.get(c, (np.nan, np.nan))
      present = [t[c][0] if c in t else 0.0 for t in tops.values()]
      features["mean_score"] = np.mean(present)
      features["max_score"] = np.max(present)
      features["num_models"] = sum(c in t and t[c][1] <= top_n for t in tops.values())
      features["prior"] = prior[c]
      rows.append((row, c, features, int(c in labels[video])))
  return rows


def test_candidate_rows_match_a_loop_oracle(tmp_path):
  ids, labels, stores, dense = _fixture(tmp_path)
  prior = candidates.class_prior(labels, NUM_CLASSES)
  out = str(tmp_path / "cands")
  index = candidates.build_candidates(stores, out, prior, labels, top_n=5, chunk_videos=64, part_videos=100)
  rows = candidate_store.load_candidates(out)
  expected = _oracle_rows(ids, labels, dense, prior, top_k=8, top_n=5)

  assert index["rows"] == len(expected) == len(rows.class_id)
  assert index["videos"] == len(ids) and len(index["parts"]) == 3
  np.testing.assert_array_equal(rows.ids, ids)
  np.testing.assert_array_equal(rows.row_video, [r[0] for r in expected])
  np.testing.assert_array_equal(rows.class_id, [r[1] for r in expected])
  np.testing.assert_array_equal(rows.target, [r[3] for r in expected])
  for name in candidates.feature_names(list(stores)):
    np.testing.assert_allclose(rows.features[name], [r[2][name] for r in expected], rtol=1e-6, err_msg=name)
  np.testing.assert_array_equal(rows.num_positives, [len(labels[v]) for v in ids])
  # Recall is below 1 here (top_n=5 of 30 noisy classes), so GAP must count the missed positives.
  assert 0.5 < index["candidate_recall"] < 1.0


def test_row_gap_of_a_model_score_equals_its_store_gap(tmp_path):
  _, labels, stores, _ = _fixture(tmp_path)
  prior = candidates.class_prior(labels, NUM_CLASSES)
  out = str(tmp_path / "cands")
  candidates.build_candidates(stores, out, prior, labels, top_n=20)
  rows = candidate_store.load_candidates(out)
  for name in stores:
    row_gap = candidate_store.rows_gap(rows, rows.features[f"score_{name}"])
    # Equal up to the order of float16 ties (rows list ties by class id, the store by rank).
    assert row_gap == pytest.approx(predictions.store_gap(stores[name], labels), abs=1e-4)


def test_misaligned_stores_are_an_error_naming_them(tmp_path):
  _, labels, stores, _ = _fixture(tmp_path)
  rng = np.random.default_rng(1)
  other = predictions.PredictionWriter(str(tmp_path / "other"), NUM_CLASSES, store_top_k=8)
  other.add([f"w{i}".encode() for i in range(300)], rng.random((300, NUM_CLASSES)))
  other.close()
  prior = candidates.class_prior(labels, NUM_CLASSES)
  with pytest.raises(ValueError, match="other"):
    candidates.build_candidates(
      {"alpha": stores["alpha"], "other": str(tmp_path / "other")}, str(tmp_path / "c"), prior, labels
    )
  assert not candidate_store.is_complete(str(tmp_path / "c"))


def test_a_store_listing_the_videos_in_another_order_is_aligned_by_id(tmp_path):
  """A frame-level member reads other files than the video-level ones: same videos, another order."""
  ids, labels, stores, dense = _fixture(tmp_path)
  shuffled = np.random.default_rng(2).permutation(len(ids))
  writer = predictions.PredictionWriter(
    str(tmp_path / "beta_shuffled"), NUM_CLASSES, store_top_k=8, part_size=70
  )
  writer.add(ids[shuffled], dense["beta"][shuffled])
  writer.close()
  prior = candidates.class_prior(labels, NUM_CLASSES)
  in_order = candidates.build_candidates(stores, str(tmp_path / "a"), prior, labels, chunk_videos=64)
  reordered = {"alpha": stores["alpha"], "beta": str(tmp_path / "beta_shuffled")}
  aligned = candidates.build_candidates(reordered, str(tmp_path / "b"), prior, labels, chunk_videos=64)
  assert aligned["rows"] == in_order["rows"]
  a, b = (candidate_store.load_candidates(str(tmp_path / d)) for d in ("a", "b"))
  np.testing.assert_array_equal(a.ids, b.ids)
  np.testing.assert_array_equal(a.class_id, b.class_id)
  for name in a.features:
    np.testing.assert_array_equal(a.features[name], b.features[name], err_msg=name)
  # Not the same videos (one missing): an error naming both stores.
  short = predictions.PredictionWriter(str(tmp_path / "short"), NUM_CLASSES, store_top_k=8)
  short.add(ids[shuffled][1:], dense["beta"][shuffled][1:])
  short.close()
  with pytest.raises(ValueError, match="alpha .*300 videos.* and .*short .*299 videos"):
    candidates.build_candidates(
      {"alpha": stores["alpha"], "short": str(tmp_path / "short")}, str(tmp_path / "c"), prior, labels
    )


def test_part_files_read_lazily_and_row_gap_part_by_part(tmp_path):
  _, labels, stores, _ = _fixture(tmp_path)
  prior = candidates.class_prior(labels, NUM_CLASSES)
  out = str(tmp_path / "cands")
  candidates.build_candidates(stores, out, prior, labels, chunk_videos=64, part_videos=100)
  rows = candidate_store.load_candidates(out)
  np.testing.assert_array_equal(np.concatenate(candidate_store.read_video_ids(out)), rows.ids)
  parts = list(candidate_store.read_candidates(out, features=["score_beta"]))
  assert len(parts) == 3 and all(list(p.features) == ["score_beta"] for p in parts)
  # GAP added part by part is the GAP of the whole set: same pairs, same order.
  gap = candidate_store.RowsGap()
  for part in parts:
    gap.add(part, part.features["score_beta"])
  assert gap.result() == candidate_store.rows_gap(rows, rows.features["score_beta"])


def test_training_videos_cap_is_a_fixed_subset_of_the_training_folds():
  ids = np.array([f"v{i:05d}".encode() for i in range(500)])
  in_training_folds = folds.fold_of(ids, 3) != 0
  capped = stacker.training_videos(ids, in_training_folds, stacker.StackerConfig(max_train_videos=100))
  assert capped.sum() == 100 and not np.any(capped & ~in_training_folds)
  # Chosen by id: the same videos whatever the other videos are.
  again = stacker.training_videos(
    ids[::-1], in_training_folds[::-1], stacker.StackerConfig(max_train_videos=100)
  )
  assert set(ids[capped]) == set(ids[::-1][again])
  uncapped = stacker.training_videos(ids, in_training_folds, stacker.StackerConfig(max_train_videos=1000))
  np.testing.assert_array_equal(uncapped, in_training_folds)


def test_the_ydf_trainer_grows_the_trees_of_tfdf_keras(tmp_path, monkeypatch):
  """local_trainer='ydf' (the default) against TF-DF's Keras model on one fold: the same trees (early
  stopping did stop) and scores; either sorting strategy; ydf reads each column once."""
  from yt8m_tf.stacking import ydf_local

  _, labels, stores, _ = _fixture(tmp_path, num_videos=360)
  train_dir = str(tmp_path / "train")
  candidates.build_candidates(
    stores, train_dir, candidates.class_prior(labels, NUM_CLASSES), labels, part_videos=100
  )
  ids = np.concatenate(candidate_store.read_video_ids(train_dir))
  names = candidate_store.read_index(train_dir)["features"]
  held_out = folds.fold_of(ids, 2) == 0
  small = dict(num_trees=60, shrinkage=0.5, max_depth=4, early_stopping_trees=8, inner_split=4)
  asked = []
  read_column = ydf_local._Columns.__getitem__
  monkeypatch.setattr(
    ydf_local._Columns, "__getitem__", lambda self, name: asked.append(name) or read_column(self, name)
  )
  results = {}
  for trainer, sorting in (("tfdf_keras", "PRESORT"), ("ydf", "IN_NODE"), ("ydf", "PRESORT")):
    config = stacker.StackerConfig(**small, local_trainer=trainer, sorting_strategy=sorting)
    fold_dir = str(tmp_path / f"{trainer}_{sorting}")
    model, info = stacker.train_fold(train_dir, ids, ~held_out, config, names, fold_dir)
    results[trainer, sorting] = info, stacker.predict_rows(model, train_dir, names, held_out)
  assert sorted(asked) == sorted([*names, ydf_local.LABEL] * 4)  # fit and inner rows, two trainings
  tfdf_info, tfdf_scores = results["tfdf_keras", "PRESORT"]
  assert 10 < tfdf_info["trees"] < small["num_trees"]  # it stopped early
  for key in (("ydf", "IN_NODE"), ("ydf", "PRESORT")):
    info, scores = results[key]
    assert (info["trees"], info["fit_rows"]) == (tfdf_info["trees"], tfdf_info["fit_rows"]), key
    np.testing.assert_allclose(scores, tfdf_scores, rtol=0, atol=1e-6, err_msg=str(key))


def test_soft_label_rows_of_parts_equal_the_general_store(monkeypatch):
  """The stacker's store assembly, part by part (ids out of order, a video without rows, a part whose rows
  are not grouped by video, blocks smaller than the set) against `SoftLabelStore.from_rows`."""
  rng = np.random.default_rng(3)
  monkeypatch.setattr(VideoGroupedStoreBuilder, "BLOCK_VIDEOS", 3)
  parts, rows = [], []
  for first, num_videos in ((0, 5), (5, 4)):
    ids = np.array([f"v{i:03d}".encode() for i in rng.permutation(100)[first : first + num_videos]])
    sizes = rng.integers(1, 6, num_videos)
    sizes[2] = 0  # a video without candidate rows: in the store, with an empty row
    classes = [np.sort(rng.choice(NUM_CLASSES, size, replace=False)) for size in sizes]
    row_video = np.repeat(np.arange(num_videos, dtype=np.int32), [len(c) for c in classes])
    class_id = np.concatenate(classes).astype(np.int32)
    scores = rng.random(len(class_id)).astype(np.float32)
    if first:  # rows in no order
      order = rng.permutation(len(class_id))
      row_video, class_id, scores = row_video[order], class_id[order], scores[order]
    parts.append(
      (
        candidate_store.CandidateChunk(ids, np.zeros(num_videos, np.int32), row_video, class_id, {}, None),
        scores,
      )
    )
    rows.append((ids[row_video], class_id, scores))
  built = VideoGroupedStoreBuilder(NUM_CLASSES)
  for part, scores in parts:
    built.add(part.ids, part.row_video, part.class_id, scores)
  store = built.build()
  ids, class_id, scores = (np.concatenate(r) for r in zip(*rows))
  all_ids = np.concatenate([part.ids for part, _ in parts])
  general = SoftLabelStore.from_rows(ids, class_id, scores, NUM_CLASSES, all_video_ids=all_ids)
  for field in ("ids", "row_splits", "classes", "scores"):
    np.testing.assert_array_equal(getattr(store, field), getattr(general, field), err_msg=field)
  assert len(store) == 9


def test_stacker_kfold_oof_probabilities_soft_labels_and_resume(tmp_path, capfd, monkeypatch):
  ids, labels, stores, _ = _fixture(tmp_path, num_videos=400)
  prior = candidates.class_prior(labels, NUM_CLASSES)
  train_dir, test_dir = str(tmp_path / "train"), str(tmp_path / "test")
  train_ids = ids[:300]
  test_stores = {}
  # Test candidates from the last 100 videos' predictions (a store of their own).
  for name, path in stores.items():
    chunks = list(predictions.read_predictions(path))
    writer = predictions.PredictionWriter(str(tmp_path / f"test_{name}"), NUM_CLASSES, store_top_k=8)
    for chunk in chunks:
      keep = ~np.isin(chunk.ids, train_ids)
      dense = chunk.dense(NUM_CLASSES)[keep]
      if keep.any():
        writer.add(chunk.ids[keep], dense)
    writer.close()
    test_stores[name] = str(tmp_path / f"test_{name}")
  train_labels = {v: labels[v] for v in train_ids}
  # Train candidates: the first 300 videos only.
  train_stores = {}
  for name, path in stores.items():
    writer = predictions.PredictionWriter(str(tmp_path / f"train_{name}"), NUM_CLASSES, store_top_k=8)
    for chunk in predictions.read_predictions(path):
      keep = np.isin(chunk.ids, train_ids)
      if keep.any():
        writer.add(chunk.ids[keep], chunk.dense(NUM_CLASSES)[keep])
    writer.close()
    train_stores[name] = str(tmp_path / f"train_{name}")
  # Several part files a set, so that the stacker's part-by-part reading crosses part boundaries.
  candidates.build_candidates(train_stores, train_dir, prior, train_labels, part_videos=70)
  candidates.build_candidates(test_stores, test_dir, prior, labels, part_videos=40)

  config = stacker.StackerConfig(
    num_trees=20, shrinkage=0.3, max_depth=3, early_stopping_trees=5, inner_split=4
  )
  out = str(tmp_path / "stacker")
  capfd.readouterr()
  with monkeypatch.context() as patch:  # the stacker reads part by part, never a whole set
    patch.setattr(candidate_store, "load_candidates", lambda *_: pytest.fail("a whole set was loaded"))
    report = stacker.run_stacking(
      train_dir,
      out,
      num_folds=2,
      num_classes=NUM_CLASSES,
      config=config,
      test_candidates=test_dir,
      log=lambda *_: None,
    )

  rows = candidate_store.load_candidates(train_dir)
  oof = np.load(os.path.join(out, "oof_scores.npy"))
  assert oof.shape == rows.class_id.shape and np.all((oof > 0) & (oof < 1))
  assert len(np.unique(oof)) > 10  # probabilities, not 0/1 decisions
  # Each fold's OOF scores come from the model that did not train on that fold.
  video_fold = folds.fold_of(rows.ids, 2)
  for k in range(2):
    info = json.load(open(os.path.join(out, f"fold_{k}", "info.json")))
    assert 1 <= info["trees"] <= 20
    trained = video_fold != k
    assert info["fit_videos"] + info["inner_videos"] == trained.sum()
    inner = stacker.inner_split_mask(rows.ids, config.inner_split)
    assert info["fit_rows"] == np.isin(rows.row_video, np.flatnonzero(trained & ~inner)).sum()
    # The converted ydf model's files are gone once the fold's model is saved.
    assert sorted(os.listdir(os.path.join(out, f"fold_{k}"))) == [
      "info.json",
      "model",
      "scores.npz",
      stacker.TRAINING_LOG,
    ]
    held_out = rows.select_videos(video_fold == k)
    assert info["oof_gap"] == pytest.approx(
      candidate_store.rows_gap(held_out, oof[video_fold[rows.row_video] == k])
    )
  # Each fold model's files have their own names: one SavedModel (the large-ensemble export) holds them all.
  assets = [set(os.listdir(os.path.join(out, f"fold_{k}", "model", "assets"))) for k in range(2)]
  assert assets[0] and not assets[0] & assets[1]
  # YDF's training log (C++ and Python) went to each fold's file, not to the console.
  console = "".join(capfd.readouterr())
  for k in range(2):
    with open(os.path.join(out, f"fold_{k}", stacker.TRAINING_LOG)) as f:
      assert "Training gradient boosted tree on" in f.read()
  assert "Training gradient boosted tree" not in console and "kernel.cc" not in console
  # The stacker beats noise and is reported next to the L1 models.
  assert report["oof"]["stacker"] > 0.5
  assert set(report["oof"]) == {"stacker", "l1/alpha", "l1/beta", "l1_mean"}
  assert "test" in report and report["test"]["stacker"] > 0.5
  test_scores = np.load(os.path.join(out, "test_scores.npy"))
  assert test_scores.shape == candidate_store.load_candidates(test_dir).class_id.shape

  store = SoftLabelStore.load(os.path.join(out, "soft_labels.npz"))
  assert len(store) == len(train_ids)
  # The stacker's own assembly of the store (rows grouped by video) equals the general one.
  general = SoftLabelStore.from_rows(
    rows.ids[rows.row_video], rows.class_id, oof, NUM_CLASSES, all_video_ids=rows.ids
  )
  for field in ("ids", "row_splits", "classes", "scores"):
    np.testing.assert_array_equal(getattr(store, field), getattr(general, field), err_msg=field)
  dense = store.lookup(rows.ids)
  np.testing.assert_allclose(dense[rows.row_video, rows.class_id], oof, rtol=1e-6)
  assert np.count_nonzero(dense) == np.count_nonzero(oof)

  # Resume: a finished run returns its report without training; a lost report re-reads the folds.
  os.remove(os.path.join(out, "report.json"))
  again = stacker.run_stacking(
    train_dir,
    out,
    num_folds=2,
    num_classes=NUM_CLASSES,
    config=config,
    test_candidates=test_dir,
    log=lambda *_: None,
  )
  assert again["oof"] == report["oof"]


def test_by_size_sorting_presorts_small_folds_only():
  """The default sorting: presorted (fast) up to PRESORT_MAX_ROWS training rows, sorted in each node (less
  memory) above; unknown sizes (the TF-DF Keras path) presort as TF-DF always did; set values stand."""
  config = stacker.StackerConfig()
  assert config.sorting_strategy == "BY_SIZE"
  assert stacker.sorting_strategy(config, stacker.PRESORT_MAX_ROWS) == "PRESORT"
  assert stacker.sorting_strategy(config, stacker.PRESORT_MAX_ROWS + 1) == "IN_NODE"
  assert stacker.sorting_strategy(config, None) == "PRESORT"
  in_node = stacker.StackerConfig(sorting_strategy="IN_NODE")
  assert stacker.sorting_strategy(in_node, 10) == "IN_NODE"
  with pytest.raises(ValueError, match="sorting_strategy"):
    stacker.StackerConfig(sorting_strategy="AUTO")
