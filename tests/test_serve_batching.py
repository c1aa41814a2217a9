"""Micro-batching: concurrent analyses share model calls and get exactly their own results."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from serve_support import clip_bytes

from emofusion.serve.batching import tensor_batcher, text_batcher
from emofusion.serve.engine import Engine


def run_concurrently(fn, args_list):
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(args_list))

    def one(i, args):
        barrier.wait()
        try:
            results[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(len(args_list))]


def test_rows_from_concurrent_callers_share_calls_and_come_back_to_their_caller():
    seen_batches: list[int] = []

    def double(x: torch.Tensor) -> np.ndarray:
        seen_batches.append(len(x))
        return (x * 2).numpy()

    batcher = tensor_batcher(double, max_batch=64, max_wait=0.2)
    inputs = [torch.full((k + 1, 3), float(k)) for k in range(8)]
    outs = run_concurrently(batcher, [(x,) for x in inputs])
    for x, out in zip(inputs, outs):
        np.testing.assert_array_equal(out, (x * 2).numpy())
    assert batcher.calls < 8 and sum(seen_batches) == sum(len(x) for x in inputs)
    assert max(seen_batches) <= 64


def test_shapes_are_never_mixed_and_max_batch_holds():
    shapes: list[tuple] = []

    def record(x: torch.Tensor) -> np.ndarray:
        shapes.append(tuple(x.shape))
        return x.sum(dim=(1, 2)).numpy()

    batcher = tensor_batcher(record, max_batch=5, max_wait=0.2)
    inputs = [torch.ones(2, 4, 10 + 5 * (k % 2)) * k for k in range(8)]
    outs = run_concurrently(batcher, [(x,) for x in inputs])
    for x, out in zip(inputs, outs):
        np.testing.assert_allclose(out, x.sum(dim=(1, 2)).numpy())
    assert all(s[0] <= 5 for s in shapes) and {s[1:] for s in shapes} == {(4, 10), (4, 15)}


def test_an_error_reaches_every_caller_of_that_call_and_the_batcher_lives_on():
    fail = [True]

    def maybe_fail(x: torch.Tensor) -> np.ndarray:
        if fail[0]:
            raise RuntimeError("boom")
        return x.numpy()

    batcher = tensor_batcher(maybe_fail, max_wait=0.1)
    outs = run_concurrently(batcher, [(torch.ones(1, 2),) for _ in range(3)])
    assert all(isinstance(o, RuntimeError) for o in outs)
    fail[0] = False
    np.testing.assert_array_equal(batcher(torch.ones(1, 2)), np.ones((1, 2), dtype=np.float32))


def test_text_batcher_keeps_contexts_with_their_texts():
    calls: list[tuple[list[str], list[str]]] = []

    def fake_text(texts, contexts):
        calls.append((texts, contexts))
        emo = np.array([[len(t), len(c)] for t, c in zip(texts, contexts)], dtype=np.float32)
        return emo, emo * 10

    batcher = text_batcher(fake_text, max_wait=0.2)
    outs = run_concurrently(batcher, [((["a", "bb"], ["", "ccc"]),), ((["dddd"], None),)])
    np.testing.assert_array_equal(outs[0][0], [[1, 0], [2, 3]])
    np.testing.assert_array_equal(outs[1][0], [[4, 0]])
    np.testing.assert_array_equal(outs[1][1], [[40, 0]])
    assert len(calls) == 1 and sorted(zip(*calls[0])) == [("a", ""), ("bb", "ccc"), ("dddd", "")]


def test_batched_engine_gives_the_unbatched_results(tiny_model_dir, tmp_path):
    clips = []
    for k in range(4):
        path = tmp_path / f"c{k}.mp4"
        path.write_bytes(clip_bytes(tmp_path, f"src{k}.mp4", duration=2.0 + k, tone_hz=180.0 + 40 * k))
        clips.append(str(path))
    plain = Engine(tiny_model_dir, batch_wait=0)
    assert plain.batched is None
    expected = [plain.analyze(c, text="i am so happy") for c in clips]
    batched = Engine(tiny_model_dir, batch_wait=0.2)
    got = run_concurrently(lambda c: batched.analyze(c, text="i am so happy"), [(c,) for c in clips])
    for e, g in zip(expected, got):
        assert not isinstance(g, Exception), g
        assert len(e["segments"]) == len(g["segments"])
        for se, sg in zip(e["segments"], g["segments"]):
            for part in ("face", "voice", "text", "fused"):
                assert (se[part] is None) == (sg[part] is None)
                if se[part] is not None:
                    np.testing.assert_allclose(list(sg[part]["probs"].values()), list(se[part]["probs"].values()),
                                               atol=1e-5)
    calls = {name: b.calls for name, b in batched.batchers_calls().items()}
    assert calls["face"] < 4 and calls["voice"] < 4, calls


@pytest.mark.parametrize("wait_ms,expect_batched", [(0, False), (5, True)])
def test_settings_switch_micro_batching(wait_ms, expect_batched, tiny_model_dir, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from serve_support import make_settings

    from emofusion.serve.app import create_app

    settings = replace(make_settings(tmp_path, tiny_model_dir), batch_wait_ms=wait_ms)
    with TestClient(create_app(settings, start_jobs=False)) as client:
        assert (client.app.state.services.engine.batched is not None) == expect_batched


def test_a_closed_batcher_serves_its_queue_then_runs_callers_alone():
    batcher = tensor_batcher(lambda x: x.numpy() * 2, max_batch=64, max_wait=0.05)
    results = run_concurrently(lambda v: batcher(torch.full((1, 2), float(v))), [(v,) for v in range(6)])
    batcher.close()
    batcher._thread.join(timeout=5)
    assert not batcher._thread.is_alive()  # the thread ends: a swapped-out model is not kept alive by it
    assert [r[0, 0] for r in results] == [2.0 * v for v in range(6)]
    calls = batcher.calls
    late = batcher(torch.ones((3, 2)))  # an analysis still on the old model finishes, unbatched
    assert late.shape == (3, 2) and float(late[0, 0]) == 2.0 and batcher.calls == calls


def test_swapping_a_batched_engine_ends_the_old_batchers(tiny_model_dir, tmp_path):
    from conftest import save_tiny_model

    engine = Engine(tiny_model_dir, batch_wait=0.01)
    old = engine.batched
    clip = tmp_path / "c.mp4"
    clip.write_bytes(clip_bytes(tmp_path, "src.mp4", duration=2.0))
    before = engine.analyze(str(clip))
    engine.swap(save_tiny_model(tmp_path / "other", seed=1, text=None))
    assert engine.generation == 1 and engine.batched is not old and engine.model.text is None
    for batcher in old.batchers.values():
        batcher._thread.join(timeout=5)
        assert not batcher._thread.is_alive()
    after = engine.analyze(str(clip))  # this thread's Analyzers are rebuilt for the new model
    assert after["segments"][0]["face"]["probs"] != before["segments"][0]["face"]["probs"]
