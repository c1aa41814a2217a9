"""Seed architectures: encoders, fusion, heads and SeedModel on tiny random configs (CPU, no hub)."""

from __future__ import annotations

import copy

import pytest
import torch

from emofusion.models.seed import (
    FUSIONS,
    R3D18,
    EncoderOutput,
    ResNet18,
    SeedModel,
    build_encoder,
    modality_dropout,
    multitask_loss,
)



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread on a busy machine; restored for other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# transformers' WavLM attention mixes a bool padding mask with a float position bias
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning")

AUDIO_HF = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3], num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, feat_extract_norm="layer", mask_time_prob=0.0, layerdrop=0.0)
TINY = {
    "r3d18": {"type": "r3d18", "config": {"width": 4}},
    "resnet18_frames": {"type": "resnet18_frames", "config": {"width": 4, "temporal_pool": "attention"}, "proj_dim": 16},
    "videomae": {"type": "videomae", "config": dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                                    hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=32)},
    "mel_cnn": {"type": "mel_cnn", "config": {"channels": [4, 8], "dim": 16, "mel": {"n_mels": 16}}},
    "hubert": {"type": "hubert", "config": AUDIO_HF},
    "wav2vec2": {"type": "wav2vec2", "config": AUDIO_HF, "proj_dim": 8},
    "wavlm": {"type": "wavlm", "config": {**AUDIO_HF, "num_buckets": 8, "max_bucket_distance": 20}},
    "bert": {"type": "bert", "config": dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=32, max_position_embeddings=32), "proj_dim": 8},
    "minilm": {"type": "minilm", "config": dict(vocab_size=50, hidden_size=12, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=24, max_position_embeddings=32)},
}
MODALITY = {"r3d18": "video", "resnet18_frames": "video", "videomae": "video", "mel_cnn": "audio",
            "hubert": "audio", "wav2vec2": "audio", "wavlm": "audio", "bert": "text", "minilm": "text"}
DEFAULTS = {"video": "r3d18", "audio": "mel_cnn", "text": "bert"}
FUSION_CFG = {
    "late": {"type": "late", "learned_weights": True},
    "concat": {"type": "concat", "dim": 16},
    "gated": {"type": "gated", "dim": 16},
    "xattn": {"type": "xattn", "dim": 16, "heads": 2},
}


def make_inputs(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    audio_len = torch.tensor([1600, 1100, 1400][:b])
    audio = torch.randn(b, 1600, generator=g) * 0.1
    ids = torch.randint(5, 50, (b, 6), generator=g)
    attn = torch.ones(b, 6, dtype=torch.long)
    attn[1:, 4:] = 0
    ids[attn == 0] = 0
    return {
        "video": {"video": torch.randn(b, 3, 4, 32, 32, generator=g)},
        "audio": {"audio": audio, "lengths": audio_len},
        "text": {"input_ids": ids, "attention_mask": attn},
    }


def make_config(fusion: str, encoders: dict[str, str] | None = None, modalities=("video", "audio", "text")) -> dict:
    chosen = {**DEFAULTS, **(encoders or {})}
    return {
        "encoders": {m: copy.deepcopy(TINY[chosen[m]]) for m in modalities},
        "fusion": {**FUSION_CFG[fusion], "modality_dropout": 0.3},
        "heads": {"emotion": 7, "sentiment": 3},
        "loss_weights": {"emotion": 1.0, "sentiment": 0.5},
    }


# ------------------------------------------------------------------ torchvision key tables

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WIDTHS = [64, 128, 256, 512]


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in _BN}


def torchvision_r3d18_table() -> dict[str, tuple]:
    """torchvision.models.video.r3d_18().state_dict(): names -> shapes, written out by hand."""
    t = {"stem.0.weight": (64, 3, 3, 7, 7), **_bn("stem.1", 64)}
    cin = 64
    for li, c in enumerate(_WIDTHS, start=1):
        for bi in range(2):
            p = f"layer{li}.{bi}"
            t[f"{p}.conv1.0.weight"] = (c, cin, 3, 3, 3)
            t.update(_bn(f"{p}.conv1.1", c))
            t[f"{p}.conv2.0.weight"] = (c, c, 3, 3, 3)
            t.update(_bn(f"{p}.conv2.1", c))
            if li > 1 and bi == 0:
                t[f"{p}.downsample.0.weight"] = (c, cin, 1, 1, 1)
                t.update(_bn(f"{p}.downsample.1", c))
            cin = c
    t["fc.weight"] = (400, 512)
    t["fc.bias"] = (400,)
    return t


