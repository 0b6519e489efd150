"""Bridge-and-prompt deep prompts (SPEC §1.5): counts, exact forward semantics, training, the small artefact."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import tokenize as open_clip_tokenize

from vificlip.errors import VificlipError
from vificlip.model import ClipArch, ViFiCLIP, arch_by_name, build_clip
from vificlip.model.loading import save_model
from vificlip.model.prompt_io import PromptFileError, load_prompts, read_prompt_metadata, save_prompts
from vificlip.model.prompts import DeepPrompts, PromptConfigError

CLASSES = ["jumping_jacks", "play guitar", "ApplyEyeMakeup"]


@pytest.fixture
def arch(tiny_arch) -> ClipArch:
    """The tiny test CLIP with three blocks per tower, so that a depth strictly between 1 and 3 exists."""
    return dataclasses.replace(tiny_arch, vision_layers=3, text_layers=3)


def make_base(arch: ClipArch, seed: int = 0) -> ViFiCLIP:
    torch.manual_seed(seed)
    return ViFiCLIP.from_arch(arch).eval()


def make_prompt_model(arch: ClipArch, n_v: int, n_t: int, d_v: int, d_t: int) -> ViFiCLIP:
    model = make_base(arch).with_prompts(n_v, n_t, d_v, d_t)
    with torch.no_grad():  # large prompt values, so that any mistake in where they enter shows in the logits
        for p in model.prompts.parameters():
            p.normal_(0.0, 1.0)
    return model


def video(arch: ClipArch, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        2, 3, 3, arch.image_size, arch.image_size, generator=torch.Generator().manual_seed(seed)
    )


def reference_logits(model: ViFiCLIP, videos: torch.Tensor, class_names: list[str]) -> torch.Tensor:
    """SPEC §1.2 + §1.5 written out from open_clip's modules, on the full 77-token context, without our hooks."""
    clip, v, p = model.clip, model.clip.visual, model.prompts
    n_t, d_v, d_t = p.n_text, p.depth_vision, p.depth_text
    b, t = videos.shape[:2]
    frames = videos.reshape(b * t, *videos.shape[2:])
    x = v.conv1(frames)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + v.positional_embedding
    num_tokens = x.shape[1]  # class + patches: the prompts always sit after these
    if d_v:
        x = torch.cat([x, p.vision[0].unsqueeze(0).repeat(x.shape[0], 1, 1)], dim=1)
    x = v.ln_pre(x)
    for i, block in enumerate(v.transformer.resblocks):
        if 1 <= i < d_v:
            x = torch.cat([x[:, :num_tokens], p.vision[i].unsqueeze(0).repeat(x.shape[0], 1, 1)], dim=1)
        x = block(x)
    frame_features = v.ln_post(x[:, 0]) @ v.proj
    video_features = frame_features.reshape(b, t, -1).mean(dim=1)

    if n_t:
        texts = [" ".join(["X"] * n_t) + " " + name.replace("_", " ") + "." for name in class_names]
    else:
        texts = [model.template.format(name) for name in class_names]
    tokens = open_clip_tokenize(texts)  # [C, 77]
    e = clip.token_embedding(tokens)
    if n_t:
        e[:, 1 : 1 + n_t] = p.text[0]
    e = e + clip.positional_embedding
    for i, block in enumerate(clip.transformer.resblocks):
        if 1 <= i < d_t:
            e = e.clone()
            e[:, 1 : 1 + n_t] = p.text[i]
        e = block(e, attn_mask=clip.attn_mask)
    e = clip.ln_final(e)
    text_features = e[torch.arange(len(texts)), tokens.argmax(dim=-1)] @ clip.text_projection
    video_features, text_features = F.normalize(video_features, dim=-1), F.normalize(text_features, dim=-1)
    return clip.logit_scale.exp() * video_features @ text_features.t()


def test_trainable_parameter_counts_vit_b16():
    arch = arch_by_name("ViT-B/16")
    with torch.device("meta"):  # shapes and flags only: no 150 M random numbers
        base = ViFiCLIP(build_clip(arch), arch)
        b2n = base.with_prompts(16, 16, 9, 9)
        few_shot = ViFiCLIP(build_clip(arch), arch).with_prompts(10, 10, 12, 12)
    assert b2n.num_trainable_parameters() == 184_320
    assert few_shot.num_trainable_parameters() == 153_600
    assert {n for n, p in b2n.named_parameters() if p.requires_grad} == {
        *(f"prompts.vision.{i}" for i in range(9)),
        *(f"prompts.text.{i}" for i in range(9)),
    }
    assert not b2n.clip.logit_scale.requires_grad


