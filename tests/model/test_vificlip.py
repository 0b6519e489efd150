"""The ViFi-CLIP model itself: equations, variants (SPEC §1.4), text trimming and the text-feature cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vificlip.errors import VificlipError
from vificlip.model import ClassListError, ViFiCLIP, arch_by_name
from vificlip.model.text import tokenize
from vificlip.model.variants import default_template

CLASSES = ["dancing", "playing guitar on a very long stage under the lights", "swimming"]


@pytest.mark.parametrize(
    "variant, expected", [("vifi", 124_323_841), ("image", 86_192_640), ("text", 38_131_200), ("zeroshot", 0)]
)
def test_trainable_parameter_counts_vit_b16(variant: str, expected: int) -> None:
    # SPEC §1.4: 124.32 M / 86.19 M / 38.13 M / 0 for ViT-B/16; the token embedding (25.30 M) never trains.
    model = ViFiCLIP.from_arch(arch_by_name("ViT-B/16"), variant=variant)
    assert model.num_trainable_parameters() == expected
    assert not model.clip.token_embedding.weight.requires_grad
    assert model.clip.logit_scale.requires_grad == (variant == "vifi")


def test_default_templates() -> None:
    assert default_template("vifi") == "a photo of a {}."
    assert default_template("zeroshot") == "{}"


def test_video_of_identical_frames_has_the_image_embedding(tiny_model: ViFiCLIP) -> None:
    image = torch.randn(1, 3, 32, 32)
    video = image.unsqueeze(1).expand(1, 5, 3, 32, 32)
    torch.testing.assert_close(
        tiny_model.encode_video(video), tiny_model.encode_frames(image), atol=1e-5, rtol=0
    )


def test_video_embedding_is_the_mean_of_frame_embeddings(tiny_model: ViFiCLIP) -> None:
    video = torch.randn(2, 4, 3, 32, 32)
    frames = tiny_model.encode_frames(video.flatten(0, 1)).view(2, 4, -1)
    torch.testing.assert_close(tiny_model.encode_video(video), frames.mean(1), atol=1e-5, rtol=0)


def test_logits_are_scaled_cosine(tiny_model: ViFiCLIP) -> None:
    video = torch.randn(2, 3, 3, 32, 32)
    logits = tiny_model(video, CLASSES)
    v = F.normalize(tiny_model.encode_video(video), dim=-1)
    t = F.normalize(tiny_model.encode_text(CLASSES), dim=-1)
    expected = tiny_model.clip.logit_scale.exp() * v @ t.T
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_encoders_match_open_clip(tiny_model: ViFiCLIP) -> None:
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(
        tiny_model.encode_frames(images), tiny_model.clip.encode_image(images), atol=1e-5, rtol=0
    )
    tokens = tokenize(tiny_model.prompt_texts(CLASSES), 77)
    torch.testing.assert_close(
        tiny_model.encode_text(CLASSES), tiny_model.clip.encode_text(tokens), atol=1e-5, rtol=0
    )


def test_trimmed_context_equals_full_77_tokens(tiny_model: ViFiCLIP) -> None:
    tokens = tokenize(tiny_model.prompt_texts(CLASSES), 77)
    assert int(tokens.argmax(-1).max()) + 1 < 77  # the test really trims
    with torch.no_grad():
        trimmed = tiny_model._text_features(tokens)
        # Same computation with the trim disabled: append a row whose EOT sits at the last position.
        long_row = torch.zeros(1, 77, dtype=torch.long)
        long_row[0, 0], long_row[0, 1:76], long_row[0, 76] = 49406, 320, 49407
        full = tiny_model._text_features(torch.cat([tokens, long_row]))[:-1]
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=0)


def test_template_and_underscores(tiny_arch) -> None:
    model = ViFiCLIP.from_arch(tiny_arch, template="a video of {}", replace_underscores=True)
    assert model.prompt_texts(["playing_guitar"]) == ["a video of playing guitar"]
    verbatim = ViFiCLIP.from_arch(tiny_arch)
    assert verbatim.prompt_texts(["playing_guitar"]) == ["a photo of a playing_guitar."]
    assert ViFiCLIP.from_arch(tiny_arch, variant="zeroshot").prompt_texts(["x y"]) == ["x y"]


@pytest.mark.parametrize(
    "names, message",
    [([], "empty"), (["a", "b", "a"], "duplicate"), (["a", " "], "empty"), (["word " * 80], "tokens long")],
)
def test_bad_class_lists(tiny_model: ViFiCLIP, names, message: str) -> None:
    with pytest.raises(ClassListError, match=message):
        tiny_model.encode_text(names)


def test_bad_video_shape(tiny_model: ViFiCLIP) -> None:
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        tiny_model.encode_video(torch.randn(4, 3, 32, 32))


def test_unknown_variant(tiny_arch) -> None:
    with pytest.raises(VificlipError, match="unknown variant"):
        ViFiCLIP.from_arch(tiny_arch, variant="both")


# ---- the text-feature cache -------------------------------------------------------------------------------
def test_cache_reused_while_text_frozen(tiny_arch) -> None:
    model = ViFiCLIP.from_arch(tiny_arch, variant="image").train()
    first = model.encode_text(CLASSES)
    assert model.encode_text(CLASSES) is first  # cached even in training: the text tower is frozen
    assert not first.requires_grad


def test_cache_never_used_when_text_trains(tiny_model: ViFiCLIP) -> None:
    tiny_model.train()
    features = tiny_model.encode_text(CLASSES)
    assert features.requires_grad  # gradients reach the text tower
    assert tiny_model.encode_text(CLASSES) is not features


def test_cache_invalidated_by_class_list_and_template(tiny_arch) -> None:
    model = ViFiCLIP.from_arch(tiny_arch).eval()
    with torch.no_grad():
        base = model.encode_text(CLASSES)
        other = model.encode_text(CLASSES[:2])
        assert other.shape[0] == 2
        model.template = "a video of {}"
        changed = model.encode_text(CLASSES)
    assert not torch.allclose(base, changed)


def test_cache_invalidated_by_weight_updates(tiny_model: ViFiCLIP) -> None:
    tiny_model.eval()
    with torch.no_grad():
        before = tiny_model.encode_text(CLASSES).clone()
    # An optimiser step on the text tower (in-place update) must invalidate the cache.
    tiny_model.train()
    optimizer = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=1.0)
    loss = tiny_model(torch.randn(2, 2, 3, 32, 32), CLASSES).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    tiny_model.eval()
    with torch.no_grad():
        after_step = tiny_model.encode_text(CLASSES)
        expected = tiny_model._text_features(tokenize(tiny_model.prompt_texts(CLASSES), 77))
    assert not torch.allclose(before, after_step)
    torch.testing.assert_close(after_step, expected, atol=1e-6, rtol=0)
    # load_state_dict copies in place: the cache must follow the new weights too.
    fresh = ViFiCLIP.from_arch(tiny_model.arch)
    tiny_model.load_state_dict(fresh.state_dict())
    with torch.no_grad():
        fresh.eval()
        torch.testing.assert_close(
            tiny_model.encode_text(CLASSES), fresh.encode_text(CLASSES), atol=1e-6, rtol=0
        )


def test_cached_features_from_inference_mode_usable_in_training(tiny_arch) -> None:
    model = ViFiCLIP.from_arch(tiny_arch, variant="image")
    with torch.inference_mode():
        model.eval()(torch.randn(1, 2, 3, 32, 32), CLASSES)
    model.train()
    loss = model(torch.randn(1, 2, 3, 32, 32), CLASSES).sum()
    loss.backward()  # would raise if the cached tensor were an inference tensor
    assert model.clip.visual.conv1.weight.grad is not None


def test_attention_uses_fused_sdpa(tiny_model: ViFiCLIP) -> None:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tiny_model(torch.randn(1, 2, 3, 32, 32), CLASSES).sum().backward()
    names = {event.name for event in prof.events()}
    assert any("scaled_dot_product" in name for name in names), sorted(n for n in names if "attention" in n)


def test_grad_checkpointing_gives_same_gradients(tiny_arch) -> None:
    torch.manual_seed(0)
    plain = ViFiCLIP.from_arch(tiny_arch)
    ckpt = ViFiCLIP.from_arch(tiny_arch)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    video = torch.randn(2, 2, 3, 32, 32)
    for model in (plain, ckpt):
        model.train()
        model(video, CLASSES).logsumexp(-1).sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