def torchvision_resnet18_table() -> dict[str, tuple]:
    """torchvision.models.resnet18().state_dict(): names -> shapes, written out by hand."""
    t = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    cin = 64
    for li, c in enumerate(_WIDTHS, start=1):
        for bi in range(2):
            p = f"layer{li}.{bi}"
            t[f"{p}.conv1.weight"] = (c, cin, 3, 3)
            t.update(_bn(f"{p}.bn1", c))
            t[f"{p}.conv2.weight"] = (c, c, 3, 3)
            t.update(_bn(f"{p}.bn2", c))
            if li > 1 and bi == 0:
                t[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                t.update(_bn(f"{p}.downsample.1", c))
            cin = c
    t["fc.weight"] = (1000, 512)
    t["fc.bias"] = (1000,)
    return t


def state_from_table(table: dict[str, tuple]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, shape in table.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


def test_r3d18_table_matches_torchvision_param_count():
    # torchvision documents r3d_18 as 33,371,472 parameters and resnet18 as 11,689,512
    def n_params(table):
        return sum(int(torch.Size(s).numel()) for k, s in table.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))

    assert n_params(torchvision_r3d18_table()) == 33_371_472
    assert n_params(torchvision_resnet18_table()) == 11_689_512


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_r3d18_loads_torchvision_state_strictly(tmp_path, suffix):
    state = state_from_table(torchvision_r3d18_table())
    model = R3D18()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == torchvision_r3d18_table()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    path = tmp_path / f"r3d_18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file(state, str(path))
    loaded = R3D18.from_pretrained(path)
    assert torch.equal(loaded.stem[0].weight, state["stem.0.weight"])
    assert torch.equal(loaded.layer4[0].downsample[1].running_var, state["layer4.0.downsample.1.running_var"])

    enc = build_encoder({"type": "r3d18", "pretrained": str(path)}).eval()
    assert torch.equal(enc.backbone.layer3[1].conv2[0].weight, state["layer3.1.conv2.0.weight"])
    assert "backbone.fc.weight" not in enc.state_dict()  # fc dropped: 512-d feature out
    with torch.no_grad():
        out = enc({"video": torch.randn(1, 3, 4, 32, 32)})
    assert enc.out_dim == 512
    assert out.pooled.shape == (1, 512)
    assert out.sequence.shape == (1, 1, 512) and out.mask.all()
    with torch.no_grad():  # classifier path of the torchvision layout
        assert loaded.eval()(torch.randn(1, 3, 4, 32, 32)).shape == (1, 400)


def test_r3d18_sequence_keeps_time():
    enc = build_encoder({"type": "r3d18", "config": {"width": 4}}).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 16, 32, 32))
    assert out.sequence.shape == (2, 2, 32)  # 16 frames / 8
    torch.testing.assert_close(out.pooled, out.sequence.mean(1))


def test_resnet18_loads_torchvision_state_strictly(tmp_path):
    state = state_from_table(torchvision_resnet18_table())
    model = ResNet18()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == torchvision_resnet18_table()
    torch.save(state, tmp_path / "resnet18.pth")
    enc = build_encoder({"type": "resnet18_frames", "pretrained": str(tmp_path / "resnet18.pth")})
    assert torch.equal(enc.backbone.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    assert enc.out_dim == 512


def test_unknown_keys_in_checkpoint_fail(tmp_path):
    state = state_from_table(torchvision_r3d18_table())
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        R3D18.from_pretrained(tmp_path / "bad.pth")


# ------------------------------------------------------------------ every encoder x every fusion


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("encoder", sorted(TINY))
def test_encoder_fusion_combination(tmp_path, encoder, fusion):
    torch.manual_seed(0)
    model = SeedModel(make_config(fusion, {MODALITY[encoder]: encoder}))
    batch = make_inputs()
    model.train()
    out = model(batch, generator=torch.Generator().manual_seed(0))
    assert out.logits["emotion"].shape == (2, 7) and out.logits["sentiment"].shape == (2, 3)
    loss, parts = model.loss(out, {"emotion": torch.tensor([1, 4]), "sentiment": torch.tensor([0, -100])})
    loss.backward()
    assert set(parts) == {"emotion", "sentiment"} and torch.isfinite(loss)
    enc = model.encoders[MODALITY[encoder]]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.backbone.parameters())

    model.eval()
    with torch.no_grad():
        ref = model(batch)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "model.safetensors").is_file()
    again = SeedModel.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        got = again(batch)
    for t in ref.logits:
        torch.testing.assert_close(got.logits[t], ref.logits[t], rtol=0, atol=1e-6)