@pytest.mark.parametrize(
    "n_v, n_t, d_v, d_t",
    [(4, 3, 1, 1), (2, 5, 3, 3), (3, 2, 2, 1), (1, 4, 1, 3), (0, 3, 0, 2), (5, 0, 2, 0)],
)
def test_logits_equal_explicit_layer_by_layer_computation(arch, n_v, n_t, d_v, d_t):
    model = make_prompt_model(arch, n_v, n_t, d_v, d_t)
    videos = video(arch)
    with torch.no_grad():
        got = model(videos, CLASSES)
        expected = reference_logits(model, videos, CLASSES)
        plain = make_base(arch)(videos, CLASSES)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the prompts do change the answer


@pytest.mark.parametrize("tower", ["vision", "text"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_prompt_positions_are_replaced_before_prompted_blocks_and_propagate_after(arch, tower, depth):
    """Perturbing block i's output at the prompt positions matters only when block i+1 exists and is unprompted."""
    model = make_prompt_model(arch, 3, 3, depth, depth)
    blocks = (
        model.clip.visual.transformer.resblocks if tower == "vision" else model.clip.transformer.resblocks
    )
    videos = video(arch)
    with torch.no_grad():
        clean = model(videos, CLASSES)
    for i, block in enumerate(blocks):

        def perturb(module, inputs, output):
            output = output.clone()  # a random change (a constant shift would vanish in the next LayerNorm)
            positions = slice(-3, None) if tower == "vision" else slice(1, 4)
            output[:, positions] += torch.randn(output[:, positions].shape)
            return output

        handle = block.register_forward_hook(perturb)
        with torch.no_grad():
            changed = not torch.allclose(model(videos, CLASSES), clean, atol=1e-6)
        handle.remove()
        # replaced before block i+1 (i+1 < depth), or never read again (last block): no effect
        assert changed == (depth <= i + 1 < len(blocks)), f"block {i}, depth {depth}"


def test_hooks_replace_never_add_and_keep_the_activation_dtype(arch):
    prompts = DeepPrompts(arch, n_vision=3, n_text=2, depth_vision=2, depth_text=2)
    x = torch.randn(4, 17, arch.vision_width, dtype=torch.bfloat16)
    appended = prompts.vision_input(x)
    assert appended.shape == (4, 20, 64) and appended.dtype == torch.bfloat16
    assert torch.equal(appended[:, :17], x)
    replaced = prompts.vision_block(1, appended)
    assert torch.equal(replaced[:, :17], x)
    assert torch.equal(replaced[:, 17:], prompts.vision[1].to(torch.bfloat16).expand(4, -1, -1))
    assert prompts.vision_block(0, appended) is appended and prompts.vision_block(2, appended) is appended
    e = torch.randn(5, 9, arch.text_width, dtype=torch.float16)
    for index, out in ((0, prompts.text_input(e)), (1, prompts.text_block(1, e))):
        assert out.dtype == torch.float16 and out.shape == e.shape
        assert torch.equal(out[:, 0], e[:, 0]) and torch.equal(out[:, 3:], e[:, 3:])
        assert torch.equal(out[:, 1:3], prompts.text[index].half().expand(5, -1, -1))
    assert prompts.text_block(0, e) is e and prompts.text_block(2, e) is e


def test_runs_with_a_half_precision_backbone_and_fp32_prompts(arch):
    model = make_prompt_model(arch, 2, 3, 2, 2)
    model.clip.to(torch.bfloat16)
    with torch.no_grad():
        logits = model(video(arch).bfloat16(), CLASSES)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert model.prompts.vision[0].dtype == torch.float32


def test_one_optimiser_step_changes_only_the_prompts(arch):
    model = make_prompt_model(arch, 3, 4, 3, 3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # the reference's optimiser: AdamW over every parameter, frozen ones simply get no gradient (SPEC §3.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    loss = F.cross_entropy(model(video(arch), CLASSES), torch.tensor([0, 2]))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {*(f"prompts.vision.{i}" for i in range(3)), *(f"prompts.text.{i}" for i in range(3))}


def test_gradient_checkpointing_gives_the_same_prompt_gradients(arch):
    grads = []
    for enabled in (False, True):
        model = make_prompt_model(arch, 2, 3, 2, 2)
        model.train().set_grad_checkpointing(enabled)
        model(video(arch), CLASSES).logsumexp(dim=-1).sum().backward()
        grads.append([p.grad.clone() for p in model.prompts.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_init_text_makes_the_context_those_words(arch):
    """n_t = 4 from "a photo of a", depth 1: the text side is exactly the hand-written template's."""
    base = make_base(arch)
    model = base.with_prompts(0, 4, 0, 1, init_text="a photo of a")
    plain = ViFiCLIP(
        model.clip, arch, variant="prompt", template="a photo of a {}.", replace_underscores=True
    )
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_text(CLASSES), plain.encode_text(CLASSES), atol=1e-5, rtol=1e-5
        )
    with pytest.raises(PromptConfigError, match="init_text"):
        DeepPrompts(arch, 0, 16, 0, 1, init_text="a photo of a")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_vision": 4, "depth_vision": 0}, "depth_vision"),
        ({"n_text": 4, "depth_text": 0}, "depth_text"),
        ({"n_text": 0, "depth_text": 2}, "depth_text"),
        ({"depth_vision": 4}, "depth_vision"),
        ({"n_vision": -1}, "n_vision"),
        ({"n_vision": 0, "depth_vision": 0, "n_text": 0, "depth_text": 0}, "NoPrompts"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(arch, kwargs, field):
    settings = {"n_vision": 2, "n_text": 2, "depth_vision": 1, "depth_text": 1, **kwargs}
    with pytest.raises(PromptConfigError, match=field):
        DeepPrompts(arch, **settings)


def test_vanilla_zero_shot_never_carries_prompts(arch):
    base = make_base(arch)
    with pytest.raises(PromptConfigError, match="quirk 21"):
        base.with_prompts(2, 2, 1, 1, variant="zeroshot")
    with pytest.raises(VificlipError, match="quirk 21"):
        ViFiCLIP(base.clip, arch, variant="zeroshot", prompts=DeepPrompts(arch, 2, 2, 1, 1))
    model = base.with_prompts(2, 2, 1, 1)
    with pytest.raises(VificlipError, match="quirk 21"):
        model.set_variant("zeroshot")
    assert model.variant == "prompt" and model.prompts.vision[0].requires_grad


def test_config_round_trips_through_json(arch):
    prompts = DeepPrompts(arch, 3, 4, 2, 1, init_text="a photo of a")
    config = json.loads(json.dumps(prompts.config()))
    assert config == {
        "n_vision": 3,
        "n_text": 4,
        "depth_vision": 2,
        "depth_text": 1,
        "init_text": "a photo of a",
    }
    assert DeepPrompts(arch, **config).config() == config


def test_save_load_same_logits_and_new_classes(arch, tmp_path):
    model = make_prompt_model(arch, 3, 4, 2, 3)
    base_file = save_model(make_base(arch), tmp_path / "base.safetensors")
    path = save_prompts(
        model, tmp_path / "run" / "prompts.safetensors", base_file, metadata={"preset": "tiny"}
    )
    assert path.stat().st_size < 20_000  # prompts only, not the backbone
    meta = read_prompt_metadata(path)
    assert meta["preset"] == "tiny" and json.loads(meta["base"])["path"] == str(base_file.resolve())
    assert not list(path.parent.glob("*.tmp"))

    videos, novel = video(arch), ["walk_the_dog", "ride bike"]
    for reloaded in (
        load_prompts(path),
        load_prompts(path, base=make_base(arch)),
    ):  # recorded base, given base
        assert reloaded.num_trainable_parameters() == model.num_trainable_parameters()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(videos, CLASSES), model(videos, CLASSES), atol=0, rtol=0)
            on_novel = reloaded(videos, novel)  # prompts are class-agnostic: any class list works
            torch.testing.assert_close(
                on_novel, reference_logits(reloaded, videos, novel), atol=1e-5, rtol=1e-5
            )
        assert on_novel.shape == (2, 2)


def test_prompts_refuse_a_different_base(arch, tmp_path):
    model = make_prompt_model(arch, 2, 2, 1, 1)
    base_file = save_model(make_base(arch), tmp_path / "base.safetensors")
    path = save_prompts(model, tmp_path / "prompts.safetensors", base_file)
    with pytest.raises(PromptFileError, match="base weights differ"):
        load_prompts(path, base=make_base(arch, seed=1))
    save_model(make_base(arch, seed=1), base_file)
    with pytest.raises(PromptFileError, match="changed since"):
        load_prompts(path)
    assert load_prompts(path, verify=False).prompts.config() == model.prompts.config()
    with pytest.raises(PromptFileError, match="not a vificlip prompt file"):
        load_prompts(base_file, base=make_base(arch))


@pytest.mark.parametrize(("n_v", "d_v"), [(0, 0), (2, 1), (3, 2), (2, 3)])
def test_the_prompts_say_which_vision_rows_they_rewrite(arch, n_v, d_v):
    """vision_rows_replaced (what attention rollout asks) is exactly what vision_block changes."""
    model = make_prompt_model(arch, n_v, 2, d_v, 1)
    tokens = 1 + arch.grid_size**2 + n_v
    for index in range(arch.vision_layers):
        x = torch.randn(2, tokens, arch.vision_width)
        changed = (model.prompts.vision_block(index, x) != x).any(-1).any(0)
        assert torch.nonzero(changed).flatten().tolist() == list(
            model.prompts.vision_rows_replaced(index, tokens)
        )
    assert list(ViFiCLIP.from_arch(arch).prompts.vision_rows_replaced(1, tokens)) == []
