"""A tiny text-to-video pipeline and a tiny CLIP image-text encoder, built from real diffusers
and transformers classes with tiny configs.

Used by the tests and ``steerfeed generation tiny-model`` / ``tiny-encoder`` to exercise the
same loading, rendering and frame-review code a real model goes through, on a CPU, in seconds.
Both are untrained: the clips are noise-like and the encoder recognises nothing. The tokenizer
is a byte-level CLIP BPE vocabulary written to disk (no merges).
"""

from __future__ import annotations

import json
from pathlib import Path


def _byte_chars() -> list[str]:
    bs = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def _tiny_tokenizer(out_dir: Path) -> tuple[object, dict[str, int]]:
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok_src = out_dir / "_tokenizer_src"
    tok_src.mkdir(parents=True, exist_ok=True)
    (tok_src / "vocab.json").write_text(json.dumps(vocab))
    (tok_src / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(tok_src / "vocab.json"), str(tok_src / "merges.txt"), model_max_length=32
    )
    return tokenizer, vocab


def build_tiny_clip(out_dir: Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """Build a tiny ``CLIPModel`` with its processor and ``save_pretrained`` both into
    ``out_dir/clip``; return the folder (loadable by ``ClipFrameEncoder``)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    model = CLIPModel(config)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tokenizer,
    )
    folder = out_dir / "clip"
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


def build_tiny_text_to_video(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a tiny ``TextToVideoSDPipeline`` (UNet3D, VAE, CLIP text encoder, DDIM) and
    ``save_pretrained`` it to ``out_dir``; return the folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        TextToVideoSDPipeline,
        UNet3DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8,),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        sample_size=32,
        norm_num_groups=2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            projection_dim=8,
            max_position_embeddings=32,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    pipe = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    model_dir = out_dir / "pipeline"
    pipe.save_pretrained(str(model_dir))  # type: ignore[attr-defined]
    return model_dir