def test_two_modalities(tmp_path):
    for fusion in sorted(FUSIONS):
        model = SeedModel(make_config(fusion, modalities=("video", "audio"))).eval()
        batch = make_inputs()
        del batch["text"]
        with torch.no_grad():
            assert model(batch).logits["emotion"].shape == (2, 7)
    for fusion in ("late", "concat", "gated"):  # one modality: a single-modality baseline, same code
        single = SeedModel(make_config(fusion, modalities=("video",))).eval()
        with torch.no_grad():
            assert single({"video": make_inputs()["video"]}).logits["emotion"].shape == (2, 7)


# ------------------------------------------------------------------ missing modalities


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_missing_modality_at_inference(fusion):
    torch.manual_seed(0)
    model = SeedModel(make_config(fusion)).eval()
    full = make_inputs()
    with torch.no_grad():
        ref = model(full)
        for drop in (("audio",), ("video",), ("text",), ("video", "audio"), ("audio", "text")):
            batch = {m: (None if m in drop else v) for m, v in full.items()}
            out = model(batch)
            assert out.present.sum(1).tolist() == [3 - len(drop)] * 2
            for t, lg in out.logits.items():
                assert lg.shape == ref.logits[t].shape and torch.isfinite(lg).all()
            assert not torch.allclose(out.logits["emotion"], ref.logits["emotion"])
        # an absent key behaves like None
        only_text = model({"text": full["text"]})
        torch.testing.assert_close(only_text.logits["emotion"], model({"text": full["text"], "video": None}).logits["emotion"])
        with pytest.raises(ValueError, match="no modality"):
            model({"video": None})


def test_late_fusion_averages_present_modalities():
    torch.manual_seed(0)
    model = SeedModel(make_config("late")).eval()
    with torch.no_grad():
        model.fusion.weight_logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
        batch = make_inputs()
        batch["audio"] = None
        out = model(batch)
        per = {m: model.fusion.heads[m]["emotion"](model.encoders[m](batch[m]).pooled) for m in ("video", "text")}
        w = torch.softmax(torch.tensor([0.3, 2.0]), 0)
        torch.testing.assert_close(out.logits["emotion"], w[0] * per["video"] + w[1] * per["text"])
        # uniform weights: plain average over the present ones
        model.fusion.weight_logits.zero_()
        out = model(batch)
        torch.testing.assert_close(out.logits["emotion"], (per["video"] + per["text"]) / 2)


def test_dropped_modality_is_not_zeros():
    """A dropped item's output matches the same item with the modality absent."""
    for fusion in sorted(FUSIONS):
        torch.manual_seed(0)
        model = SeedModel(make_config(fusion)).eval()
        full = make_inputs()
        with torch.no_grad():
            outputs = {m: model.encoders[m](full[m]) for m in model.modalities}
            present = torch.tensor([[True, False, True], [True, True, True]])
            fused = model.fusion(outputs, present)
            alone = model.fusion({**outputs, "audio": None}, torch.tensor([[True, False, True]] * 2))
            if isinstance(fused, dict):
                fused, alone = fused["emotion"], alone["emotion"]
            torch.testing.assert_close(fused[0], alone[0], rtol=0, atol=1e-5)


def test_modality_dropout_never_drops_all():
    g = torch.Generator().manual_seed(0)
    present = torch.ones(2000, 3, dtype=torch.bool)
    present[:500, 1] = False
    present[500:600, :2] = False
    for p in (0.3, 0.9, 1.0):
        out = modality_dropout(present, p, g)
        assert out.any(1).all()
        assert not (out & ~present).any()  # never adds a modality an item lacks
    assert (modality_dropout(present, 1.0, g).sum(1) == 1).all()
    assert modality_dropout(present, 0.5, g).sum() < present.sum()
    # inside the model: training drops, eval does not
    model = SeedModel(make_config("gated")).train()
    model.modality_dropout_p = 0.9
    out = model(make_inputs(3), generator=g)
    assert out.present.any(1).all()
    assert model.eval()(make_inputs(3)).present.all()


# ------------------------------------------------------------------ masked pooling


@pytest.mark.parametrize("encoder", ["mel_cnn", "hubert", "wav2vec2", "wavlm"])
def test_audio_pooling_ignores_padding(encoder):
    torch.manual_seed(0)
    enc = build_encoder(TINY[encoder]).eval()
    g = torch.Generator().manual_seed(3)
    short = torch.randn(900, generator=g) * 0.1
    long = torch.randn(1600, generator=g) * 0.1
    batch = torch.zeros(2, 1600)
    batch[0, :900] = short
    batch[0, 900:] = 5.0  # garbage in the padding must not matter
    batch[1] = long
    with torch.no_grad():
        out = enc({"audio": batch, "lengths": torch.tensor([900, 1600])})
        alone = enc({"audio": short[None]})
    n = int(out.mask[0].sum())
    assert n == alone.sequence.shape[1] and out.mask[1].all()
    if encoder != "mel_cnn":
        assert n == int(enc.backbone._get_feat_extract_output_lengths(torch.tensor(900)))
    torch.testing.assert_close(out.pooled[0], alone.pooled[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.sequence[0, :n], alone.sequence[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ["bert", "minilm"])
def test_text_pooling_ignores_padding(encoder):
    enc = build_encoder(TINY[encoder]).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0], [2, 5, 6, 7, 8, 9, 3]])
    attn = (torch.arange(7)[None] < torch.tensor([[5], [7]])).long()
    with torch.no_grad():
        out = enc({"input_ids": ids, "attention_mask": attn})
        alone = enc({"input_ids": ids[:1, :5], "attention_mask": attn[:1, :5]})
    assert out.pooled.shape == (2, enc.out_dim)
    torch.testing.assert_close(out.pooled[0], alone.pooled[0], rtol=1e-4, atol=1e-5)


def test_frame_pooling_ignores_padded_frames():
    enc = build_encoder(TINY["resnet18_frames"]).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = enc({"video": video, "lengths": torch.tensor([2, 4])})
        alone = enc({"video": video[:1, :, :2]})
    assert out.sequence.shape == (2, 4, 16)
    torch.testing.assert_close(out.pooled[0], alone.pooled[0], rtol=1e-4, atol=1e-5)


def test_xattn_respects_audio_padding():
    torch.manual_seed(0)
    model = SeedModel(make_config("xattn", {"audio": "hubert"})).eval()
    full = make_inputs()
    with torch.no_grad():
        out = model(full)
        one = {m: {k: v[1:2] for k, v in d.items()} for m, d in full.items()}
        n = int(full["audio"]["lengths"][1])
        one["audio"] = {"audio": full["audio"]["audio"][1:2, :n]}
        one["text"] = {k: v[1:2, :4] for k, v in full["text"].items()}
        alone = model(one)
    torch.testing.assert_close(out.logits["emotion"][1], alone.logits["emotion"][0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ freezing, heads, config


def test_freeze_and_unfreeze_after():
    enc = build_encoder({**TINY["bert"], "unfreeze_after": 2})
    enc.train()
    assert enc.frozen and not enc.backbone.training and enc.training
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())
    enc.set_epoch(1)
    assert enc.frozen
    enc.set_epoch(2)
    assert not enc.frozen and enc.backbone.training
    assert all(p.requires_grad for p in enc.backbone.parameters())
    frozen = build_encoder({**TINY["mel_cnn"], "freeze": True})
    frozen.set_epoch(10)
    assert frozen.frozen
    model = SeedModel({**make_config("concat"), "encoders": {
        "video": TINY["r3d18"], "audio": {**TINY["mel_cnn"], "unfreeze_after": 1}, "text": TINY["bert"]}})
    model.set_epoch(0)
    assert model.encoders["audio"].frozen and not model.encoders["video"].frozen
    model.set_epoch(1)
    assert not model.encoders["audio"].frozen


def test_freeze_bn_keeps_running_statistics_while_weights_train():
    enc = build_encoder({**TINY["mel_cnn"], "freeze_bn": True})
    bns = [m for m in enc.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    for call in (lambda: enc.train(), lambda: enc.set_epoch(3)):
        call()
        assert enc.training and enc.backbone.training and not any(bn.training for bn in bns)
    stats = [bn.running_mean.clone() for bn in bns]
    out = enc({"audio": torch.randn(3, 1600), "lengths": torch.tensor([1600, 1200, 800])})
    out.pooled.sum().backward()
    assert all(torch.equal(bn.running_mean, s) for bn, s in zip(bns, stats))
    assert all(bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0 for bn in bns)
    assert enc.export_config()["freeze_bn"] is True
    plain = build_encoder(TINY["mel_cnn"]).train()
    assert all(m.training for m in plain.backbone.modules())


def test_multitask_loss_weights_and_ignore():
    logits = {"emotion": torch.randn(4, 7, requires_grad=True), "sentiment": torch.randn(4, 3)}
    tgt = {"emotion": torch.tensor([0, 1, 2, 3]), "sentiment": torch.full((4,), -100)}
    total, parts = multitask_loss(logits, tgt, {"emotion": 2.0})
    torch.testing.assert_close(total, 2.0 * torch.nn.functional.cross_entropy(logits["emotion"], tgt["emotion"]))
    assert parts["sentiment"] == 0
    total.backward()
    with pytest.raises(ValueError):
        multitask_loss(logits, {})


def test_config_errors():
    with pytest.raises(ValueError, match="unknown encoder type"):
        build_encoder({"type": "nope"})
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        build_encoder({"type": "mel_cnn", "bogus": 1})
    with pytest.raises(ValueError, match="sentiment head has 3"):
        SeedModel({**make_config("concat"), "heads": {"sentiment": 5}})
    with pytest.raises(ValueError, match="xattn needs"):
        SeedModel(make_config("xattn", modalities=("video", "text")))
    with pytest.raises(ValueError, match="unknown fusion"):
        SeedModel({**make_config("concat"), "fusion": {"type": "nope"}})


def test_text_encoder_from_folder_keeps_tokenizer(tmp_path, tiny_encoder_dir):
    cfg = make_config("gated")
    cfg["encoders"]["text"] = {"type": "bert", "pretrained": str(tiny_encoder_dir), "proj_dim": 8}
    model = SeedModel(cfg).eval()
    text = model.encoders["text"].tokenize(["i am so happy today", "sad"])
    batch = {**make_inputs(), "text": text}
    with torch.no_grad():
        ref = model(batch)
    model.save_pretrained(tmp_path / "m")
    again = SeedModel.from_pretrained(tmp_path / "m")
    saved = again.config["encoders"]["text"]
    assert saved["pretrained"] is None and saved["pretrained_from"] == str(tiny_encoder_dir)
    assert again.encoders["text"].tokenize(["i am so happy today", "sad"])["input_ids"].tolist() == text["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(again(batch).logits["emotion"], ref.logits["emotion"], rtol=0, atol=1e-6)


def test_encoder_output_contract():
    for name, cfg in TINY.items():
        enc = build_encoder(cfg).eval()
        with torch.no_grad():
            out = enc(make_inputs()[MODALITY[name]])
        assert isinstance(out, EncoderOutput)
        assert out.pooled.shape == (2, enc.out_dim), name
        assert out.sequence.shape[0] == 2 and out.sequence.shape[2] == enc.out_dim, name
        assert out.mask.shape == out.sequence.shape[:2] and out.mask.dtype == torch.bool, name
